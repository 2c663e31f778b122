#!/usr/bin/env bash
# Create the Airflow virtualenv (default .venv-airflow) used to run and test dags/.
#
# Airflow lives apart from prodtype's .venv so that its many pins never fight prodtype's: the DAG tasks call
# prodtype through its CLI (PRODTYPE_CLI, by default the prodtype script of .venv), never by import.
# Versions come from constraints-airflow.txt; AIRFLOW_CONSTRAINTS may name another file (e.g. Airflow's
# official constraints-3.x/constraints-3.11.txt, downloaded beforehand).
# Besides Airflow: the Celery provider (CeleryExecutor, Redis or RabbitMQ broker) and psycopg2 + asyncpg (PostgreSQL as
# the metadata database and Celery result backend), for Airflow on several machines.
# Re-running is cheap: nothing happens while the venv was built from the same constraints.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV="${1:-.venv-airflow}"
PYTHON="${PYTHON:-python3.11}"
CONSTRAINTS="${AIRFLOW_CONSTRAINTS:-constraints-airflow.txt}"
AIRFLOW_VERSION="$(sed -n 's/^apache-airflow==//p' "$CONSTRAINTS")"
if [[ -z "$AIRFLOW_VERSION" ]]; then
    echo "error: $CONSTRAINTS does not pin apache-airflow==VERSION" >&2
    exit 2
fi
STAMP="$VENV/.installed-airflow"
if [[ -x "$VENV/bin/airflow" && -f "$STAMP" ]] && cmp -s "$CONSTRAINTS" "$STAMP"; then
    echo "Airflow $AIRFLOW_VERSION already installed in $VENV"
    exit 0
fi

start=$(date +%s)
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$CONSTRAINTS" "apache-airflow==$AIRFLOW_VERSION" \
    apache-airflow-providers-celery celery redis psycopg2-binary asyncpg
"$VENV/bin/airflow" version >/dev/null
cp "$CONSTRAINTS" "$STAMP"
echo "Airflow $AIRFLOW_VERSION installed in $VENV in $(($(date +%s) - start)) s"
