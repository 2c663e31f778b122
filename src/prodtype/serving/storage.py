"""Content-addressed image storage: a file is named by the sha256 of its bytes and written atomically.

Identical uploads share one file. Files are never rewritten in place; removing one is done only through
:meth:`ImageStore.remove_if_unreferenced`, under a lock that record creation also takes, so that a file a
new record is about to reference cannot vanish between the reference check and the unlink.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from prodtype.files import atomic_write_bytes, locked

_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# Magic numbers of the formats the model reads; anything else is refused before decoding.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"WEBP", 8, "image/webp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
)


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of an image from its first bytes, or None when it is not a known image format."""
    for magic, offset, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            if mime == "image/webp" and not data.startswith(b"RIFF"):
                continue
            return mime
    return None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path_for(self, digest: str) -> Path:
        if not _SHA256.fullmatch(digest):
            raise ValueError(f"{digest!r} is not a sha256 hex digest")
        return self.root / digest[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def read(self, digest: str) -> bytes:
        return self.path_for(digest).read_bytes()

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256; a crash never leaves a partial file under the name."""
        return self.add(data)[0]

    def add(self, data: bytes) -> tuple[str, bool]:
        """Like :meth:`put`; also says whether the file was written now (False: it was there already)."""
        digest = sha256_hex(data)
        target = self.path_for(digest)
        if target.is_file():
            return digest, False
        atomic_write_bytes(target, data)
        return digest, True

    @contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock shared by the threads and processes using this folder."""
        with locked(self.root / ".lock"):
            yield

    def discard(self, digest: str) -> None:
        """Remove a file that nothing references (the caller holds :meth:`lock` and knows it)."""
        self.path_for(digest).unlink(missing_ok=True)

    def remove_if_unreferenced(self, digest: str, references: Callable[[str], int]) -> bool:
        """Delete the file when ``references(digest)`` (a fresh count from the database) is zero."""
        with self.lock():
            if references(digest) > 0:
                return False
            path = self.path_for(digest)
            if not path.exists():
                return False
            path.unlink()
            return True
