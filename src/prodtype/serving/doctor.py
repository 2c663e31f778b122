"""``prodtype doctor``: is the database sound, and do the image files and the records agree?

After a crash (kill -9, power loss) the database itself recovers on its own (SQLite's WAL, PostgreSQL's
journal): an acknowledged prediction was committed before its answer left. What a crash can leave behind
is in the image store: a photo written just before a crash whose insert never committed (an orphan, which
nothing will ever reference unless the same photo is sent again), or a half-written temporary file (local
store only). An orphan is removed through :meth:`ImageStore.remove_if_unreferenced`, which counts its
references again under the digest's exclusive lock: a photo that a record being created at that moment
refers to is kept (or written again by that creation), as a deletion would (see
:mod:`prodtype.serving.storage`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from prodtype.db import migrate
from prodtype.db.engine import describe_url
from prodtype.db.tables import Prediction
from prodtype.serving.predictions import image_references
from prodtype.serving.storage import ImageStore

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


def examine(engine: Engine, session: Session, store: ImageStore, *, fix: bool = False) -> DoctorReport:
    """Check the database and the image store; with ``fix``, remove orphan and temporary files (never a
    record: a prediction whose file is missing is reported, for a person to decide)."""
    report = DoctorReport(
        database=describe_url(str(engine.url.render_as_string(hide_password=False))),
        schema_revision=_revision(engine),
        schema_head=migrate.head_revision(),
        integrity=_integrity(engine),
        images_dir=store.location,
    )
    # The records first, the files after: a photo can appear between the two (an orphan candidate, counted
    # again before removal) but a referenced one cannot vanish (its record would have to be deleted).
    rows = session.execute(
        select(Prediction.id, Prediction.image_sha256).where(Prediction.image_sha256.is_not(None))
    ).all()
    session.rollback()  # nothing held while the store is listed and files are removed
    files = set(store.digests())
    temporary = store.leftovers()
    referenced = {str(digest) for _, digest in rows}
    report.image_files = len(files)
    report.referenced_images = len(referenced & files)
    report.orphan_files = sorted(files - referenced)
    report.temporary_files = sorted(temporary)
    report.missing_images = sorted(int(pid) for pid, digest in rows if digest not in files)
    if fix:
        for digest in report.orphan_files:
            # counted again under the digest's lock: a record created since the scan keeps its photo
            if store.remove_if_unreferenced(session, digest, lambda d: image_references(session, d)):
                report.removed_files.append(digest)
        for name in report.temporary_files:
            store.remove_leftover(name)
            report.removed_files.append(name)
    return report
