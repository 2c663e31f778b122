"""``prodtype doctor``: is the database sound, and do the image files and the records agree?

After a crash (kill -9, power loss) the database itself recovers on its own (SQLite's WAL, PostgreSQL's
journal): an acknowledged prediction was committed before its answer left. What a crash can leave behind
is in the image store: a photo written just before a crash whose insert never committed (an orphan, which
nothing will ever reference unless the same photo is sent again), or a half-written temporary file. The
check runs under the store's lock, which record creation holds from the write to the commit, so a file
being recorded at that moment is never taken for an orphan.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from prodtype.db import migrate
from prodtype.db.engine import describe_url
from prodtype.db.tables import Prediction
from prodtype.files import TMP_PREFIX
from prodtype.serving.storage import ImageStore

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
SHOWN = 50  # ids and names listed in a report; the counts are always complete


@dataclass
class DoctorReport:
    database: str
    schema_revision: str | None
    schema_head: str | None
    integrity: str
    images_dir: str
    image_files: int = 0
    referenced_images: int = 0
    orphan_files: list[str] = field(default_factory=list)
    temporary_files: list[str] = field(default_factory=list)
    missing_images: list[int] = field(default_factory=list)  # prediction ids whose file is missing
    removed_files: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        found = []
        if self.integrity != "ok":
            found.append(f"database integrity check: {self.integrity}")
        if self.schema_revision != self.schema_head:
            found.append(
                f"database schema at revision {self.schema_revision}, expected {self.schema_head} "
                "(`prodtype serve` migrates on start)"
            )
        removed = set(self.removed_files)
        orphans = [f for f in self.orphan_files if f not in removed]
        temporary = [f for f in self.temporary_files if f not in removed]
        if orphans:
            found.append(f"{len(orphans)} orphan image file(s) that no prediction references")
        if temporary:
            found.append(f"{len(temporary)} leftover temporary file(s) from interrupted writes")
        if self.missing_images:
            found.append(
                f"{len(self.missing_images)} prediction(s) whose image file is missing: "
                f"{', '.join(map(str, self.missing_images[:SHOWN]))}"
            )
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("orphan_files", "temporary_files", "missing_images", "removed_files"):
            out[f"{key}_count"] = len(out[key])
            out[key] = out[key][:SHOWN]
        out["problems"] = self.problems
        out["healthy"] = self.healthy
        return out


def _integrity(engine: Engine) -> str:
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                rows = [r[0] for r in conn.execute(text("PRAGMA quick_check")).all()]
                return "ok" if rows == ["ok"] else "; ".join(map(str, rows[:5]))
            conn.execute(text("SELECT 1"))
            return "ok"
    except Exception as exc:
        return f"cannot be checked: {type(exc).__name__}: {exc}"


def _revision(engine: Engine) -> str | None:
    try:
        return migrate.current_revision(engine)
    except Exception:
        return None


def _scan(store: ImageStore) -> tuple[set[str], list[str]]:
    """The digests of the stored files, and the paths of leftover temporary files (relative)."""
    files: set[str] = set()
    temporary: list[str] = []
    if not store.root.is_dir():
        return files, temporary
    for folder in sorted(p for p in store.root.iterdir() if p.is_dir()):
        for path in folder.iterdir():
            if path.name.startswith(TMP_PREFIX):
                temporary.append(f"{folder.name}/{path.name}")
            elif _DIGEST.fullmatch(path.name) and path.is_file():
                files.add(path.name)
    return files, temporary


def examine(engine: Engine, session: Session, store: ImageStore, *, fix: bool = False) -> DoctorReport:
    """Check the database and the image store; with ``fix``, remove orphan and temporary files (never a
    record: a prediction whose file is missing is reported, for a person to decide)."""
    report = DoctorReport(
        database=describe_url(str(engine.url.render_as_string(hide_password=False))),
        schema_revision=_revision(engine),
        schema_head=migrate.head_revision(),
        integrity=_integrity(engine),
        images_dir=str(store.root),
    )
    with store.lock():
        files, temporary = _scan(store)
        rows = session.execute(
            select(Prediction.id, Prediction.image_sha256).where(Prediction.image_sha256.is_not(None))
        ).all()
        session.rollback()  # nothing held while files are removed
        referenced = {str(digest) for _, digest in rows}
        report.image_files = len(files)
        report.referenced_images = len(referenced & files)
        report.orphan_files = sorted(files - referenced)
        report.temporary_files = sorted(temporary)
        report.missing_images = sorted(int(pid) for pid, digest in rows if digest not in files)
        if fix:
            for digest in report.orphan_files:
                store.discard(digest)
                report.removed_files.append(digest)
            for name in report.temporary_files:
                (store.root / name).unlink(missing_ok=True)
                report.removed_files.append(name)
    return report
