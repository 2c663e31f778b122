"""Retraining DAG: check the trigger → export feedback → train → evaluate → register → promote.

Each task is one call of the ``prodtype`` command line (``prodtype retrain --step STEP``), the same
functions the CLI and the API run, so the loop works without Airflow too. Airflow runs in its own
virtualenv: the tasks call prodtype's interpreter through ``PRODTYPE_CLI`` (default: ``prodtype`` on the
PATH) and pass on the worker's ``PRODTYPE_*`` environment (storage folder, database, data folder).

The steps of one DAG run share a run folder named after the run id: on one machine a local folder under the
storage folder; with an object store (``PRODTYPE_IMAGE_STORE=s3://…``) each step pulls it from the store
before it runs and pushes what it wrote after, so the steps may run on different Celery workers (README,
"Running on several machines"). ``check_trigger`` exits 99 when neither
trigger fires (enough new reviews, or live accuracy below the threshold), which Airflow reads as
"skipped": the rest of the run is skipped. Trigger by hand with ``{"force": true}`` to train anyway;
``{"shuffle_labels": true}`` trains a deliberately worse candidate, a check that the promotion rule holds
it back.
"""

from __future__ import annotations

import os

import pendulum
from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Param, dag

PRODTYPE = os.environ.get("PRODTYPE_CLI", "prodtype")
SCHEDULE = os.environ.get("PRODTYPE_RETRAIN_SCHEDULE", "@hourly")
RUN = "--run-name '{{ run_id }}' --quiet"


def _step(step: str, task_id: str | None = None) -> BashOperator:
    return BashOperator(
        task_id=task_id or step,
        bash_command=f"'{PRODTYPE}' retrain --step {step} {RUN}",
        append_env=True,
    )


@dag(
    dag_id="prodtype_retrain",
    description="Retrain prodtype on reviewed feedback; promote the candidate only if it is better",
    schedule=SCHEDULE,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={
        "force": Param(False, type="boolean", description="Retrain even if the trigger did not fire"),
        "shuffle_labels": Param(
            False, type="boolean", description="Sanity check: train on shuffled labels (must not be promoted)"
        ),
    },
    tags=["prodtype"],
    doc_md=__doc__,
)
def prodtype_retrain() -> None:
    check = BashOperator(
        task_id="check_trigger",
        bash_command=(
            f"'{PRODTYPE}' retrain --step check --not-needed-exit-code 99 --quiet"
            "{% if params.force %} --force{% endif %}"
        ),
        skip_on_exit_code=99,
        append_env=True,
    )
    export = _step("export", "export_feedback")
    train = BashOperator(
        task_id="train",
        bash_command=(
            f"'{PRODTYPE}' retrain --step train {RUN}"
            "{% if params.shuffle_labels %} --shuffle-labels{% endif %}"
        ),
        append_env=True,
    )
    evaluate = _step("evaluate")
    register = _step("register")
    promote = _step("promote")
    check >> export >> train >> evaluate >> register >> promote


prodtype_retrain()
