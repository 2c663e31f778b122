"""Monitoring DAG (daily): live accuracy, predicted class mix against training, count awaiting review.

One call of ``prodtype monitor``: it prints the figures as JSON (kept in the task log and pushed as the
task's XCom) and writes a JSON report and a bar chart under ``<storage>/loop/monitoring``. A second task
prints the retraining trigger's figures, so that the day's report shows whether a retrain is due.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import dag

PRODTYPE = os.environ.get("PRODTYPE_CLI", "prodtype")


@dag(
    dag_id="prodtype_monitoring",
    description="Daily figures of the served model and the review queue",
    schedule="@daily",
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["prodtype"],
    doc_md=__doc__,
)
def prodtype_monitoring() -> None:
    monitor = BashOperator(
        task_id="monitor",
        bash_command=f"set -o pipefail; '{PRODTYPE}' monitor --days 1 | tr -d '\\n'",
        append_env=True,
    )
    trigger = BashOperator(
        task_id="retrain_trigger_figures",
        bash_command=f"set -o pipefail; '{PRODTYPE}' retrain --step check --quiet | tr -d '\\n'",
        append_env=True,
    )
    monitor >> trigger


prodtype_monitoring()
