"""Running the real Apache Airflow (its own virtualenv, .venv-airflow) from the tests, as a subprocess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_VENV = Path(os.environ.get("PRODTYPE_AIRFLOW_VENV", REPO / ".venv-airflow"))
DAGS = REPO / "dags"


def in_ci() -> bool:
    """Under CI (``.ci/run`` exports CI=true) a missing tool fails the test instead of skipping it."""
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def airflow_bin() -> Path:
    """The airflow executable; without it a visible skip saying how to get it (make test creates it), or a
    failure under CI, where a skipped DAG test would pass unnoticed."""
    path = AIRFLOW_VENV / "bin" / "airflow"
    if not path.is_file():
        message = f"no Airflow virtualenv at {AIRFLOW_VENV}: run `make airflow-venv` (make test does)"
        if in_ci():
            pytest.fail(f"{message}; CI=true, so the DAG tests must run")
        pytest.skip(message)
    return path


def airflow_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "VIRTUAL_ENV", "PYTHON"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(DAGS),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
        PATH=f"{AIRFLOW_VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
    )
    env.update(extra or {})
    return env


def run_airflow(
    args: list[str], env: dict[str, str], timeout: float, log: Path
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(airflow_bin()), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    return proc


def migrate(home: Path) -> None:
    proc = run_airflow(["db", "migrate"], airflow_env(home), 300, home / "migrate.log")
    assert proc.returncode == 0, proc.stderr[-3000:]
