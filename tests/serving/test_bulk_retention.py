"""Old bulk jobs go: finished jobs past ``bulk_job_keep_days`` with their rows, and leftover files of the
bulk folder, on real files and a real database (SQLite and PostgreSQL); the ``prodtype bulk-jobs clean``
command and the worker's clean-up at start do the same."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from prodtype.cli import service as cli_service
from prodtype.config import Settings, get_settings
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.db.tables import (
    AuditEvent,
    BulkJob,
    BulkJobRow,
    JobStatus,
    Prediction,
    RowState,
    Status,
    User,
    utcnow,
)
from prodtype.serving.bulk_jobs import ORPHAN_FILE_AGE, BulkWorker, clean_old_jobs, zip_path
from prodtype.serving.errors import InvalidInputError, ModelUnavailableError
from prodtype.serving.storage import LocalImageStore
from service_support.waiting import until

NOW = utcnow()


def add_job(
    session: Session,
    settings: Settings,
    status: JobStatus,
    finished_days_ago: float | None,
    *,
    with_zip: bool = False,
    rows: int = 3,
) -> str:
    """A job owned by carl with ``rows`` rows (the first one made a prediction), and optionally its zip."""
    carl = session.scalar(select(User).where(User.username == "carl"))
    assert carl is not None
    prediction = Prediction(
        designation="Lampe de chevet",
        description="",
        predicted_code=2060,
        confidence=0.5,
        top_k=[],
        model_version="1",
        status=Status.PENDING.value,
        created_by_id=carl.id,
    )
    session.add(prediction)
    session.flush()
    finished = NOW - timedelta(days=finished_days_ago) if finished_days_ago is not None else None
    job = BulkJob(
        id=uuid.uuid4().hex,
        created_by_id=carl.id,
        status=status.value,
        filename="products.csv",
        total=rows,
        done=rows if finished else 0,
        has_zip=with_zip,
        created_at=(finished or NOW) - timedelta(hours=1),
        finished_at=finished,
    )
    session.add(job)
    session.flush()
    for line in range(rows):
        state = RowState.DONE if finished else RowState.PENDING
        session.add(
            BulkJobRow(
                job_id=job.id,
                line=line + 2,
                row_index=str(line),
                designation="Lampe de chevet",
                state=state.value,
                prediction_id=prediction.id if line == 0 else None,
            )
        )
    session.commit()
    if with_zip:
        path = zip_path(settings, job.id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    return job.id


def aged(path: Path, age: timedelta) -> Path:
    stamp = (NOW - age).timestamp()
    os.utime(path, (stamp, stamp))
    return path


def job_ids(session: Session) -> set[str]:
    session.expire_all()
    return set(session.scalars(select(BulkJob.id)))


def rows_of(session: Session, job_id: str) -> int:
    return session.scalar(select(func.count()).where(BulkJobRow.job_id == job_id)) or 0


def test_finished_jobs_past_the_retention_go_with_their_rows_and_files(
    session: Session, settings: Settings
) -> None:
    settings = settings.model_copy(update={"bulk_job_keep_days": 30})
    old_done = add_job(session, settings, JobStatus.DONE, 31, with_zip=True)
    old_failed = add_job(session, settings, JobStatus.FAILED, 45)
    recent_done = add_job(session, settings, JobStatus.DONE, 29)
    queued = add_job(session, settings, JobStatus.QUEUED, None, with_zip=True)
    running = add_job(session, settings, JobStatus.RUNNING, None)
    # A zip whose job is not in the database: younger than a day it may be a submission in progress.
    folder = settings.bulk_jobs_dir
    folder.mkdir(parents=True, exist_ok=True)
    orphan_old, orphan_new = (folder / f"{uuid.uuid4().hex}.zip" for _ in range(2))
    upload_left = folder / ".upload-abc123"  # a copy cut off by a crash
    for path in (orphan_old, orphan_new, upload_left):
        path.write_bytes(b"zip")
    aged(orphan_old, ORPHAN_FILE_AGE + timedelta(hours=1))
    aged(upload_left, timedelta(days=2))
    predictions_before = session.scalar(select(func.count()).select_from(Prediction))

    result = clean_old_jobs(session, settings, now=NOW)

    assert job_ids(session) == {recent_done, queued, running}
    assert result.jobs == 2 and result.rows == 6
    assert rows_of(session, old_done) == rows_of(session, old_failed) == 0
    assert rows_of(session, recent_done) == 3 and rows_of(session, queued) == 3
    assert not zip_path(settings, old_done).exists()
    assert zip_path(settings, queued).exists()  # its job still needs it
    assert not orphan_old.exists() and orphan_new.exists()
    assert result.files == 3  # the old job's zip, the old orphan, the old partial upload
    # The predictions the jobs made are records of their own: they stay (in the review queue).
    assert session.scalar(select(func.count()).select_from(Prediction)) == predictions_before
    event = session.scalars(select(AuditEvent).where(AuditEvent.action == "bulk_job.cleaned")).one()
    assert event.details["jobs"] == 2 and event.details["keep_days"] == 30
    assert "removed 2 bulk job(s) finished more than 30 day(s) ago (6 row(s))" in result.describe()

    again = clean_old_jobs(session, settings, now=NOW)
    assert (again.jobs, again.rows, again.files) == (0, 0, 0)


def test_zero_days_keeps_everything_and_a_negative_number_is_refused(
    session: Session, settings: Settings
) -> None:
    settings = settings.model_copy(update={"bulk_job_keep_days": 0})
    old = add_job(session, settings, JobStatus.DONE, 3650, with_zip=True)
    result = clean_old_jobs(session, settings, now=NOW)
    assert result.jobs == 0 and job_ids(session) == {old} and zip_path(settings, old).exists()
    assert "kept for ever" in result.describe()
    with pytest.raises(InvalidInputError, match="keep_days is -1"):
        clean_old_jobs(session, settings, keep_days=-1)
    with pytest.raises(ValueError, match="bulk_job_keep_days"):
        Settings(_env_file=None, bulk_job_keep_days=-1)  # type: ignore[call-arg]


def test_the_worker_cleans_when_it_starts(session: Session, settings: Settings, engine: object) -> None:
    settings = settings.model_copy(update={"bulk_job_keep_days": 7})
    old = add_job(session, settings, JobStatus.DONE, 8)
    kept = add_job(session, settings, JobStatus.DONE, 1)
    sessions = make_sessionmaker(make_engine(str(settings.resolved_database_url)))

    def no_model() -> object:
        raise ModelUnavailableError("no model in this test")

    worker = BulkWorker(sessions, settings, LocalImageStore(settings.images_dir), no_model, poll_seconds=0.05)  # type: ignore[arg-type]
    worker.start()
    try:
        until(lambda: old not in job_ids(session), timeout=30, message="the worker did not clean")
    finally:
        worker.stop()
    assert job_ids(session) == {kept}


@pytest.fixture
def cli(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("PRODTYPE_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("PRODTYPE_STORAGE_DIR", str(settings.storage_dir))
    monkeypatch.setenv("PRODTYPE_BULK_JOB_KEEP_DAYS", "10")
    get_settings.cache_clear()
    app = typer.Typer()
    cli_service.register(app)
    yield app
    get_settings.cache_clear()


def test_the_clean_command(cli: typer.Typer, session: Session, settings: Settings) -> None:
    days_ago = {name: add_job(session, settings, JobStatus.DONE, age) for name, age in (("a", 12), ("b", 5))}
    result = CliRunner().invoke(cli, ["bulk-jobs", "clean"])
    assert result.exit_code == 0, result.output
    assert "removed 1 bulk job(s) finished more than 10 day(s) ago" in result.output
    assert job_ids(session) == {days_ago["b"]}
    result = CliRunner().invoke(cli, ["bulk-jobs", "clean", "--keep-days", "3"])
    assert result.exit_code == 0 and "removed 1 bulk job(s)" in result.output
    assert job_ids(session) == set()
    result = CliRunner().invoke(cli, ["bulk-jobs", "clean", "--keep-days", "-2"])
    assert result.exit_code == 2 and "greater than or equal to 0" in " ".join(result.output.split())
