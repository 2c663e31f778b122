"""The retraining DAG on Airflow's CeleryExecutor: real Redis broker, real Celery worker, real cluster pieces.

Marker ``airflow_celery`` (``pytest -m airflow_celery``). Each Airflow component runs as its own process, as
on several machines: the API server (the workers' Execution API), the scheduler, the DAG processor and
``airflow celery worker``. The broker is the Redis that runs here (a private database number, flushed before
and after, and a queue of the test's own); ``PRODTYPE_TEST_CELERY_BROKER=amqp://…`` runs the test on
RabbitMQ instead. Airflow's metadata database and Celery's result backend are a fresh PostgreSQL database.
The DAG file is the one in dags/, unchanged; prodtype's settings reach the tasks through the worker's
environment only.

Photos live in an S3-compatible object store (moto in server mode, ``PRODTYPE_IMAGE_STORE=s3://…``), as on
several machines. A few reviewed predictions with photos are recorded first; then ``prodtype_retrain`` is
triggered with ``{"force": true}`` on a tiny data set (300 products, 2 folds, no text embedder): every task
must succeed, each through Celery (its result is in the result backend), the export step must have fetched
every reviewed photo from the object store, and a new model version must be registered and promoted.
Every process started is stopped afterwards, its children too, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import psycopg
import pytest
import redis
from sqlalchemy.engine import make_url

from loop.airflow_support import airflow_bin, airflow_env, in_ci, run_airflow
from loop.records import review, submit
from loop.tiny import TYPES
from prodtype.config import Settings
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.serving.storage import open_image_store
from service_support.databases import PostgresBackend, postgres_backend  # noqa: F401 (fixture)
from service_support.object_store import s3_endpoint, s3_env, s3_settings, s3_url  # noqa: F401 (fixtures)
from service_support.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.airflow_celery]

PRODTYPE = Path(sys.executable).parent / "prodtype"
REDIS_URL = os.environ.get("PRODTYPE_TEST_REDIS_URL", "redis://127.0.0.1:6379")
# A Redis database of this test's own (flushed before and after), so that no other user's keys are touched.
REDIS_DB = int(os.environ.get("PRODTYPE_TEST_CELERY_REDIS_DB", "13"))
# An amqp:// URL (e.g. amqp://guest:guest@127.0.0.1:5672//) runs the test on RabbitMQ instead of Redis.
AMQP_URL = os.environ.get("PRODTYPE_TEST_CELERY_BROKER", "")
DAG_ID = "prodtype_retrain"
TASKS = ["check_trigger", "export_feedback", "train", "evaluate", "register", "promote"]
RUN_TIMEOUT = 240  # seconds, from the trigger to the end of the run
TRAIN_CONFIG = {"folds": 2, "embedder": None}
FEEDBACK = 6  # reviewed predictions with a photo, recorded before the run


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (psutil is not a dependency)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _kill(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


class Cluster:
    """The Airflow processes of one test; ``stop`` ends them and everything they started."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home, self.env = home, env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *args: str) -> None:
        log = (self.home / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(
            [str(airflow_bin()), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            assert proc.poll() is None, f"airflow {name} exited ({proc.returncode}):\n{self.log(name)}"

    def log(self, name: str, tail: int = 4000) -> str:
        path = self.home / f"{name}.log"
        return path.read_text(errors="replace")[-tail:] if path.is_file() else ""

    def stop(self) -> None:
        # Children first noted (a task's `prodtype` runs in a session of its own, out of the worker's group).
        family = {name: _descendants(p.pid) for name, p in self.procs.items()}
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        for name, proc in self.procs.items():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _kill(family[name] + _descendants(proc.pid), signal.SIGKILL)


def _unreachable(message: str) -> None:
    if in_ci():
        pytest.fail(message)
    pytest.skip(message)


def _redis() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL, db=REDIS_DB, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        _unreachable(f"Redis at {REDIS_URL} is unreachable ({exc}): the Celery broker of this test")
    return client


DELETE_QUEUE = """
import sys
from kombu import Connection
with Connection(sys.argv[1]) as conn:
    conn.default_channel.queue_delete(sys.argv[2])
"""


@dataclass(frozen=True)
class Broker:
    url: str
    queue: str  # the test's own: no other worker takes its tasks, and it takes no one else's


@pytest.fixture
def broker() -> Iterator[Broker]:
    queue = f"prodtype-test-{secrets.token_hex(4)}"
    if AMQP_URL:
        url = urlsplit(AMQP_URL)
        try:
            socket.create_connection((url.hostname or "127.0.0.1", url.port or 5672), timeout=3).close()
        except OSError as exc:
            _unreachable(f"RabbitMQ at {url.hostname}:{url.port} is unreachable ({exc})")
        yield Broker(AMQP_URL, queue)
        python = str(airflow_bin().parent / "python")
        subprocess.run([python, "-c", DELETE_QUEUE, AMQP_URL, queue], timeout=60, check=False)
        return
    client = _redis()
    client.flushdb()
    yield Broker(f"{REDIS_URL}/{REDIS_DB}", queue)
    client.flushdb()
    client.close()


@pytest.fixture
def airflow_database(postgres_backend: PostgresBackend, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """An empty PostgreSQL database: Airflow's metadata and Celery's results; dropped afterwards."""
    url = postgres_backend.blank(tmp_path / "airflow-db")
    yield url
    postgres_backend.drop(url)


@pytest.fixture
def prodtype_database(postgres_backend: PostgresBackend, tmp_path: Path) -> Iterator[str]:  # noqa: F811
    """prodtype's own database (migrated, seeded), shared by every task of the run; dropped afterwards."""
    url = postgres_backend.fresh(tmp_path / "storage")
    yield url
    postgres_backend.drop(url)


def _rows(url: str, query: str, *params: object) -> list[tuple[object, ...]]:
    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as conn:
        return list(conn.execute(query, params).fetchall())


def _task_logs(home: Path, states: dict[object, object]) -> str:
    """The end of the log of every task that did not succeed (written by the worker under AIRFLOW_HOME)."""
    out = []
    for task, state in states.items():
        if state != "success":
            for path in sorted((home / "logs").glob(f"dag_id={DAG_ID}/*/task_id={task}/*.log")):
                out.append(f"--- {task} ({state}): {path.name}\n{path.read_text(errors='replace')[-3000:]}")
    return "\n".join(out)


def _record_reviewed_photos(settings: Settings, data_dir: Path, tiny_data_dir: Path) -> None:
    """``FEEDBACK`` products of the tiny data's types, not in it, predicted and accepted with their photos
    (stored through the configured store: the object store)."""
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)["prdtypecode"]
    taken = set(pd.read_csv(tiny_data_dir / "X_train.csv", index_col=0).index)
    store = open_image_store(settings)
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_sessionmaker(engine)() as session:
            count = 0
            for index, row in x[y.isin(TYPES) & ~x.index.isin(taken)].iterrows():
                photo = data_dir / "image_train" / f"image_{row.imageid}_product_{row.productid}.jpg"
                if not photo.is_file():
                    continue
                made = submit(session, row.designation, int(y[index]), image=photo.read_bytes(), store=store)
                review(session, made, "accept")
                count += 1
                if count == FEEDBACK:
                    break
    finally:
        engine.dispose()
    assert count == FEEDBACK


def test_the_retrain_dag_runs_on_celery_workers(
    tmp_path: Path,
    broker: Broker,
    airflow_database: str,
    prodtype_database: str,
    data_dir: Path,
    tiny_data_dir: Path,
    feature_cache_dir: Path,
    mlflow_template: Path,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    airflow_bin()  # skip (or fail under CI) without the Airflow virtualenv
    started = time.monotonic()
    storage = tmp_path / "storage"
    (storage / "mlflow").mkdir(parents=True, exist_ok=True)
    (storage / "mlflow" / "mlflow.db").write_bytes(mlflow_template.read_bytes())
    (tmp_path / "train_config.json").write_text(json.dumps(TRAIN_CONFIG))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        storage_dir=storage,
        database_url=prodtype_database,
        **s3_settings(s3_endpoint, s3_url),
    )
    _record_reviewed_photos(settings, data_dir, tiny_data_dir)
    home = tmp_path / "airflow-home"
    home.mkdir()
    api_port = _free_port()
    queue = broker.queue
    airflow_db = make_url(airflow_database).set(drivername="postgresql+psycopg2")
    db_url = airflow_db.render_as_string(hide_password=False)
    env = airflow_env(
        home,
        {
            # prodtype, as the worker machines would have it (the tasks call PRODTYPE_CLI).
            "PRODTYPE_CLI": str(PRODTYPE),
            "PRODTYPE_STORAGE_DIR": str(storage),
            "PRODTYPE_DATABASE_URL": prodtype_database,
            "PRODTYPE_DATA_DIR": str(tiny_data_dir),
            "PRODTYPE_IMAGE_CACHE_DIR": str(feature_cache_dir / "image"),
            "PRODTYPE_TRAIN_CONFIG_FILE": str(tmp_path / "train_config.json"),
            "PRODTYPE_JWT_SECRET": "celery-test-" + "x" * 40,
            **s3_env(s3_endpoint, s3_url),
            # Airflow on the CeleryExecutor, every component pointed at the same database, broker and API.
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": db_url,
            "AIRFLOW__CELERY__BROKER_URL": broker.url,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "1",
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": queue,
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            # Only the run this test triggers: no scheduled run of either DAG.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        },
    )
    proc = run_airflow(["db", "migrate"], env, 300, home / "migrate.log")
    assert proc.returncode == 0, proc.stderr[-3000:]
    cluster = Cluster(home, env)
    try:
        cluster.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(api_port), "-w", "1")
        cluster.start("scheduler", "scheduler")
        cluster.start("dag-processor", "dag-processor")
        cluster.start(
            "worker", "celery", "worker", "--queues", queue, "--concurrency", "1", "--skip-serve-logs"
        )

        def parsed() -> bool:
            cluster.check_alive()
            return bool(_rows(db_url, "SELECT 1 FROM serialized_dag WHERE dag_id = %s", DAG_ID))

        until(parsed, 120, lambda: f"{DAG_ID} not parsed:\n{cluster.log('dag-processor')}", every=0.5)
        run_id = "celery_force"
        proc = run_airflow(
            ["dags", "trigger", DAG_ID, "--run-id", run_id, "--conf", json.dumps({"force": True})],
            env,
            120,
            home / "trigger.log",
        )
        assert proc.returncode == 0, proc.stderr[-3000:]

        def finished() -> bool:
            cluster.check_alive()
            state = _rows(
                db_url, "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id
            )
            return bool(state) and state[0][0] in ("success", "failed")

        until(
            finished,
            RUN_TIMEOUT,
            lambda: f"the run did not finish:\n{cluster.log('worker')}\n{cluster.log('scheduler')}",
            every=0.5,
        )
        states = dict(
            _rows(
                db_url,
                "SELECT task_id, state FROM task_instance WHERE run_id = %s AND dag_id = %s",
                run_id,
                DAG_ID,
            )
        )
        assert states == dict.fromkeys(TASKS, "success"), f"{states}\n{_task_logs(home, states)}"
        (run_state,) = _rows(db_url, "SELECT state FROM dag_run WHERE run_id = %s", run_id)
        assert run_state == ("success",)
        # Each task went through Celery: queued on the test's queue, its result stored by the worker.
        queues = {q for (q,) in _rows(db_url, "SELECT queue FROM task_instance WHERE run_id = %s", run_id)}
        assert queues == {queue}

        # (the worker stores a Celery result once the task's process has exited, after Airflow has its state)
        def results() -> list[object]:
            return [s for (s,) in _rows(db_url, "SELECT status FROM celery_taskmeta")]

        until(
            lambda: results() == ["SUCCESS"] * len(TASKS),
            60,
            lambda: f"Celery results: {results()}\n{cluster.log('worker')}",
            every=0.5,
        )
    finally:
        cluster.stop()
        left = [name for name, p in cluster.procs.items() if p.poll() is None]
        assert not left, f"still running: {left}"
    # The export step (on the worker) fetched every reviewed photo from the object store, none on local disk.
    (feedback,) = (storage / "loop" / "runs").glob("*/feedback")
    assert len(pd.read_csv(feedback / "X_feedback.csv", index_col=0)) == FEEDBACK
    assert len(list((feedback / "image_train").iterdir())) == FEEDBACK
    assert not settings.images_dir.exists() or not any(settings.images_dir.rglob("*.*"))
    # The DAG registered and promoted a new version (the first one: the registry was empty).
    models = subprocess.run(
        [str(PRODTYPE), "models", "list", "--json"],
        env={**os.environ, **{k: v for k, v in env.items() if k.startswith("PRODTYPE_")}},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert models.returncode == 0, models.stderr[-3000:]
    listing = json.loads(models.stdout)
    assert listing["count"] == 1 and listing["champion"] == 1, listing
    print(f"\nCelery DAG test: {time.monotonic() - started:.0f} s, broker {broker.url.split('://')[0]}")
