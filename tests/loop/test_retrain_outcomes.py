"""Every way a retrain runs records how it ended in the audit log, where the alert figures read it: the CLI
(steps and whole runs), the API's background job, and the job's reaper when the process is killed."""

from __future__ import annotations

import os
import signal

from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import Settings
from prodtype.loop import retrain_jobs
from prodtype.loop.retrain_outcomes import read_outcomes
from service_support.databases import both_databases
from service_support.waiting import until

from .test_cli import run  # noqa: F401 (fixture)


@both_databases
def test_a_failing_step_is_recorded_and_the_check_step_records_nothing(
    run,  # noqa: F811
    sessions: sessionmaker[Session],
) -> None:  # type: ignore[no-untyped-def]
    code, _, _ = run("retrain", "--step", "check", "--not-needed-exit-code", "99")
    assert code == 99
    with sessions() as s:
        assert read_outcomes(s).last_outcome is None
    code, _, err = run("retrain", "--step", "evaluate", "--run-name", "nightly-1")
    assert code == 1 and "needs the output of step 'train'" in err
    with sessions() as s:
        outcomes = read_outcomes(s)
    assert (outcomes.failed, outcomes.succeeded, outcomes.last_outcome) == (1, 0, "failed")
    assert outcomes.last_run == "nightly-1"


@both_databases
def test_a_failed_api_job_is_recorded(settings: Settings, sessions: sessionmaker[Session]) -> None:
    settings = settings.model_copy(update={"data_dir": settings.storage_dir / "no-data-here"})
    job = retrain_jobs.start_job(settings, "admin")

    def failed() -> bool:
        with sessions() as s:
            return read_outcomes(s).failed == 1

    until(failed, timeout=120, message="the failed job was not recorded")
    with sessions() as s:
        outcomes = read_outcomes(s)
    assert outcomes.last_outcome == "failed" and outcomes.last_run == job.id


@both_databases
def test_a_killed_api_job_is_recorded_by_the_reaper(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    job = retrain_jobs.start_job(settings, "admin")  # real data: it would train for a while
    assert job.pid is not None
    os.kill(job.pid, signal.SIGKILL)

    def recorded() -> bool:
        with sessions() as s:
            return read_outcomes(s).failed == 1

    until(recorded, timeout=60, message="the killed job was not recorded")
    assert "killed by signal 9" in (retrain_jobs.read_job(settings, job.id).error or "")
    with sessions() as s:
        assert read_outcomes(s).last_run == job.id
