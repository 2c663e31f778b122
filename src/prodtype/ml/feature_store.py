"""A feature cache as one SQLite file per cache folder, instead of one ``.npy`` file per text or image.

The full challenge data is 84,916 products with a photo each: one file per vector was 170,000 files (and
millions for a real catalogue), which file systems, backups and ``rsync`` handle badly. Here every vector is
a row ``(namespace, key, vector bytes)`` of ``<cache folder>/features.sqlite``:

- the namespace says what computed the vector (an image encoder's version, an embedder and its clipping), so a
  new model never reads an old one's features; the key is the sha256 of the input;
- WAL journal: readers never block the writer nor each other; several processes (the API's workers, a retrain,
  a batch prediction) can share one cache; concurrent writers wait for each other (``busy_timeout``);
- every write is one transaction, so a process killed mid-way (Ctrl-C, SIGKILL, power loss) leaves either the
  whole batch or none of it, never a half-written vector;
- the old layout (``<cache folder>/<namespace>/<hh>/<key>.npy``) is still read: a vector found there is copied
  into the store on first use (lazy migration), and :func:`migrate_legacy` imports a whole folder at once.

A vector whose stored length does not match the expected dimension is treated as absent (recomputed and
overwritten), like a damaged ``.npy`` file was.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

STORE_FILE = "features.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS features (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID
"""
# Which content a file had when it was last read: (path, size, mtime, ctime, inode, device) -> sha256 of its
# bytes. A retrain then finds a photo's cached features from a stat(), without reading and hashing the file
# again (85,000 photos are 3.5 GB: 30-60 s of a retrain). Any write to a file changes its ctime, which no
# program can set back, so a changed file never gets another content's features.
_DIGESTS = """
CREATE TABLE IF NOT EXISTS file_digests (
    ident TEXT PRIMARY KEY,
    digest TEXT NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # keys per SELECT ... IN (...): well under SQLite's 32,766 bound parameters


class FeatureStore:
    """The vectors of one namespace in ``<root>/features.sqlite``, float32 of length ``dim``.

    One instance may be used from several threads (a lock serialises its connection); it reopens its
    connection after a ``fork``, so a store created before worker processes start is safe in each of them.
    """

    def __init__(self, root: Path, namespace: str, dim: int, *, legacy: bool = True) -> None:
        self.root = Path(root)
        self.path = self.root / STORE_FILE
        self.namespace = namespace
        self.dim = dim
        self.legacy = legacy
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0

    # -- connection ---------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():
            self.root.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints, never corrupt (WAL)
            conn.execute(_SCHEMA)
            conn.execute(_DIGESTS)
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reads --------------------------------------------------------------------------------------------
    def get(self, key: str) -> np.ndarray | None:
        """The vector stored under ``key``, or None (absent, or of the wrong length)."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT vector FROM features WHERE namespace = ? AND key = ?", (self.namespace, key))
                .fetchone()
            )
        vector = None if row is None else self._decode(row[0])
        if vector is None and self.legacy and (self.root / self.namespace).is_dir():
            return self.get_many([key]).get(key)
        return vector

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """The stored vectors among ``keys`` (absent ones are left out); legacy files are migrated."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, np.ndarray] = {}
        with self._lock:
            conn = self._connection()
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT key, vector FROM features WHERE namespace = ? AND key IN ({marks})",  # noqa: S608
                    [self.namespace, *chunk],
                ).fetchall()
                for key, blob in rows:
                    vector = self._decode(blob)
                    if vector is not None:
                        found[key] = vector
        if self.legacy and len(found) < len(wanted) and (self.root / self.namespace).is_dir():
            migrated = {}
            for key in wanted:
                if key not in found:
                    vector = self._legacy_vector(key)
                    if vector is not None:
                        migrated[key] = vector
            if migrated:
                self.put_many(migrated)
                found.update(migrated)
        return found

    def digest_of(self, ident: str) -> str | None:
        """The content hash last recorded for a file identity (see :func:`file_ident`), or None."""
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT digest FROM file_digests WHERE ident = ?", (ident,))
                .fetchone()
            )
        return None if row is None else str(row[0])

    def put_digests(self, pairs: Iterable[tuple[str, str]]) -> int:
        """Record ``(file identity, content hash)`` pairs in one transaction; returns how many."""
        return self._write("INSERT OR REPLACE INTO file_digests VALUES (?, ?)", list(pairs))

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        with self._lock:
            row = (
                self._connection()
                .execute("SELECT count(*) FROM features WHERE namespace = ?", (self.namespace,))
                .fetchone()
            )
        return int(row[0])

    def keys(self) -> Iterator[str]:
        with self._lock:
            rows = (
                self._connection()
                .execute("SELECT key FROM features WHERE namespace = ? ORDER BY key", (self.namespace,))
                .fetchall()
            )
        return (r[0] for r in rows)

    # -- writes -------------------------------------------------------------------------------------------
    def put_many(self, items: Mapping[str, np.ndarray] | Iterable[tuple[str, np.ndarray]]) -> int:
        """Store vectors (replacing any under the same key) in one transaction; returns how many."""
        pairs = items.items() if isinstance(items, Mapping) else items
        rows = [(self.namespace, key, self._encode(vector)) for key, vector in pairs]
        return self._write("INSERT OR REPLACE INTO features VALUES (?, ?, ?)", rows)

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> int:
        """``sql`` for every row, in one transaction (all or none of them); returns how many."""
        if not rows:
            return 0
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return len(rows)

    def put(self, key: str, vector: np.ndarray) -> None:
        self.put_many({key: vector})

    # -- encoding -----------------------------------------------------------------------------------------
    def _encode(self, vector: np.ndarray) -> bytes:
        array = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
        if array.shape != (self.dim,):
            raise ValueError(f"a vector of length {array.size} for a store of dimension {self.dim}")
        return array.tobytes()

    def _decode(self, blob: bytes) -> np.ndarray | None:
        if len(blob) != 4 * self.dim:
            return None
        return np.frombuffer(blob, dtype="<f4").astype(np.float32)

    # -- the old layout -----------------------------------------------------------------------------------
    def legacy_file(self, key: str) -> Path:
        """Where the per-file cache of before kept the vector of ``key``."""
        return self.root / self.namespace / key[:2] / f"{key}.npy"

    def _legacy_vector(self, key: str) -> np.ndarray | None:
        try:
            vector = np.load(self.legacy_file(key), allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        if vector.shape != (self.dim,) or vector.dtype != np.float32:
            return None
        return vector


def file_ident(path: str | os.PathLike[str]) -> str | None:
    """A file's identity for :meth:`FeatureStore.digest_of`: its absolute path, size, modification and
    change times (ns), inode and device; None when it cannot be read (the caller reads it and reports)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    parts = (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
    return "\0".join(map(str, parts))


def migrate_legacy(root: Path, namespace: str, dim: int, *, remove: bool = False) -> int:
    """Import every ``<root>/<namespace>/<hh>/<key>.npy`` into the store at once; returns how many.

    With ``remove``, each imported file is deleted after its batch is committed (a crash in between leaves
    the file, and importing it again is harmless).
    """
    store = FeatureStore(root, namespace, dim, legacy=False)
    folder = Path(root) / namespace
    done = 0
    batch: dict[str, np.ndarray] = {}
    files: list[Path] = []

    def commit() -> None:
        nonlocal done
        done += store.put_many(batch)
        if remove:
            for f in files:
                f.unlink(missing_ok=True)
        batch.clear()
        files.clear()

    with store:
        for path in sorted(folder.glob("??/*.npy")) if folder.is_dir() else []:
            vector = store._legacy_vector(path.stem)
            if vector is None:
                continue
            batch[path.stem] = vector
            files.append(path)
            if len(batch) >= 1000:
                commit()
        commit()
    return done
