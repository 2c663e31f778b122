"""deploy/airflow/create_database.py (compose's airflow-init job) on the real PostgreSQL, with the Airflow
virtualenv's Python and psycopg2, as in Airflow's image: it creates the database once, then leaves it."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from loop.airflow_support import airflow_bin
from service_support.databases import POSTGRES_URL, PostgresBackend, postgres_backend  # noqa: F401 (fixture)

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "airflow" / "create_database.py"


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def airflow_url(postgres_backend: PostgresBackend) -> Iterator[str]:  # noqa: F811
    """The URL of a database that does not exist yet (dropped afterwards if the script made it)."""
    url = make_url(POSTGRES_URL).set(database=f"prodtype_test_{uuid.uuid4().hex[:12]}")
    yield url.set(drivername="postgresql+psycopg2").render_as_string(hide_password=False)
    postgres_backend.drop(url.render_as_string(hide_password=False))


def test_airflow_init_creates_the_airflow_database_when_missing_and_only_then(airflow_url: str) -> None:
    python = airflow_bin().parent / "python"
    env = {
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_url,
        "PRODTYPE_MAINTENANCE_DB": str(make_url(POSTGRES_URL).database),
        "PATH": "/usr/bin:/bin",
    }
    name = make_url(airflow_url).database
    outputs = []
    for _ in range(2):
        proc = subprocess.run([str(python), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.strip())
    assert outputs == [f"created database {name}", f"database {name} exists"]
    with psycopg.connect(_libpq(airflow_url)) as conn:  # it exists and takes connections
        assert conn.execute("SELECT current_database()").fetchone() == (name,)


def test_airflow_init_refuses_a_url_that_is_not_postgresql() -> None:
    python = airflow_bin().parent / "python"
    env = {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "sqlite:////tmp/airflow.db", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([str(python), str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "expected postgresql+psycopg2://" in proc.stderr
