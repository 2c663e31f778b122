"""Bulk jobs: a CSV of products (and a zip of their photos) classified in the background.

:func:`submit_job` checks the files (:mod:`prodtype.serving.bulk_files`), keeps the zip under
``storage_dir/bulk`` and writes the job and one row per product to the database; rows that cannot be
products are recorded as bad straight away, with their line and the reason. A :class:`BulkWorker` thread
in the serving process claims queued jobs (an atomic conditional update, so that several worker
processes never take the same job) and classifies their pending rows in chunks with the bulk service
(:func:`prodtype.serving.bulk.create_predictions`): every product becomes a pending prediction in the
review queue, like a single one. The rows are the queue: a worker that stops leaves a job ``running`` with
an old heartbeat, and the next worker to look goes on with the rows still pending.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

from sqlalchemy import Select, delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import Settings
from prodtype.db.tables import BulkJob, BulkJobRow, JobStatus, Role, RowState, User, utcnow
from prodtype.files import fsync_dir
from prodtype.ml.predictor import Predictor
from prodtype.serving import audit
from prodtype.serving.bulk import BulkLimits, create_predictions
from prodtype.serving.bulk_files import check_zip, parse_csv, read_photo
from prodtype.serving.errors import (
    ConflictError,
    InvalidInputError,
    ModelUnavailableError,
    NotFoundError,
    ServiceError,
)
from prodtype.serving.predictions import Submission
from prodtype.serving.shadow import ShadowScorer
from prodtype.serving.storage import ImageStore

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
# A running job whose worker has not written a heartbeat for this long lost its worker (a restart).
STALE_AFTER = timedelta(minutes=10)
MAX_BAD_ROWS_SHOWN = 1000
MAX_REASON_CHARS = 500
_ITEM_PREFIX = re.compile(r"^item \d+:? ")


@dataclass(frozen=True)
class BadRowView:
    line: int
    index: str
    reason: str


@dataclass(frozen=True)
class BulkJobView:
    """A job as the API and the page show it."""

    id: str
    status: JobStatus
    filename: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int
    done: int
    classified: int
    bad: int
    photos: int
    model_version: str | None
    error: str | None
    bad_rows: list[BadRowView]

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.DONE, JobStatus.FAILED)


def _visible(query: Select[BulkJob], viewer: User) -> Select[BulkJob]:
    # Everyone sees their own jobs; admins see all of them.
    if viewer.role != Role.ADMIN.value:
        return query.where(BulkJob.created_by_id == viewer.id)
    return query


def _keep_zip(file: IO[bytes], target: Path) -> None:
    """Copy the uploaded zip to ``target`` whole or not at all (temporary file, fsync, rename)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            file.seek(0)
            shutil.copyfileobj(file, out, 1024 * 1024)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def zip_path(settings: Settings, job_id: str) -> Path:
    return settings.bulk_jobs_dir / f"{job_id}.zip"


def submit_job(
    session: Session,
    settings: Settings,
    user: User,
    filename: str,
    csv_data: bytes,
    photos: IO[bytes] | None = None,
    photos_size: int = 0,
) -> BulkJob:
    """Check the files and queue the job; a file that cannot be used whole raises a ServiceError."""
    parsed = parse_csv(csv_data, settings)
    names = check_zip(photos, photos_size, settings).names if photos is not None else {}
    job = BulkJob(
        id=uuid.uuid4().hex,
        created_by_id=user.id,
        status=JobStatus.QUEUED.value,
        filename=filename[:255],
        total=parsed.total,
        done=len(parsed.bad),
        bad=len(parsed.bad),
        has_zip=photos is not None,
    )
    rows = [
        BulkJobRow(
            job_id=job.id,
            line=r.line,
            row_index=r.index,
            designation=r.designation,
            description=r.description,
            photo=names.get((r.imageid, r.productid)),
            state=RowState.PENDING.value,
        )
        for r in parsed.rows
    ]
    job.photos = sum(1 for r in rows if r.photo is not None)
    rows += [
        BulkJobRow(job_id=job.id, line=b.line, row_index=b.index, state=RowState.BAD.value, reason=b.reason)
        for b in parsed.bad
    ]
    if not parsed.rows:  # nothing to classify: done at once, with every row listed as bad
        job.status, job.finished_at = JobStatus.DONE.value, utcnow()
    if photos is not None and parsed.rows:
        _keep_zip(photos, zip_path(settings, job.id))
    session.add(job)
    session.flush()
    session.add_all(rows)
    audit.record(
        session,
        "bulk_job.created",
        "bulk_job",
        job.id,
        user,
        {"filename": job.filename, "rows": job.total, "bad": job.bad, "photos": job.photos},
    )
    session.commit()
    return job


def get_job(session: Session, job_id: str, viewer: User) -> BulkJob:
    job = None
    if JOB_ID.fullmatch(job_id):
        job = session.scalar(_visible(select(BulkJob).where(BulkJob.id == job_id), viewer))
    if job is None:
        # The same answer whether it does not exist or belongs to someone else.
        raise NotFoundError(f"no bulk job with id {job_id[:40]!r}")
    return job


def list_jobs(session: Session, viewer: User, limit: int = 20) -> Sequence[BulkJob]:
    query = _visible(select(BulkJob), viewer).order_by(BulkJob.created_at.desc(), BulkJob.id)
    return session.scalars(query.limit(limit)).all()


def view_job(session: Session, job: BulkJob, bad_limit: int = MAX_BAD_ROWS_SHOWN) -> BulkJobView:
    bad = session.scalars(
        select(BulkJobRow)
        .where(BulkJobRow.job_id == job.id, BulkJobRow.state == RowState.BAD.value)
        .order_by(BulkJobRow.line)
        .limit(bad_limit)
    ).all()
    return BulkJobView(
        id=job.id,
        status=JobStatus(job.status),
        filename=job.filename,
        created_by=job.created_by.username,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        total=job.total,
        done=job.done,
        classified=job.done - job.bad,
        bad=job.bad,
        photos=job.photos,
        model_version=job.model_version,
        error=job.error,
        bad_rows=[BadRowView(r.line, r.row_index, r.reason or "") for r in bad],
    )


def result_csv(session: Session, job: BulkJob, name: Callable[[int], str]) -> str:
    """The submission format (``,prdtypecode``) with each type's name and the model's confidence; the bad
    rows are left out (the job lists them)."""
    if job.status == JobStatus.FAILED.value:
        raise ConflictError(f"bulk job {job.id} failed ({job.error}); it has no result")
    if job.status != JobStatus.DONE.value:
        raise ConflictError(
            f"bulk job {job.id} is {job.status}: {job.done} of {job.total} rows done; "
            "the result is ready when its status is done"
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["", "prdtypecode", "category", "confidence"])
    rows = session.execute(
        select(BulkJobRow.row_index, BulkJobRow.prdtypecode, BulkJobRow.confidence)
        .where(BulkJobRow.job_id == job.id, BulkJobRow.state == RowState.DONE.value)
        .order_by(BulkJobRow.line)
    )
    for index, code, confidence in rows:
        if code is not None and confidence is not None:  # always, for a done row
            writer.writerow([index, code, name(code), f"{confidence:.4f}"])
    return out.getvalue()


# -- retention ----------------------------------------------------------------------------------------

# A file under the bulk folder that no job explains (a zip whose job is gone, an upload cut off by a crash)
# is removed once it is this old: a zip is written just before its job is committed, so a younger one may
# belong to a job being submitted right now.
ORPHAN_FILE_AGE = timedelta(days=1)
CLEAN_EVERY = timedelta(hours=24)
_DELETE_CHUNK = 500


@dataclass(frozen=True)
class CleanupResult:
    """What :func:`clean_old_jobs` removed."""

    jobs: int
    rows: int
    files: int
    keep_days: int

    def describe(self) -> str:
        if self.keep_days == 0:
            return "bulk jobs are kept for ever (PRODTYPE_BULK_JOB_KEEP_DAYS=0); nothing removed"
        return (
            f"removed {self.jobs} bulk job(s) finished more than {self.keep_days} day(s) ago "
            f"({self.rows} row(s)) and {self.files} leftover file(s)"
        )


def clean_old_jobs(
    session: Session, settings: Settings, *, keep_days: int | None = None, now: datetime | None = None
) -> CleanupResult:
    """Delete the jobs finished (done or failed) more than ``keep_days`` days ago (default: the setting
    ``bulk_job_keep_days``; 0 keeps every job) with their rows, and the files of the bulk folder that no
    unfinished job needs. The predictions the jobs made stay: they are records of their own."""
    days = settings.bulk_job_keep_days if keep_days is None else keep_days
    if days < 0:
        raise InvalidInputError(f"keep_days is {days}; expected 0 (keep for ever) or a number of days")
    if days == 0:
        return CleanupResult(0, 0, 0, 0)
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    finished = BulkJob.status.in_((JobStatus.DONE.value, JobStatus.FAILED.value))
    old = list(session.scalars(select(BulkJob.id).where(finished, BulkJob.finished_at < cutoff)).all())
    rows = 0
    for start in range(0, len(old), _DELETE_CHUNK):
        chunk = old[start : start + _DELETE_CHUNK]
        # The rows explicitly (not only by the foreign key's cascade): the same on every database.
        deleted = session.execute(delete(BulkJobRow).where(BulkJobRow.job_id.in_(chunk)))
        rows += int(deleted.rowcount)  # type: ignore[attr-defined]
        session.execute(delete(BulkJob).where(BulkJob.id.in_(chunk), finished))
    if old:
        audit.record(
            session,
            "bulk_job.cleaned",
            "bulk_job",
            "retention",
            None,
            {"jobs": len(old), "rows": rows, "keep_days": days, "finished_before": cutoff.isoformat()},
        )
    session.commit()
    files = 0
    for job_id in old:  # a job's zip normally goes when it ends; one left by a crash goes with its job
        path = zip_path(settings, job_id)
        if path.is_file():
            path.unlink(missing_ok=True)
            files += 1
    files += _clean_files(session, settings, now)
    if old or files:
        log.info("bulk jobs: removed %d old job(s) (%d rows) and %d file(s)", len(old), rows, files)
    return CleanupResult(len(old), rows, files, days)


def _clean_files(session: Session, settings: Settings, now: datetime) -> int:
    folder = settings.bulk_jobs_dir
    if not folder.is_dir():
        return 0
    unfinished = set(
        session.scalars(
            select(BulkJob.id).where(BulkJob.status.in_((JobStatus.QUEUED.value, JobStatus.RUNNING.value)))
        ).all()
    )
    known = set(session.scalars(select(BulkJob.id)).all())
    removed = 0
    for path in folder.iterdir():
        if not path.is_file():
            continue
        age = now - datetime.fromtimestamp(path.stat().st_mtime, now.tzinfo)
        job_id = path.name.removesuffix(".zip") if path.name.endswith(".zip") else None
        if job_id is not None and job_id in unfinished:
            continue  # still needed
        finished_zip = job_id is not None and job_id in known  # its job ended: nothing reads it again
        if finished_zip or age > ORPHAN_FILE_AGE:
            path.unlink(missing_ok=True)
            removed += 1
    return removed


# -- the worker ---------------------------------------------------------------------------------------


class BulkWorker:
    """Runs queued bulk jobs one at a time in a thread of the serving process."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        settings: Settings,
        store: ImageStore,
        model: Callable[[], Predictor],
        poll_seconds: float = 5.0,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.store = store
        self.model = model
        self.poll_seconds = poll_seconds
        # The model in shadow, if any: its queue takes what it can, the rest is dropped and counted.
        self.shadow: ShadowScorer | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bulk-jobs", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """A job was queued: look now rather than at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        last_clean: datetime | None = None
        while not self._stop.is_set():
            if last_clean is None or utcnow() - last_clean >= CLEAN_EVERY:
                last_clean = utcnow()
                self.clean()
            try:
                worked = self.run_once()
            except Exception:  # a broken database must not end the thread: try again at the next poll
                log.exception("bulk jobs: the worker failed; trying again in %ss", self.poll_seconds)
                worked = False
            if not worked:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def clean(self) -> CleanupResult | None:
        """Remove old finished jobs (:func:`clean_old_jobs`): when the worker starts, then once a day."""
        try:
            with self.sessions() as session:
                return clean_old_jobs(session, self.settings)
        except Exception:  # never fatal: the next run tries again
            log.exception("bulk jobs: the clean-up of old jobs failed")
            return None

    def run_once(self) -> bool:
        """Claim one job and run it; False when there was none (or no model to run it with)."""
        try:
            model = self.model()
        except ModelUnavailableError:
            return False  # the jobs wait in the queue until a model is loaded
        with self.sessions() as session:
            job_id = self._claim(session)
        if job_id is None:
            return False
        self._process(job_id, model)
        return True

    def _claim(self, session: Session) -> str | None:
        now = utcnow()
        stale = (BulkJob.status == JobStatus.RUNNING.value) & (BulkJob.heartbeat_at < now - STALE_AFTER)
        candidates = session.scalars(
            select(BulkJob.id)
            .where(or_(BulkJob.status == JobStatus.QUEUED.value, stale))
            .order_by(BulkJob.created_at)
            .limit(5)
        ).all()
        for job_id in candidates:
            claimed = session.execute(
                update(BulkJob)
                .where(
                    BulkJob.id == job_id,
                    or_(BulkJob.status == JobStatus.QUEUED.value, stale),
                )
                .values(
                    status=JobStatus.RUNNING.value,
                    heartbeat_at=now,
                    started_at=func.coalesce(BulkJob.started_at, now),
                )
            )
            session.commit()
            if claimed.rowcount == 1:  # type: ignore[attr-defined]
                return job_id
        return None

    def _process(self, job_id: str, model: Predictor) -> None:
        with self.sessions() as session:
            job = session.get(BulkJob, job_id)
            assert job is not None
            try:
                self._classify(session, job, model)
            except Exception as exc:  # the job says what went wrong instead of running for ever
                log.exception("bulk job %s failed", job_id)
                session.rollback()
                job = session.get(BulkJob, job_id)
                assert job is not None
                job.status, job.finished_at = JobStatus.FAILED.value, utcnow()
                job.error = f"{type(exc).__name__}: {exc}"[:MAX_REASON_CHARS]
                session.commit()
                zip_path(self.settings, job_id).unlink(missing_ok=True)

    def _classify(self, session: Session, job: BulkJob, model: Predictor) -> None:
        settings = self.settings
        limits = BulkLimits(settings.upload_limit_bytes, settings.max_image_pixels, settings.top_k)
        user = session.get(User, job.created_by_id)
        assert user is not None
        archive = None
        if job.has_zip:
            path = zip_path(settings, job.id)
            if not path.is_file():
                raise ServiceError(f"the job's photos ({path.name}) are missing from {path.parent}")
            archive = zipfile.ZipFile(path)
        try:
            while not self._stop.is_set():
                rows = session.scalars(
                    select(BulkJobRow)
                    .where(BulkJobRow.job_id == job.id, BulkJobRow.state == RowState.PENDING.value)
                    .order_by(BulkJobRow.line)
                    .limit(settings.bulk_max_items)
                ).all()
                if not rows:
                    break
                items = [self._submission(archive, row) for row in rows]
                outcomes = create_predictions(session, self.store, model, items, user, limits, self.shadow)
                bad = 0
                for row, outcome in zip(rows, outcomes, strict=True):
                    if outcome.prediction is not None:
                        row.state, row.prediction_id = RowState.DONE.value, outcome.prediction.id
                        row.prdtypecode = outcome.prediction.predicted_code
                        row.confidence = outcome.prediction.confidence
                    else:
                        bad += 1
                        row.state = RowState.BAD.value
                        row.reason = _ITEM_PREFIX.sub("", str(outcome.error))[:MAX_REASON_CHARS]
                job.done += len(rows)
                job.bad += bad
                job.model_version = model.version
                job.heartbeat_at = utcnow()
                session.commit()
            else:
                return  # stopping: the job stays running; a worker goes on with it after a restart
        finally:
            if archive is not None:
                archive.close()
        job.status, job.finished_at = JobStatus.DONE.value, utcnow()
        session.commit()
        zip_path(settings, job.id).unlink(missing_ok=True)

    def _submission(self, archive: zipfile.ZipFile | None, row: BulkJobRow) -> Submission | ServiceError:
        if archive is None or row.photo is None:
            return Submission(row.designation, row.description)
        try:
            data = read_photo(archive, row.photo, self.settings.upload_limit_bytes)
        except (zipfile.BadZipFile, OSError, KeyError, EOFError, RuntimeError, NotImplementedError) as exc:
            return InvalidInputError(f"the photo {row.photo} cannot be read from the zip ({exc})")
        return Submission(row.designation, row.description, data, None)
