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

import json
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
from typing import Any

from pydantic import SecretStr
from pydantic_settings import BaseSettings

from prodtype.config import Settings
from prodtype.files import atomic_write_text, try_lock
from prodtype.serving.errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)

LOCK_FD_ENV = "PRODTYPE_RETRAIN_LOCK_FD"


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


def _write(path: Path, record: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(record, indent=2, default=str))


def job_file(settings: Settings, job_id: str) -> Path:
    if not job_id.isalnum():
        raise NotFoundError(f"no retrain job {job_id!r}")
    return jobs_dir(settings) / f"{job_id}.json"


def read_job(settings: Settings, job_id: str) -> dict[str, Any]:
    path = job_file(settings, job_id)
    if not path.is_file():
        raise NotFoundError(f"no retrain job {job_id!r}")
    record: dict[str, Any] = json.loads(path.read_text())
    if record.get("status") == "running" and not (_alive(record.get("pid")) and retrain_running(settings)):
        # the process is gone without writing its end (killed): say so rather than "running" forever
        record.update(status="failed", error="the retrain process ended without finishing (killed?)")
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


def update_job(settings: Settings, job_id: str, **fields: Any) -> dict[str, Any]:
    path = job_file(settings, job_id)
    record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"id": job_id}
    record.update(fields, updated_at=_now())
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
) -> dict[str, Any]:
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
        update_job(settings, job_id, pid=proc.pid)
    finally:
        os.close(fd)  # the child holds the lock from here on
    threading.Thread(
        target=_reap, args=(settings, job_id, proc), daemon=True, name=f"retrain-{job_id}"
    ).start()
    return {**record, "pid": proc.pid}


def _reap(settings: Settings, job_id: str, proc: subprocess.Popen[bytes]) -> None:
    code = proc.wait()
    record = json.loads(job_file(settings, job_id).read_text())
    if record.get("status") == "running":
        how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
        error = f"the retrain process ended ({how}) before finishing"
        update_job(settings, job_id, status="failed", error=error)
        from prodtype.loop.retrain_outcomes import record_with_settings

        try:  # a killed process could not record it itself; the alerts read it from the database
            record_with_settings(settings, job_id, False, {"error": error})
        except Exception as exc:
            log.warning("could not record the failed retrain %s in the audit log: %s", job_id, exc)
