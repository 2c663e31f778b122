"""One retrain at a time, in the background, with a job record that can be polled.

Two backends behind one interface (:func:`retrain_lock`, :func:`retrain_running`, :func:`start_job`,
:func:`read_job`, :func:`update_job`, :func:`recent_jobs`), chosen by the database URL:

SQLite (one machine): the lock is an exclusive ``flock`` on ``<storage>/loop/retrain.lock``. The API takes
it, starts ``python -m prodtype.cli.loop retrain --job-id ID`` with the locked file descriptor inherited (so
that there is no moment when the lock is free between the request and the child) and lets go of its own
copy: the lock then lives exactly as long as the training process, even when that process is killed. Job
records are JSON files under ``<storage>/loop/jobs``.

PostgreSQL (any number of replicas): the lock is a session-level advisory lock held by a connection of the
process that trains, so the database frees it when that process ends or is killed. The API does not hand a
lock over: it writes the job row, starts the child, and the child takes the lock itself; the API waits (a
few seconds: the child's start-up) until the child holds it, or answers 409 when the child found it taken
(two replicas starting at once: one child wins). Job records are rows of ``retrain_jobs``, with the tail of
the log so that every replica can show it.

A retrain from the CLI or the Airflow DAG takes the same lock, so two never run at once.
"""

from __future__ import annotations

import _thread
import contextlib
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings
from sqlalchemy import Connection, Engine, delete, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from prodtype.config import Settings
from prodtype.db.engine import make_engine
from prodtype.db.tables import RetrainJob
from prodtype.files import atomic_write_text, try_lock
from prodtype.loop.retrain import RetrainResult
from prodtype.serving.errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)

LOCK_FD_ENV = "PRODTYPE_RETRAIN_LOCK_FD"
JobStatus = Literal["running", "succeeded", "failed"]
# The child's exit status when it found the lock taken (PostgreSQL): the API answers 409 and drops the row.
BUSY_EXIT = 75
# The advisory lock's key, two 32-bit integers ("retr", "ain1"): pg_locks shows them as classid, objid. The
# first is a namespace of its own: other advisory locks of prodtype (e.g. the photos' references) use others.
PG_LOCK_KEY = (0x72657472, 0x61696E31)
# How long the API waits for its child to take the lock; a job still "starting" after this is dead.
START_TIMEOUT_S = 120.0
LOG_TAIL_CHARS = 8000
WATCH_EVERY_S = 10.0
DIED = "the retrain process ended without finishing (killed?)"
LOCK_LOST = "the retrain lost its database lock (connection closed) and was stopped"


class RetrainBusyError(ConflictError):
    """The retrain lock is held: another retrain runs (here or, with PostgreSQL, on another machine)."""


class RetrainLockLostError(ConflictError):
    """PostgreSQL: the connection holding the retrain lock went away, so the retrain was stopped."""


def _busy(holder: str) -> RetrainBusyError:
    return RetrainBusyError(f"a retrain is already running ({holder}); wait for it to finish")


def on_postgres(settings: Settings) -> bool:
    """Whether the lock and the job records live in the database (PostgreSQL) rather than in files."""
    return make_url(settings.resolved_database_url).get_backend_name() == "postgresql"


def lock_path(settings: Settings) -> Path:
    return settings.loop_dir / "retrain.lock"


def jobs_dir(settings: Settings) -> Path:
    """Where job records (SQLite) and the log files of the jobs started on this machine are kept."""
    return settings.loop_dir / "jobs"


# --- the lock ---------------------------------------------------------------------------------------


def _holder(settings: Settings) -> str:
    if on_postgres(settings):
        holder = _pg_holder(settings)
        return holder[1] if holder else "another process"
    try:
        return lock_path(settings).read_text().strip() or "another process"
    except OSError:
        return "another process"


def retrain_running(settings: Settings) -> bool:
    if on_postgres(settings):
        return _pg_holder(settings) is not None
    fd = try_lock(lock_path(settings))
    if fd is None:
        return True
    os.close(fd)
    return False


@contextmanager
def retrain_lock(settings: Settings, what: str = "retrain") -> Iterator[None]:
    """Hold the retrain lock for the block (or use the one inherited from the API with SQLite);
    :class:`RetrainBusyError` if another holds it."""
    if on_postgres(settings):
        with _pg_lock(settings, what):
            yield
        return
    if os.environ.get(LOCK_FD_ENV):
        yield  # the parent took it for us and it lives as long as this process
        return
    fd = try_lock(lock_path(settings))
    if fd is None:
        raise _busy(_holder(settings))
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{what}, pid {os.getpid()}".encode())
        yield
    finally:
        os.close(fd)


@contextmanager
def job_lock(settings: Settings, job_id: str) -> Iterator[None]:
    """The lock for the child process of job ``job_id``: inherited from the API with SQLite; taken here
    with PostgreSQL, and the job row then says which connection holds it (so that any replica can tell
    whether the job still lives). Found taken, the row says so and :class:`RetrainBusyError` is raised."""
    if not on_postgres(settings):
        with retrain_lock(settings, f"job {job_id}"):
            yield
        return
    try:
        with _pg_lock(settings, f"job {job_id}", on_tick=lambda: _pg_update(settings, job_id)) as held:
            row = _pg_read_row(settings, job_id)
            if row is None or row.status != "running":  # given up on: it took too long to start
                raise ConflictError(f"retrain job {job_id} was given up before it started; start another")
            host = socket.gethostname()
            _pg_update(settings, job_id, lock_pid=held.backend_pid, pid=os.getpid(), host=host)
            yield
    except RetrainLockLostError as exc:  # say why (the run's own handler wrote the interruption)
        _pg_update(settings, job_id, status="failed", error=str(exc))
        raise
    except RetrainBusyError as exc:
        if _pg_read_row(settings, job_id) is not None:
            _pg_update(settings, job_id, status="failed", error=str(exc))
        raise


# --- job records -------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class JobRecord(BaseModel):
    """A retrain job as its JSON file or its ``retrain_jobs`` row keeps it (the API's ``RetrainJobPublic``
    is this)."""

    id: str
    status: JobStatus = Field(description="running, succeeded or failed")
    step: str | None = Field(default=None, description="The step reached (starting, check, export, …, done)")
    requested_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    host: str | None = Field(default=None, description="The machine that runs the job")
    pid: int | None = None
    log: str | None = Field(default=None, description="The child process's log file (on that machine)")
    log_tail: str | None = Field(
        default=None, description="The end of the log (with PostgreSQL, copied so that any replica shows it)"
    )
    run_dir: str | None = None
    result: RetrainResult | None = None
    error: str | None = None


def _write(path: Path, record: JobRecord) -> None:
    # None fields of the record left out, but not those inside the result: the trigger's live accuracy is
    # None before any review, and a record without it would not load again.
    data = {k: v for k, v in record.model_dump(mode="json", exclude_unset=True).items() if v is not None}
    atomic_write_text(path, json.dumps(data, indent=2))


def _load(path: Path) -> JobRecord:
    return JobRecord.model_validate_json(path.read_text())


def job_file(settings: Settings, job_id: str) -> Path:
    if not job_id.isalnum():
        raise NotFoundError(f"no retrain job {job_id!r}")
    return jobs_dir(settings) / f"{job_id}.json"


def read_job(settings: Settings, job_id: str) -> JobRecord:
    if not job_id.isalnum():
        raise NotFoundError(f"no retrain job {job_id!r}")
    if on_postgres(settings):
        return _pg_read(settings, job_id)
    path = job_file(settings, job_id)
    if not path.is_file():
        raise NotFoundError(f"no retrain job {job_id!r}")
    record = _load(path)
    if record.status == "running" and not (_alive(record.pid) and retrain_running(settings)):
        # the process is gone without writing its end (killed): say so rather than "running" forever
        record = record.model_copy(update={"status": "failed", "error": DIED})
    if record.log_tail is None:  # one machine: read from the log file itself
        record = record.model_copy(update={"log_tail": _log_tail(record.log)})
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
    if on_postgres(settings):
        return _pg_update(settings, job_id, **fields)
    path = job_file(settings, job_id)
    if path.is_file():
        current = _load(path).model_dump(exclude_unset=True)
    else:
        current = {"id": job_id, "created_at": _now()}
    record = JobRecord.model_validate({**current, **fields, "updated_at": _now()})
    _write(path, record)
    return record


def recent_jobs(settings: Settings, limit: int = 10) -> list[JobRecord]:
    """The newest ``limit`` job records, newest first (ids start with their UTC start time)."""
    if on_postgres(settings):
        with _engine(settings.resolved_database_url).connect() as conn:
            found = conn.execute(select(RetrainJob).order_by(RetrainJob.id.desc()).limit(limit)).all()
        records = []
        for row in (RetrainJob(**r._mapping) for r in found):
            if row.status != "running":
                records.append(_to_record(row))
                continue
            with contextlib.suppress(NotFoundError):  # a refused start's row, dropped meanwhile
                records.append(_pg_read(settings, row.id))  # read again: checks that its process lives
        return records
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


# --- starting a job ----------------------------------------------------------------------------------


def _new_job_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S") + secrets.token_hex(4)


def _child_cmd(job_id: str, force: bool, extra_args: list[str] | None) -> list[str]:
    cmd = [sys.executable, "-m", "prodtype.cli.loop", "retrain", "--job-id", job_id, "--quiet"]
    if force:
        cmd.append("--force")
    return cmd + (extra_args or [])


def start_job(
    settings: Settings,
    requested_by: str | None,
    *,
    force: bool = True,
    extra_args: list[str] | None = None,
) -> JobRecord:
    """Start a retrain in a child process and return its job record; RetrainBusyError while one runs."""
    if on_postgres(settings):
        return _pg_start(settings, requested_by, force, extra_args)
    fd = try_lock(lock_path(settings))
    if fd is None:
        raise _busy(_holder(settings))
    job_id = _new_job_id()
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
            host=socket.gethostname(),
            log=str(log_path),
        )
        # The child reads its settings from the environment: pass the ones this process runs with.
        env = {**os.environ, **settings_env(settings), LOCK_FD_ENV: str(fd)}
        with log_path.open("ab") as out:
            proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module, fixed arguments)
                _child_cmd(job_id, force, extra_args),
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=(fd,),
                env=env,
                start_new_session=True,
            )
        record = update_job(settings, job_id, pid=proc.pid)
    finally:
        os.close(fd)  # the child holds the lock from here on
    threading.Thread(
        target=_reap, args=(settings, job_id, proc), daemon=True, name=f"retrain-{job_id}"
    ).start()
    return record


def _record_failure(settings: Settings, job_id: str, error: str) -> None:
    from prodtype.loop.retrain_outcomes import record_with_settings

    try:  # a killed process could not record it itself; the alerts read it from the database
        record_with_settings(settings, job_id, False, {"error": error})
    except Exception as exc:
        log.warning("could not record the failed retrain %s in the audit log: %s", job_id, exc)


def _reap(settings: Settings, job_id: str, proc: subprocess.Popen[bytes]) -> None:
    code = proc.wait()
    how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
    error = f"the retrain process ended ({how}) before finishing"
    if on_postgres(settings):
        try:
            if _pg_fail_if_running(settings, job_id, error):
                _record_failure(settings, job_id, error)
            else:  # it wrote its end; what it printed after (a traceback) goes into the tail too
                _pg_update(settings, job_id)
        except Exception as exc:  # the database unreachable: the next replica to read the job marks it
            log.warning("could not record the end of retrain job %s: %s", job_id, exc)
        return
    if _load(job_file(settings, job_id)).status == "running":
        update_job(settings, job_id, status="failed", error=error)
        _record_failure(settings, job_id, error)


# --- PostgreSQL --------------------------------------------------------------------------------------


@lru_cache(maxsize=16)
def _engine(url: str) -> Engine:
    # No pool: a connection per call (these calls are rare), none left open between tests or after a fork.
    return make_engine(url, poolclass=NullPool)


def _pg_holder(settings: Settings) -> tuple[int, str] | None:
    """The backend pid of the connection holding the lock and who it says it is, or None when it is free."""
    query = text(
        "SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = :k1 AND l.objid::bigint = :k2 "
        "AND l.objsubid = 2 AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    with _engine(settings.resolved_database_url).connect() as conn:
        row = conn.execute(query, {"k1": PG_LOCK_KEY[0], "k2": PG_LOCK_KEY[1]}).first()
    if row is None:
        return None
    return int(row[0]), str(row[1] or "another process")


@dataclass
class _HeldLock:
    backend_pid: int
    connection: Connection  # used by no one else while the lock is held (the watcher checks it)
    lost: bool = False


@contextmanager
def _pg_lock(
    settings: Settings, what: str, on_tick: Callable[[], object] | None = None
) -> Iterator[_HeldLock]:
    """Hold the advisory lock on a connection of its own for the block. Closing the connection (the block
    ends, or the process dies and the server sees the socket close) frees it. A watcher checks the
    connection (and calls ``on_tick``) every ``WATCH_EVERY_S``: see :func:`_watch`."""
    url = settings.resolved_database_url
    name = f"prodtype {what} {socket.gethostname()} pid {os.getpid()}"[:63]  # NAMEDATALEN - 1
    engine = make_engine(url, poolclass=NullPool, connect_args={"application_name": name})
    conn: Connection = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        args = {"k1": PG_LOCK_KEY[0], "k2": PG_LOCK_KEY[1]}
        if not conn.scalar(text("SELECT pg_try_advisory_lock(:k1, :k2)"), args):
            conn.close()
            raise _busy(_holder(settings))
        held = _HeldLock(int(conn.scalar(text("SELECT pg_backend_pid()")) or 0), conn)
        stop = threading.Event()
        watcher = threading.Thread(
            target=_watch, args=(what, held, stop, on_tick), daemon=True, name="retrain-lock-watch"
        )
        watcher.start()
        try:
            yield held
        except KeyboardInterrupt:
            if held.lost:
                raise RetrainLockLostError(LOCK_LOST) from None
            raise
        finally:
            stop.set()
            watcher.join(timeout=5)
            if not held.lost:  # let go now: the server frees a closed session's locks only as it exits
                with contextlib.suppress(Exception):
                    conn.execute(text("SELECT pg_advisory_unlock(:k1, :k2)"), args)
    finally:
        conn.close()  # ends the session: the server frees the lock (if the unlock above could not)
        engine.dispose()


def _to_record(row: RetrainJob) -> JobRecord:
    def iso(value: datetime | None) -> str | None:
        return value.isoformat(timespec="seconds") if value else None

    return JobRecord(
        id=row.id,
        status=row.status,  # type: ignore[arg-type]  # the table's check constraint keeps it to these
        step=row.step,
        requested_by=row.requested_by,
        created_at=iso(row.created_at),
        updated_at=iso(row.updated_at),
        host=row.host,
        pid=row.pid,
        log=row.log,
        log_tail=row.log_tail,
        run_dir=row.run_dir,
        result=RetrainResult.model_validate(row.result) if row.result else None,
        error=row.error,
    )


def _pg_read_row(settings: Settings, job_id: str) -> RetrainJob | None:
    with _engine(settings.resolved_database_url).connect() as conn:
        found = conn.execute(select(RetrainJob).where(RetrainJob.id == job_id)).first()
    if found is None:
        return None
    return RetrainJob(**found._mapping)


def _log_tail(path: str | None) -> str | None:
    """The end of a log file on this machine (None if it is not here)."""
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_CHARS * 2))
            return f.read().decode("utf-8", "replace")[-LOG_TAIL_CHARS:]
    except OSError:
        return None


def _pg_update(settings: Settings, job_id: str, **fields: Any) -> JobRecord:
    """Insert or update the row; the log's tail is copied along when the log file is on this machine."""
    values: dict[str, Any] = {k: v for k, v in fields.items() if k != "id"}
    for key in ("created_at", "updated_at"):
        if isinstance(values.get(key), str):
            values[key] = datetime.fromisoformat(values[key])
    if isinstance(values.get("result"), BaseModel):
        values["result"] = values["result"].model_dump(mode="json", exclude_unset=True)  # as in the files
    values["updated_at"] = datetime.now(UTC)
    with _engine(settings.resolved_database_url).begin() as conn:
        found = conn.execute(select(RetrainJob).where(RetrainJob.id == job_id).with_for_update()).first()
        if found is None:
            values.setdefault("created_at", values["updated_at"])
            values.setdefault("status", "running")
            conn.execute(insert(RetrainJob).values(id=job_id, **values))
        else:
            current = RetrainJob(**found._mapping)
            if current.host in (None, socket.gethostname()) and "log_tail" not in values:
                tail = _log_tail(values.get("log", current.log))
                if tail is not None:
                    values["log_tail"] = tail
            conn.execute(update(RetrainJob).where(RetrainJob.id == job_id).values(**values))
    row = _pg_read_row(settings, job_id)
    assert row is not None
    return _to_record(row)


def _watch(what: str, held: _HeldLock, stop: threading.Event, on_tick: Callable[[], object] | None) -> None:
    """Every ``WATCH_EVERY_S`` while the lock is held: check that its connection is still there, then call
    ``on_tick`` (a job copies its log's tail: a step such as training lasts minutes, and every replica
    shows how far it got). If the connection is gone (the database restarted, the connection was cut), the
    lock is free and another retrain may start: stop this one (KeyboardInterrupt in the main thread, which
    :func:`_pg_lock` turns into :class:`RetrainLockLostError`)."""
    while not stop.wait(WATCH_EVERY_S):
        try:
            held.connection.execute(text("SELECT 1"))
        except Exception as exc:
            log.error("%s lost the retrain lock (%s): stopping it", what, exc)
            held.lost = True
            _thread.interrupt_main()
            return
        if on_tick is None:
            continue
        try:
            on_tick()
        except Exception as exc:  # the database unreachable for a moment: the next round will do
            log.warning("%s: could not update its record: %s", what, exc)


def _pg_died(settings: Settings, row: RetrainJob) -> bool:
    """A running job whose process is gone: the lock is not held by its connection (or, not yet taken, the
    child never took it in time)."""
    if row.lock_pid is None:
        started = row.created_at or datetime.now(UTC)
        return datetime.now(UTC) - started > timedelta(seconds=START_TIMEOUT_S)
    holder = _pg_holder(settings)
    return holder is None or holder[0] != row.lock_pid


def _pg_fail_if_running(settings: Settings, job_id: str, error: str) -> bool:
    """Mark the job failed if it still says running; True when this call did it (so it is recorded once,
    whichever replica notices first)."""
    tail = None
    row = _pg_read_row(settings, job_id)
    if row is not None and row.host == socket.gethostname():
        tail = _log_tail(row.log)
    values: dict[str, Any] = {"status": "failed", "error": error, "updated_at": datetime.now(UTC)}
    if tail is not None:
        values["log_tail"] = tail
    with _engine(settings.resolved_database_url).begin() as conn:
        changed = conn.execute(
            update(RetrainJob).where(RetrainJob.id == job_id, RetrainJob.status == "running").values(**values)
        ).rowcount
    return bool(changed)


def _pg_read(settings: Settings, job_id: str) -> JobRecord:
    row = _pg_read_row(settings, job_id)
    if row is None:
        raise NotFoundError(f"no retrain job {job_id!r}")
    if row.status == "running" and _pg_died(settings, row):
        # the process is gone without writing its end (killed, its machine lost): record it, once
        if _pg_fail_if_running(settings, job_id, DIED):
            _record_failure(settings, job_id, DIED)
        row = _pg_read_row(settings, job_id) or row
    return _to_record(row)


def _pg_start(
    settings: Settings, requested_by: str | None, force: bool, extra_args: list[str] | None
) -> JobRecord:
    holder = _pg_holder(settings)
    if holder is not None:
        raise _busy(holder[1])
    job_id = _new_job_id()
    jobs_dir(settings).mkdir(parents=True, exist_ok=True)
    log_path = jobs_dir(settings) / f"{job_id}.log"
    _pg_update(
        settings,
        job_id,
        status="running",
        step="starting",
        requested_by=requested_by,
        host=socket.gethostname(),
        log=str(log_path),
    )
    env = {**os.environ, **settings_env(settings)}
    env.pop(LOCK_FD_ENV, None)
    with log_path.open("ab") as out:
        proc = subprocess.Popen(  # noqa: S603 (our own interpreter and module, fixed arguments)
            _child_cmd(job_id, force, extra_args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _pg_update(settings, job_id, pid=proc.pid)
    # The child takes the lock itself; wait until it holds it, or has given up because another did.
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        row = _pg_read_row(settings, job_id)
        if row is not None and row.lock_pid is not None:
            break
        time.sleep(0.05)
    if proc.poll() == BUSY_EXIT:
        row = _pg_read_row(settings, job_id)
        with _engine(settings.resolved_database_url).begin() as conn:
            conn.execute(delete(RetrainJob).where(RetrainJob.id == job_id))
        log_path.unlink(missing_ok=True)
        raise RetrainBusyError(row.error if row and row.error else str(_busy(_holder(settings))))
    threading.Thread(
        target=_reap, args=(settings, job_id, proc), daemon=True, name=f"retrain-{job_id}"
    ).start()
    return read_job(settings, job_id)
