"""The content-addressed image store, on both backends: a local folder and a real S3-compatible server (moto
in server mode), with deletion by reference count under the database's lock (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from prodtype.config import Settings
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.db.tables import Prediction
from prodtype.serving import predictions
from prodtype.serving.object_store import ObjectStore, ObjectStoreError
from prodtype.serving.storage import (
    ImageStore,
    LocalImageStore,
    S3ImageStore,
    open_image_store,
    reference_lock,
    sha256_hex,
    sniff_image_type,
)
from service_support import images
from service_support.object_store import keys, s3_endpoint, s3_settings, s3_url  # noqa: F401 (fixtures)
from service_support.records import add_prediction, user
from service_support.waiting import until


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest, settings: Settings) -> ImageStore:
    """The store PRODTYPE_IMAGE_STORE selects: unset (the storage folder) or an s3:// URL."""
    if request.param == "local":
        store = open_image_store(settings)
        assert isinstance(store, LocalImageStore)
        return store
    endpoint, url = request.getfixturevalue("s3_endpoint"), request.getfixturevalue("s3_url")
    store = open_image_store(settings.model_copy(update=s3_settings(endpoint, url)))
    assert isinstance(store, S3ImageStore)
    return store


def test_put_is_content_addressed_idempotent_and_read_back(any_store: ImageStore) -> None:
    data = images.photo()
    digest, written = any_store.add(data)
    assert digest == hashlib.sha256(data).hexdigest() and written
    assert any_store.add(data) == (digest, False)  # stored once
    assert any_store.put(data) == digest
    assert any_store.exists(digest) and any_store.read(digest) == data == any_store.get(digest)
    other = sha256_hex(b"never stored")
    assert not any_store.exists(other) and any_store.get(other) is None
    with pytest.raises(FileNotFoundError, match=other):
        any_store.read(other)
    assert list(any_store.digests()) == [digest]


def test_s3_objects_are_named_by_digest_under_the_prefix(
    settings: Settings,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    store = open_image_store(settings.model_copy(update=s3_settings(s3_endpoint, s3_url)))
    digest = store.put(images.photo(2))
    bucket = s3_url.removeprefix("s3://").split("/")[0]
    assert keys(s3_endpoint, s3_url) == [f"prodtype/images/{digest[:2]}/{digest}"]
    assert store.location == f"s3://{bucket}/prodtype/images"
    assert not settings.images_dir.exists()  # nothing on local disk


def test_delete_by_reference_count(any_store: ImageStore, session: Session) -> None:
    carl, admin = user(session, "carl"), user(session, "admin")
    photo = images.photo(3)
    first = add_prediction(session, carl, image=photo, store=any_store)
    second = add_prediction(session, carl, image=photo, store=any_store)
    digest = first.image_sha256
    assert digest is not None and second.image_sha256 == digest

    def refs(d: str) -> int:
        return predictions.image_references(session, d)

    assert not any_store.remove_if_unreferenced(session, digest, refs)  # two records use it
    predictions.delete_prediction(session, any_store, first.id, admin)
    assert any_store.exists(digest)  # the other record still does
    predictions.delete_prediction(session, any_store, second.id, admin)
    assert not any_store.exists(digest)
    assert not any_store.remove_if_unreferenced(session, digest, refs)  # already gone


def _waiting_for_the_lock(session: Session) -> bool:
    """Whether another connection waits for a reference lock (PostgreSQL's advisory lock, SQLite's flock)."""
    if session.get_bind().dialect.name == "postgresql":
        found = session.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
        session.rollback()
        return bool(found)
    pid = str(os.getpid())  # blocked flocks are listed with "->" and the waiting process's id
    return any(
        "->" in line and "FLOCK" in line and pid in line.split()
        for line in Path("/proc/locks").read_text().splitlines()
    )


def test_a_deletion_waits_for_a_record_being_created_and_keeps_its_photo(
    any_store: ImageStore, settings: Settings, session: Session
) -> None:
    """The race the lock closes: a deletion that counts the references while a record using the photo is
    being created. The creation holds the shared lock from its check to its commit; the deletion asks for
    the exclusive lock (and is seen waiting for it) before the record is committed, counts after, and keeps
    the photo."""
    carl = user(session, "carl")
    photo = images.photo(4)
    digest = any_store.put(photo)  # an orphan for now: no record yet
    engine = make_engine(settings.resolved_database_url)
    other = make_sessionmaker(engine)()
    outcome: list[bool] = []
    deleter = threading.Thread(
        target=lambda: outcome.append(
            any_store.remove_if_unreferenced(other, digest, lambda d: predictions.image_references(other, d))
        )
    )
    try:
        with reference_lock(session, digest, exclusive=False):
            assert any_store.exists(digest)
            deleter.start()
            observer = make_sessionmaker(engine)()
            until(lambda: _waiting_for_the_lock(observer), message="the deletion never waited for the lock")
            observer.close()
            assert outcome == []
            row = Prediction(
                designation="Lampe",
                predicted_code=2060,
                confidence=0.5,
                top_k=[],
                model_version="t",
                created_by_id=carl.id,
                image_sha256=digest,
                image_content_type="image/jpeg",
            )
            session.add(row)
            session.commit()
        deleter.join(timeout=30)
        assert outcome == [False] and any_store.exists(digest)
    finally:
        other.close()
        engine.dispose()


def test_a_photo_deleted_before_the_record_is_written_again(any_store: ImageStore, session: Session) -> None:
    """The other order: the deletion went first (orphan removed); the creation finds it gone and puts it
    back before its record is committed."""
    from prodtype.ml.predictor import Candidate
    from prodtype.ml.predictor import Prediction as ModelOutput

    carl = user(session, "carl")
    photo = images.photo(5)
    digest = any_store.put(photo)
    assert any_store.remove_if_unreferenced(session, digest, lambda d: 0)
    checked = predictions.CheckedSubmission("Lampe de chevet", "", photo, "image/jpeg")
    answer = ModelOutput(2060, "lampe", 0.9, [Candidate(2060, "lampe", 0.9)])
    row = predictions.record_prediction(session, any_store, checked, answer, "t", carl)
    assert row.image_sha256 == digest and any_store.read(digest) == photo


def test_a_wrong_bucket_or_key_is_a_clear_error(
    settings: Settings,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    good = s3_settings(s3_endpoint, s3_url)
    open_image_store(settings.model_copy(update=good)).check()
    with pytest.raises(ObjectStoreError, match=r"bucket 'no-such-bucket' does not exist"):
        open_image_store(settings.model_copy(update={**good, "image_store": "s3://no-such-bucket/p"})).check()
    nowhere = ObjectStore(s3_url, endpoint_url="http://127.0.0.1:9", access_key_id="a", secret_access_key="b")
    with pytest.raises(ObjectStoreError, match=r"cannot connect .* PRODTYPE_S3_ENDPOINT_URL"):
        nowhere.check()


def test_put_names_the_file_by_its_sha256_and_stores_once(tmp_path: Path) -> None:
    store = LocalImageStore(tmp_path / "images")
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
    store = LocalImageStore(tmp_path)
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
    store = LocalImageStore(tmp_path)

    def fail(*_args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("prodtype.files.os.replace", fail)  # the one atomic write
    with pytest.raises(OSError, match="disk full"):
        store.put(images.photo())
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("digest", ["../../etc/passwd", "ABC", "g" * 64, ""])
def test_paths_only_from_hex_digests(tmp_path: Path, digest: str) -> None:
    with pytest.raises(ValueError, match="sha256"):
        LocalImageStore(tmp_path).path_for(digest)


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


def test_no_credentials_anywhere_is_a_clear_error(
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ObjectStoreError, match="no credentials: set PRODTYPE_S3_ACCESS_KEY_ID"):
        ObjectStore(s3_url, endpoint_url=s3_endpoint, region="us-east-1").check()


def test_the_standard_aws_variables_are_enough(
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PRODTYPE_IMAGE_STORE alone, with AWS_ENDPOINT_URL, AWS_REGION and the AWS keys as boto3 reads them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "from-env")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env-secret")
    settings = Settings(_env_file=None, image_store=s3_url)  # type: ignore[call-arg]
    store = open_image_store(settings)
    store.check()
    assert store.get(store.put(images.photo(6))) == images.photo(6)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("bucket/prefix", "expected s3://bucket"),
        ("s3://", "expected s3://bucket"),
        ("/var/x", "not an object store URL"),
    ],
)
def test_image_store_setting_names_what_it_expects(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Settings(_env_file=None, image_store=value)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="must be set together"):
        Settings(_env_file=None, s3_access_key_id="k")  # type: ignore[call-arg]
