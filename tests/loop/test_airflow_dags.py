"""The DAGs import in real Apache Airflow 3 (its own virtualenv) without errors, with the expected tasks.

Running the retraining DAG end to end (``airflow dags test``) on the sample is part of the learning-loop
scenario in tests/e2e/test_learning_loop.py, where it trains the deliberately worse candidate.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from loop import airflow_support
from loop.airflow_support import DAGS, airflow_bin, airflow_env

DAGBAG = """
import json
from airflow.dag_processing.dagbag import DagBag
bag = DagBag({folder!r})
print(json.dumps({{
    "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
    "dags": {{d.dag_id: {{"tasks": [t.task_id for t in d.topological_sort()], "schedule": str(d.schedule)}}
             for d in bag.dags.values()}},
}}))
"""


def test_dags_import_without_errors(tmp_path: Path) -> None:
    python = airflow_bin().parent / "python"
    proc = subprocess.run(
        [str(python), "-c", DAGBAG.format(folder=str(DAGS))],
        env=airflow_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    bag = json.loads(proc.stdout.strip().splitlines()[-1])
    assert bag["errors"] == {}
    assert set(bag["dags"]) == {"prodtype_retrain", "prodtype_monitoring"}
    assert bag["dags"]["prodtype_retrain"]["tasks"] == [
        "check_trigger",
        "export_feedback",
        "train",
        "evaluate",
        "register",
        "promote",
    ]
    assert bag["dags"]["prodtype_monitoring"]["tasks"] == ["monitor", "retrain_trigger_figures"]
    assert bag["dags"]["prodtype_monitoring"]["schedule"] == "@daily"


def test_a_missing_airflow_venv_fails_under_ci_and_is_a_visible_skip_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(airflow_support, "AIRFLOW_VENV", tmp_path / "no-venv")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true, so the DAG tests must run"):
        airflow_bin()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="make airflow-venv"):
        airflow_bin()
