"""One retrain at a time, in the background, with a job record that can be polled.

The lock is an exclusive ``flock`` on ``<storage>/loop/retrain.lock``. The API takes it, starts
``python -m prodtype.cli.loop retrain --job-id ID`` with the locked file descriptor inherited (so that there
is no moment when the lock is free between the request and the child) and lets go of its own copy: the lock
then lives exactly as long as the training process, even when that process is killed. A retrain from the
CLI or the Airflow DAG takes the same lock, so two never run at once anywhere on the machine.

Job records are JSON files under ``<storage>/loop/jobs``: status ``running``, ``succeeded`` or ``failed``,
the step reached, the outcome, and the log file of the child process.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings

from prodtype.config import Settings
from prodtype.files import atomic_write_text, try_lock
from prodtype.loop.retrain import RetrainResult
from prodtype.serving.errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)

LOCK_FD_ENV = "PRODTYPE_RETRAIN_LOCK_FD"
JobStatus = Literal["running", "succeeded", "failed"]


def lock_path(settings: Settings) -> Path:
    return settings.loop_dir / "retrain.lock"


def jobs_dir(settings: Settings) -> Path:
    return settings.loop_dir / "jobs"


def _holder(settings: Settings) -> str:
    try:
        return lock_path(settings).read_text().strip() or "another process"
    except OSError:
        return "another process"


def retrain_running(settings: Settings) -> bool:
    fd = try_lock(lock_path(settings))
    if fd is None:
        return True
    os.close(fd)
    return False


@contextmanager
def retrain_lock(settings: Settings, what: str = "retrain") -> Iterator[None]:
    """Hold the retrain lock for the block (or use the one inherited from the API); ConflictError if taken."""
    if os.environ.get(LOCK_FD_ENV):
        yield  # the parent took it for us and it lives as long as this process
        return
    fd = try_lock(lock_path(settings))
    if fd is None:
        raise ConflictError(f"a retrain is already running ({_holder(settings)}); wait for it to finish")
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{what}, pid {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobRecord(BaseModel):
    """A retrain job as its JSON file keeps it (the API's ``RetrainJobPublic`` is this)."""

    id: str
    status: JobStatus = Field(description="running, succeeded or failed")
    step: str | None = Field(default=None, description="The step reached (starting, check, export, …, done)")
    requested_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    pid: int | None = None
    log: str | None = Field(default=None, description="The child process's log file")
    run_dir: str | None = None
    result: RetrainResult | None = None
    error: str | None = None


def _write(path: Path, record: JobRecord) -> None:
    atomic_write_text(path, record.model_dump_json(indent=2, exclude_none=True))


def _load(path: Path) -> JobRecord:
    return JobRecord.model_validate_json(path.read_text())


def job_file(settings: Settings, job_id: str) -> Path:
    if not job_id.isalnum():
        raise NotFoundError(f"no retrain job {job_id!r}")
    return jobs_dir(settings) / f"{job_id}.json"


def read_job(settings: Settings, job_id: str) -> JobRecord:
    path = job_file(settings, job_id)
    if not path.is_file():
        raise NotFoundError(f"no retrain job {job_id!r}")
    record = _load(path)
    if record.status == "running" and not (_alive(record.pid) and retrain_running(settings)):
        # the process is gone without writing its end (killed): say so rather than "running" forever
        record = record.model_copy(
            update={"status": "failed", "error": "the retrain process ended without finishing (killed?)"}
        )
    return record


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return True  # not started yet: the lock decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def update_job(settings: Settings, job_id: str, **fields: Any) -> JobRecord:
    path = job_file(settings, job_id)
    current = _load(path).model_dump(exclude_none=True) if path.is_file() else {"id": job_id}
    record = JobRecord.model_validate({**current, **fields, "updated_at": _now()})
    _write(path, record)
    return record


def settings_env(*objects: BaseSettings) -> dict[str, str]:
    """``PRODTYPE_*`` variables that recreate these settings in a child process (the child runs as the
    same user, so passing the secrets it needs to start, e.g. the JWT secret in production, is no leak)."""
    env: dict[str, str] = {}
    for obj in objects:
        for name in type(obj).model_fields:
            value = getattr(obj, name)
            if value is None:
                continue
            if isinstance(value, BaseSettings):  # nested (Settings.loop): the same variables
                env.update(settings_env(value))
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            env[f"PRODTYPE_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def start_job(
    settings: Settings,
    requested_by: str | None,
    *,
    force: bool = True,
    extra_args: list[str] | None = None,
) -> JobRecord:
    """Start a retrain in a child process and return its job record; ConflictError while one runs."""
    fd = try_lock(lock_path(settings))
    if fd is None:
        raise ConflictError(f"a retrain is already running ({_holder(settings)}); wait for it to finish")
    job_id = datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(4)
    try:
        jobs_dir(settings).mkdir(parents=True, exist_ok=True)
        log_path = jobs_dir(settings) / f"{job_id}.log"
        os.ftruncate(fd, 0)
        os.write(fd, f"job {job_id}".encode())
        record = update_job(
            settings,
            job_id,
            id=job_id,
            status="running",
            step="starting",
            requested_by=requested_by,
            created_at=_now(),
            log=str(log_path),
        )
        cmd = [sys.executable, "-m", "prodtype.cli.loop", "retrain", "--job-id", job_id, "--quiet"]
        if force:
            cmd.append("--force")
        cmd += extra_args or []
        # The child reads its settings from the environment: pass the ones this process runs with.
        env = {**os.environ, **settings_env(settings), LOCK_FD_ENV: str(fd)}
        with log_path.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module, fixed arguments)
                cmd, stdout=out, stderr=subprocess.STDOUT, pass_fds=(fd,), env=env, start_new_session=True
            )
        record = update_job(settings, job_id, pid=proc.pid)
    finally:
        os.close(fd)  # the child holds the lock from here on
    threading.Thread(
        target=_reap, args=(settings, job_id, proc), daemon=True, name=f"retrain-{job_id}"
    ).start()
    return record


def _reap(settings: Settings, job_id: str, proc: subprocess.Popen[bytes]) -> None:
    code = proc.wait()
    if _load(job_file(settings, job_id)).status == "running":
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        error = f"the retrain process ended ({how}) before finishing"
        update_job(settings, job_id, status="failed", error=error)
        from prodtype.loop.retrain_outcomes import record_with_settings

        try:  # a killed process could not record it itself; the alerts read it from the database
            record_with_settings(settings, job_id, False, {"error": error})
        except Exception as exc:
            log.warning("could not record the failed retrain %s in the audit log: %s", job_id, exc)


def recent_jobs(settings: Settings, limit: int = 10) -> list[JobRecord]:
    """The newest ``limit`` job records, newest first (ids start with their UTC start time)."""
    folder = jobs_dir(settings)
    if not folder.is_dir():
        return []
    ids = sorted((p.stem for p in folder.glob("*.json") if p.stem.isalnum()), reverse=True)[:limit]
    jobs = []
    for job_id in ids:
        try:
            jobs.append(read_job(settings, job_id))
        except (NotFoundError, ValueError, OSError):  # removed or half written meanwhile
            continue
    return jobs
