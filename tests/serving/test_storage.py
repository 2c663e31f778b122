"""The content-addressed image store."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from prodtype.serving.storage import ImageStore, sniff_image_type
from service_support import images


def test_put_names_the_file_by_its_sha256_and_stores_once(tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    data = images.photo()
    digest = store.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = store.path_for(digest)
    assert path == tmp_path / "images" / digest[:2] / digest
    assert path.read_bytes() == data
    mtime = path.stat().st_mtime_ns
    assert store.put(data) == digest
    assert path.stat().st_mtime_ns == mtime  # not rewritten
    assert store.read(digest) == data


def test_concurrent_puts_of_the_same_bytes_leave_one_complete_file(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = images.photo(1)
    barrier = threading.Barrier(8)
    digests: list[str] = []

    def put() -> None:
        barrier.wait()
        digests.append(store.put(data))

    threads = [threading.Thread(target=put) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(digests)) == 1
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".lock"]
    assert files == [store.path_for(digests[0])]  # no temporary file left behind
    assert files[0].read_bytes() == data


def test_a_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ImageStore(tmp_path)

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("prodtype.files.os.replace", fail)  # the one atomic write
    with pytest.raises(OSError, match="disk full"):
        store.put(images.photo())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_remove_if_unreferenced(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    digest = store.put(images.photo())
    assert not store.remove_if_unreferenced(digest, lambda _d: 1)
    assert store.exists(digest)
    assert store.remove_if_unreferenced(digest, lambda _d: 0)
    assert not store.exists(digest)
    assert not store.remove_if_unreferenced(digest, lambda _d: 0)  # already gone


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ABC", "g" * 64, ""])
def test_paths_only_from_hex_digests(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        ImageStore(tmp_path).path_for(digest)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (images.photo(), "image/jpeg"),
        (images.png_of(images.photo()), "image/png"),
        (b"GIF89a" + b"\x00" * 20, "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (images.not_an_image(), None),
        (b"", None),
        (b"%PDF-1.7", None),
    ],
    ids=["jpeg", "png", "gif", "webp", "csv", "empty", "pdf"],
)
def test_sniff_image_type(data: bytes, expected: str | None) -> None:
    assert sniff_image_type(data) == expected
