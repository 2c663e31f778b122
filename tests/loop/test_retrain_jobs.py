"""One retrain at a time, across processes and, with PostgreSQL, across machines; a job whose process died
says so; every replica reads the same job records.

On PostgreSQL the "other replica" has its own storage folder (it shares only the database); on SQLite it is
the same machine, so it shares the folder (the lock and the records are files there)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import Settings
from prodtype.loop import retrain, retrain_jobs
from prodtype.loop.retrain import LoopContext, RetrainResult
from prodtype.loop.retrain_outcomes import read_outcomes
from prodtype.serving.errors import ConflictError, NotFoundError
from service_support.databases import both_databases
from service_support.waiting import until


def other_replica(settings: Settings, tmp_path: Path) -> Settings:
    if not retrain_jobs.on_postgres(settings):
        return settings
    return settings.model_copy(update={"storage_dir": tmp_path / "replica-b"})


def python(settings: Settings, code: str, *args: str) -> subprocess.Popen[str]:
    """A second process with these settings (from the environment, as the API's children get them)."""
    env = {**os.environ, **retrain_jobs.settings_env(settings)}
    env.pop(retrain_jobs.LOCK_FD_ENV, None)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )


HOLD_THE_LOCK = """
import sys, time
from prodtype.config import Settings
from prodtype.loop import retrain_jobs
settings = Settings()
lock = retrain_jobs.job_lock(settings, sys.argv[1]) if len(sys.argv) > 1 else retrain_jobs.retrain_lock(
    settings, "holder")
with lock:
    print("locked", flush=True)
    time.sleep(120)
"""


@both_databases
def test_the_lock_refuses_a_second_retrain_on_the_other_replica(settings: Settings, tmp_path: Path) -> None:
    other = other_replica(settings, tmp_path)
    assert not retrain_jobs.retrain_running(other)
    with retrain_jobs.retrain_lock(settings, "first"):
        assert retrain_jobs.retrain_running(other)
        with (
            pytest.raises(ConflictError, match=r"already running \(.*first.*pid"),
            retrain_jobs.retrain_lock(other),
        ):
            pass
        with pytest.raises(retrain_jobs.RetrainBusyError):
            retrain_jobs.start_job(other, "admin")
        assert retrain_jobs.recent_jobs(other) == []  # the refused start left no record
    assert not retrain_jobs.retrain_running(other)


@both_databases
def test_the_lock_is_held_by_another_process_and_freed_when_it_is_killed(
    settings: Settings, tmp_path: Path
) -> None:
    other = other_replica(settings, tmp_path)
    proc = python(other, HOLD_THE_LOCK)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert retrain_jobs.retrain_running(settings)
        with pytest.raises(retrain_jobs.RetrainBusyError, match="holder"):
            retrain_jobs.start_job(settings, "admin")
    finally:
        proc.kill()  # SIGKILL: nothing of the holder's runs, the lock must go with the process
        proc.wait()
    until(lambda: not retrain_jobs.retrain_running(settings), timeout=30, message="the lock stayed taken")


def test_a_job_whose_process_vanished_is_reported_failed(settings: Settings) -> None:
    retrain_jobs.jobs_dir(settings).mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    retrain_jobs.update_job(settings, "abc123", id="abc123", status="running", pid=dead.pid)
    record = retrain_jobs.read_job(settings, "abc123")
    assert record.status == "failed" and record.error and "without finishing" in record.error
    with pytest.raises(NotFoundError):
        retrain_jobs.read_job(settings, "nope")
    with pytest.raises(NotFoundError):
        retrain_jobs.read_job(settings, "../../etc/passwd")


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_job_whose_lock_holder_was_killed_is_failed_on_every_replica_and_recorded_once(
    settings: Settings, tmp_path: Path, sessions: sessionmaker[Session]
) -> None:
    other = other_replica(settings, tmp_path)
    job_id = "20261202000000abcdef12"
    retrain_jobs.update_job(settings, job_id, status="running", step="starting", requested_by="admin")
    assert retrain_jobs.read_job(other, job_id).status == "running"  # starting: not taken for dead yet
    proc = python(settings, HOLD_THE_LOCK, job_id)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        record = retrain_jobs.read_job(other, job_id)
        assert record.status == "running" and record.pid == proc.pid
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    until(lambda: retrain_jobs.read_job(other, job_id).status == "failed", timeout=30)
    assert retrain_jobs.read_job(settings, job_id).error == retrain_jobs.DIED
    with sessions() as s:
        outcomes = read_outcomes(s)
    assert (outcomes.failed, outcomes.last_run) == (1, job_id)  # read twice, recorded once


@both_databases
def test_a_started_job_holds_the_lock_until_its_process_ends(settings: Settings, tmp_path: Path) -> None:
    # The child is the real command, run with this process's settings; with a data folder that does not
    # exist it fails fast, which is what we want here: the job must end "failed" with the reason, and the
    # lock must be free again.
    settings = settings.model_copy(update={"data_dir": settings.storage_dir / "no-data-here"})
    other = other_replica(settings, tmp_path)
    job = retrain_jobs.start_job(settings, "admin")
    assert job.status == "running" and job.requested_by == "admin" and job.pid is not None
    until(lambda: retrain_jobs.read_job(other, job.id).status != "running", timeout=120)
    record = retrain_jobs.read_job(other, job.id)
    assert record.status == "failed", record
    assert record.error and "no-data-here" in record.error
    until(lambda: not retrain_jobs.retrain_running(other), timeout=30)  # written just before the exit
    assert record.log and os.path.getsize(record.log) > 0
    if retrain_jobs.on_postgres(settings):  # the other replica cannot open the log file: it has its tail
        until(
            lambda: "InvalidInputError" in (retrain_jobs.read_job(other, job.id).log_tail or ""), timeout=30
        )
    assert [j.id for j in retrain_jobs.recent_jobs(other)] == [job.id]
    reaped(job.id)


@both_databases
def test_two_replicas_starting_at_once_start_one_retrain(settings: Settings, tmp_path: Path) -> None:
    other = other_replica(settings, tmp_path)
    start = threading.Barrier(2)
    started: list[retrain_jobs.JobRecord] = []
    refused: list[Exception] = []

    def start_on(replica: Settings) -> None:
        start.wait()
        try:
            started.append(retrain_jobs.start_job(replica, "admin"))  # real data: it trains a while
        except retrain_jobs.RetrainBusyError as exc:
            refused.append(exc)

    threads = [threading.Thread(target=start_on, args=(s,)) for s in (settings, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert len(started) == 1 and len(refused) == 1, (started, refused)
        assert "already running" in str(refused[0])
        assert [j.id for j in retrain_jobs.recent_jobs(other)] == [started[0].id]  # no record of the refusal
        assert retrain_jobs.read_job(other, started[0].id).status == "running"
    finally:
        for job in started:
            assert job.pid is not None
            os.killpg(job.pid, signal.SIGKILL)
    until(lambda: retrain_jobs.read_job(other, started[0].id).status == "failed", timeout=60)
    reaped(started[0].id)


@both_databases
def test_job_records_are_read_from_a_second_process(settings: Settings, tmp_path: Path) -> None:
    other = other_replica(settings, tmp_path)
    job_id = "20261202000000abcdef12"
    retrain_jobs.update_job(
        settings, job_id, id=job_id, status="succeeded", step="done", requested_by="admin", log_tail="tail"
    )
    code = (
        "import sys; from prodtype.config import Settings; from prodtype.loop import retrain_jobs; "
        "print(retrain_jobs.read_job(Settings(), sys.argv[1]).model_dump_json())"
    )
    proc = python(other, code, job_id)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    seen = json.loads(out)
    assert (seen["id"], seen["status"], seen["step"], seen["requested_by"]) == (
        job_id,
        "succeeded",
        "done",
        "admin",
    )


@both_databases
def test_a_finished_job_keeps_its_result_for_every_replica(
    settings: Settings, tmp_path: Path, ctx: LoopContext
) -> None:
    other = other_replica(settings, tmp_path)
    result = RetrainResult(
        retrained=True,
        reason="forced",
        trigger=retrain.check(ctx),
        version=3,
        promoted=False,
        candidate_metrics={"weighted_f1": 0.75, "n": 380},
    )
    job_id = "20261202000000abcdef12"
    retrain_jobs.update_job(settings, job_id, id=job_id, status="running", step="train", requested_by="admin")
    retrain_jobs.update_job(settings, job_id, status="succeeded", step="done", result=result)
    record = retrain_jobs.read_job(other, job_id)
    assert (record.status, record.step, record.requested_by) == ("succeeded", "done", "admin")
    assert record.result == result and record.result.printed() == result.printed()
    assert record.created_at and record.updated_at and record.created_at <= record.updated_at


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_job_that_loses_its_database_lock_stops(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    # A database restart or a cut connection frees the lock: the job must not go on beside a new one.
    job = retrain_jobs.start_job(settings, "admin")  # real data: it would train for a while
    try:
        with sessions() as s:
            killed = s.execute(
                text("SELECT pg_terminate_backend(lock_pid) FROM retrain_jobs WHERE id = :id"), {"id": job.id}
            ).scalar()
        assert killed
        # Any replica reading it now sees it failed (its lock is gone); the job stops within a watch period.
        assert retrain_jobs.read_job(settings, job.id).status == "failed"
        assert job.pid is not None
        until(lambda: not _alive(job.pid), timeout=120, message="the job's process went on")
        reaped(job.id)
        record = retrain_jobs.read_job(settings, job.id)
        assert (record.status, record.error) == ("failed", retrain_jobs.LOCK_LOST)
    finally:
        if job.pid is not None and _alive(job.pid):
            os.killpg(job.pid, signal.SIGKILL)


def reaped(job_id: str) -> None:
    """Wait for this process's reaper of the job (it writes the job's end after its process exits)."""
    until(lambda: not any(t.name == f"retrain-{job_id}" for t in threading.enumerate()), timeout=60)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_a_job_given_up_before_its_process_took_the_lock_does_not_run(settings: Settings) -> None:
    job_id = "20261202000000abcdef12"
    retrain_jobs.update_job(settings, job_id, status="failed", step="starting", error=retrain_jobs.DIED)
    with pytest.raises(ConflictError, match="given up"), retrain_jobs.job_lock(settings, job_id):
        pytest.fail("the job ran")
    assert not retrain_jobs.retrain_running(settings)
