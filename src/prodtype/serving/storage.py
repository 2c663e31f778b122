"""Content-addressed image storage: a photo is named by the sha256 of its bytes, written whole or not at all.

Two backends with one interface (:class:`ImageStore`): a folder on this machine (:class:`LocalImageStore`,
``<storage>/images``) and an S3-compatible object store (:class:`S3ImageStore`, ``PRODTYPE_IMAGE_STORE=
s3://bucket/prefix``) that several replicas share; :func:`open_image_store` picks the configured one.
Identical uploads share one file; writes are idempotent (the same bytes under the same name).

Deleting a photo that no record references races with a new record about to reference the same photo: the
deleter counts 0 references, the creator checks that the file is there and commits its record, the deleter
removes the file, and the new record points at nothing. Both sides therefore take a lock on the photo's
digest *in the database* (:func:`reference_lock`), so that it holds across processes and machines:

- on PostgreSQL, a transaction-level advisory lock on the digest: shared by record creation, exclusive for a
  deletion (``pg_advisory_xact_lock_shared`` / ``pg_advisory_xact_lock``), released by the commit;
- on SQLite (one machine by nature: the database is a file) an ``flock`` beside the database file, shared
  or exclusive alike.

Creation writes the photo first, without a lock (while the model runs), then, holding the shared lock,
checks that it is still there, writes it again if a deletion removed it meanwhile, and inserts and commits
its record. A deletion, holding the exclusive lock, counts the references with a statement run after the
lock was granted (so it sees every record committed before), and removes the photo only at zero, before
it lets go. Either the creation committed first (the count sees its record: the photo stays), or the
deletion went first (the creation, waiting for its lock, then finds the photo gone and puts it back). A
crash between the photo's write and its record's commit leaves an orphan, which ``prodtype doctor --fix``
removes through the same exclusive lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.orm import Session

from prodtype.config import Settings
from prodtype.files import TMP_PREFIX, atomic_write_bytes
from prodtype.serving.object_store import ObjectStore

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


def _check_digest(digest: str) -> str:
    if not _SHA256.fullmatch(digest):
        raise ValueError(f"{digest!r} is not a sha256 hex digest")
    return digest


class ImageStore(ABC):
    """Photos by sha256, wherever they are kept; see the module's docstring for deletion."""

    location: str  # where, for messages and `prodtype doctor`

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def get(self, digest: str) -> bytes | None:
        """The photo's bytes, or None when it is not in the store."""

    @abstractmethod
    def _write(self, digest: str, data: bytes) -> None:
        """Store ``data`` under ``digest``, whole or not at all (idempotent)."""

    @abstractmethod
    def discard(self, digest: str) -> None:
        """Remove a photo that nothing references (the caller holds :func:`reference_lock` exclusively)."""

    @abstractmethod
    def digests(self) -> Iterator[str]:
        """Every stored photo's digest (for `prodtype doctor`)."""

    def leftovers(self) -> list[str]:
        """Temporary files an interrupted write left behind (names relative to the store)."""
        return []

    def remove_leftover(self, name: str) -> None:  # pragma: no cover - only the local store has any
        raise NotImplementedError

    def check(self) -> None:  # noqa: B027 - nothing to check for a folder
        """Raise a clear error now when the store cannot be used (at start-up)."""

    def read(self, digest: str) -> bytes:
        data = self.get(digest)
        if data is None:
            raise FileNotFoundError(f"image {digest} is not in {self.location}")
        return data

    def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256; a crash never leaves a partial photo behind."""
        return self.add(data)[0]

    def add(self, data: bytes) -> tuple[str, bool]:
        """Like :meth:`put`; also says whether the photo was written now (False: it was there already)."""
        digest = sha256_hex(data)
        if self.exists(digest):
            return digest, False
        self._write(digest, data)
        return digest, True

    def remove_if_unreferenced(self, session: Session, digest: str, references: Callable[[str], int]) -> bool:
        """Delete the photo when ``references(digest)`` (a count in ``session``'s database, run under the
        digest's exclusive :func:`reference_lock`) is zero; True when it was deleted now."""
        with reference_lock(session, digest, exclusive=True):
            if references(digest) > 0 or not self.exists(digest):
                return False
            self.discard(digest)
            return True


class LocalImageStore(ImageStore):
    """Photos in a folder: ``<root>/<first two hex digits>/<sha256>``, written atomically (fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def path_for(self, digest: str) -> Path:
        return self.root / _check_digest(digest)[:2] / digest

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).is_file()

    def get(self, digest: str) -> bytes | None:
        try:
            return self.path_for(digest).read_bytes()
        except FileNotFoundError:
            return None

    def _write(self, digest: str, data: bytes) -> None:
        atomic_write_bytes(self.path_for(digest), data)

    def discard(self, digest: str) -> None:
        self.path_for(digest).unlink(missing_ok=True)

    def _files(self) -> Iterator[Path]:
        if not self.root.is_dir():
            return
        for folder in sorted(p for p in self.root.iterdir() if p.is_dir()):
            yield from folder.iterdir()

    def digests(self) -> Iterator[str]:
        for path in self._files():
            if _SHA256.fullmatch(path.name) and path.is_file():
                yield path.name

    def leftovers(self) -> list[str]:
        return sorted(f"{p.parent.name}/{p.name}" for p in self._files() if p.name.startswith(TMP_PREFIX))

    def remove_leftover(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)


class S3ImageStore(ImageStore):
    """Photos in an S3-compatible object store: ``<prefix>/images/<first two hex digits>/<sha256>``.

    A PUT is atomic in S3 (an object is visible whole or not at all) and S3 reads its own writes, deletes
    included, so the creation's "is it still there?" after a deletion is answered truthfully."""

    FOLDER = "images"

    def __init__(self, objects: ObjectStore) -> None:
        self.objects = objects
        self.location = objects.url(self.FOLDER)

    def key_for(self, digest: str) -> str:
        return f"{self.FOLDER}/{_check_digest(digest)[:2]}/{digest}"

    def exists(self, digest: str) -> bool:
        return self.objects.exists(self.key_for(digest))

    def get(self, digest: str) -> bytes | None:
        return self.objects.get(self.key_for(digest))

    def _write(self, digest: str, data: bytes) -> None:
        self.objects.put(self.key_for(digest), data)

    def discard(self, digest: str) -> None:
        self.objects.delete(self.key_for(digest))

    def digests(self) -> Iterator[str]:
        for key, _size in self.objects.list(self.FOLDER):
            name = key.rsplit("/", 1)[-1]
            if _SHA256.fullmatch(name):
                yield name

    def check(self) -> None:
        self.objects.check()


def open_image_store(settings: Settings) -> ImageStore:
    """The configured store: the object store of PRODTYPE_IMAGE_STORE, else ``<storage>/images``."""
    objects = ObjectStore.from_settings(settings)
    if objects is not None:
        return S3ImageStore(objects)
    return LocalImageStore(settings.images_dir)


# -- the reference lock ---------------------------------------------------------------------------------

# PostgreSQL advisory locks with two int4 keys: this namespace ("prod") and 32 bits of the digest (two
# digests sharing them only wait for each other). Single-bigint advisory locks live in another key space.
_PG_NAMESPACE = 0x70726F64
_LOCAL = threading.Lock()  # SQLite in memory: one process


def _digest_key(digest: str) -> int:
    return int(_check_digest(digest)[:8], 16) - 2**31


@contextmanager
def _flock(path: Path, exclusive: bool) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


@contextmanager
def reference_lock(session: Session, digest: str, *, exclusive: bool) -> Iterator[None]:
    """Hold the lock on ``digest``'s references for the block, which is one transaction of ``session``:
    whatever the session had not committed is rolled back first; the block's work is committed at its end
    (rolled back if it raises), and the lock is let go only then. Shared: record creation; exclusive:
    deleting the photo. See the module's docstring for why this closes the race."""
    session.rollback()
    bind = session.get_bind()
    try:
        if bind.dialect.name == "postgresql":
            function = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
            session.execute(
                text(f"SELECT {function}(:namespace, :key)"),
                {"namespace": _PG_NAMESPACE, "key": _digest_key(digest)},
            )
            yield
            session.commit()
            return
        database = bind.engine.url.database
        if database and database != ":memory:":
            lock = _flock(Path(database).with_name(Path(database).name + ".images.lock"), exclusive)
        else:
            lock = _held(_LOCAL)
        with lock:
            yield
            session.commit()
    except BaseException:
        session.rollback()
        raise


@contextmanager
def _held(lock: threading.Lock) -> Iterator[None]:
    with lock:
        yield
