"""One retrain at a time, across processes; a job whose process died says so."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from prodtype.config import Settings
from prodtype.loop import retrain_jobs
from prodtype.serving.errors import ConflictError, NotFoundError


def test_the_lock_refuses_a_second_retrain(settings: Settings) -> None:
    assert not retrain_jobs.retrain_running(settings)
    with retrain_jobs.retrain_lock(settings, "first"):
        assert retrain_jobs.retrain_running(settings)
        with (
            pytest.raises(ConflictError, match="already running \\(first, pid"),
            retrain_jobs.retrain_lock(settings),
        ):
            pass
        with pytest.raises(ConflictError):
            retrain_jobs.start_job(settings, "admin")
    assert not retrain_jobs.retrain_running(settings)


def test_the_lock_is_held_by_another_process_and_freed_when_it_is_killed(settings: Settings) -> None:
    path = retrain_jobs.lock_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    code = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
        "print('locked', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        assert retrain_jobs.retrain_running(settings)
    finally:
        proc.kill()
        proc.wait()
    assert not retrain_jobs.retrain_running(settings)


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


def test_a_started_job_holds_the_lock_until_its_process_ends(settings: Settings) -> None:
    # The child is the real command, run with this process's settings; with a data folder that does not
    # exist it fails fast, which is what we want here: the job must end "failed" with the reason, and the
    # lock must be free again.
    settings = settings.model_copy(update={"data_dir": settings.storage_dir / "no-data-here"})
    job = retrain_jobs.start_job(settings, "admin")
    assert job.status == "running" and job.requested_by == "admin" and job.pid is not None
    with pytest.raises(ConflictError):
        retrain_jobs.start_job(settings, "admin")
    deadline = time.time() + 120
    while retrain_jobs.read_job(settings, job.id).status == "running" and time.time() < deadline:
        time.sleep(0.2)
    record = retrain_jobs.read_job(settings, job.id)
    assert record.status == "failed", record
    assert record.error and "no-data-here" in record.error
    while retrain_jobs.retrain_running(settings) and time.time() < deadline:
        time.sleep(0.1)  # the record is written just before the process exits
    assert not retrain_jobs.retrain_running(settings)
    assert record.log and os.path.getsize(record.log) > 0
