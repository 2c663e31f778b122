"""The learning loop end to end, on a real server, a real database and real model bundles.

One scenario, run on SQLite and (the steps whose queries matter) on PostgreSQL; each test states what it
needs from the steps before it and fails with "precondition not met" when an earlier step left the world
otherwise, instead of failing in a confusing way:

1. The base model (trained by ``prodtype retrain`` on the sample less the held-back products) is the
   champion, and the server (``prodtype serve``, its own process) answers with it.
2. A customer submits the held-back products over the API; a reviewer accepts or corrects each (and rejects
   junk). ``POST /retrain`` trains on base + feedback in the background; the new version is registered and
   promoted, and the server switches to it without a restart while predictions keep coming, all answered.
3. ``airflow dags test prodtype_retrain`` (real Airflow, its own venv) runs the whole DAG, training a
   candidate on shuffled labels: it is registered as a challenger, not promoted.
4. Rollback restores the previous champion, and the server follows.
5. A retrain killed while training leaves the registry and the champion as they were.
6. A bundle that fails its checks is refused (over the API, and when promoted behind the service's back)
   while the old model keeps serving.
7. Monitoring (the Airflow DAG on SQLite, the command on PostgreSQL) reports live accuracy, the class mix
   and the review backlog, equal to what the API lists.

Steps 3 to 6 are about the registry and files, the same on both databases: they run on SQLite only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from loop.airflow_support import in_ci
from prodtype.loop.evalset import stratified_eval_index
from service_support.databases import (  # noqa: F401 (fixtures)
    PASSWORD,
    Backend,
    postgres_backend,
    sqlite_backend,
)
from service_support.registries import mlflow_template  # noqa: F401 (fixture)
from service_support.waiting import until

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PRODTYPE = Path(sys.executable).parent / "prodtype"
HELD_BACK = int(os.environ.get("PRODTYPE_E2E_HELD_BACK", "300"))
# The real pipeline with fewer folds and no sentence embeddings, so that the four trainings of the scenario
# fit the suite's time (benchmarks/bench_feedback.py measures the default configuration).
TRAIN_CONFIG = {"folds": 2, "embedder": None}
# Types "new to the catalogue": most of their products arrive as feedback (see _split_data).
NEW_TYPES = (1560, 2060, 2522)
API = "/api/v1"


@dataclass
class World:
    backend: str
    env: dict[str, str]
    storage: Path
    data: Path
    held_back: pd.DataFrame  # designation, description, image_path, label
    url: str = ""
    server: subprocess.Popen[bytes] | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60)

    def auth(self, user: str) -> dict[str, str]:
        if user not in self.tokens:
            with self.client() as c:
                r = c.post(f"{API}/auth/token", data={"username": user, "password": PASSWORD})
                assert r.status_code == 200, r.text
                self.tokens[user] = r.json()["access_token"]
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def cli(self, *args: str, timeout: float = 900) -> Any:
        proc = subprocess.run(
            [str(PRODTYPE), *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert proc.returncode == 0, f"prodtype {' '.join(args)} failed:\n{proc.stderr[-4000:]}"
        return json.loads(proc.stdout)

    def get(self, path: str, user: str = "admin", **params: Any) -> Any:
        with self.client() as c:
            r = c.get(f"{API}{path}", params=params, headers=self.auth(user))
            assert r.status_code == 200, r.text
            return r.json()

    def health(self) -> dict[str, Any]:
        with self.client() as c:
            return dict(c.get(f"{API}/health").json())

    def wait_for_model(self, version: str, timeout: float = 120) -> None:
        until(
            lambda: self.health().get("model_version") == version,
            timeout,
            lambda: f"the server still serves {self.health().get('model_version')}, not {version}",
            every=0.3,
        )

    def models(self) -> dict[str, Any]:
        return dict(self.get("/models"))

    def retrain_running(self) -> bool:
        return bool(self.get("/retrain/status")["running"])

    def predict(self, client: httpx.Client, row: Any) -> httpx.Response:
        files: dict[str, Any] = {
            "designation": (None, row.designation),
            "description": (None, row.description),
        }
        if isinstance(row.image_path, str):
            files["image"] = ("photo.jpg", Path(row.image_path).read_bytes(), "image/jpeg")
        return client.post(f"{API}/predictions", files=files, headers=self.auth("carl"))


def precondition(holds: bool, what: str) -> None:
    """Fail at once, saying so, when an earlier step did not leave the world this test starts from."""
    if not holds:
        pytest.fail(f"precondition not met: {what} (an earlier step of the scenario failed; see it first)")


BOTH = pytest.mark.parametrize(
    "world", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
SQLITE = pytest.mark.parametrize("world", ["sqlite"], indirect=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _split_data(data_dir: Path, out: Path) -> pd.DataFrame:
    """Three disjoint parts of the sample: a fixed evaluation set (20 %, stratified, configured as files),
    the held-back products that customers submit later, and the base data (the rest).

    The held-back products are most of the products of a few types (types the catalogue starts selling:
    the base model barely knows them) plus a stratified draw of the others, ``HELD_BACK`` in all. So the
    reviewed feedback carries information the base data lacks and the retrained model must do measurably
    better on the evaluation set, however the noise of a 380-product evaluation falls.
    """
    out.mkdir(parents=True)
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)["prdtypecode"]
    eval_index = stratified_eval_index(y, 0.2, seed=3)
    x.loc[eval_index].to_csv(out / "X_eval.csv")
    y.loc[eval_index].to_frame().to_csv(out / "Y_eval.csv")
    pool = y.drop(index=eval_index)
    new_types = pool[pool.isin(NEW_TYPES)]
    held = list(new_types.sample(frac=0.9, random_state=5).index)
    rest = pool.drop(index=held)
    held += stratified_eval_index(rest, (HELD_BACK - len(held)) / len(rest), seed=11)
    base = pool.drop(index=held).index
    x.loc[base].to_csv(out / "X_train.csv")
    y.loc[base].to_frame().to_csv(out / "Y_train.csv")
    (out / "image_train").symlink_to(data_dir / "image_train")
    shutil.copyfile(data_dir / "image_only_train.csv", out / "image_only_train.csv")
    rows = x.loc[held, ["designation", "description", "productid", "imageid"]].copy()
    paths = [
        data_dir / "image_train" / f"image_{i}_product_{p}.jpg"
        for i, p in zip(rows.imageid, rows.productid, strict=True)
    ]
    rows["image_path"] = [str(p) if p.is_file() else None for p in paths]
    rows["label"] = y.loc[held]
    return rows.sample(frac=1.0, random_state=7)  # submitted in no particular order


@pytest.fixture(scope="module")
def world(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    data_dir: Path,
    loop_image_cache: Path,
    mlflow_template: Path,  # noqa: F811
) -> Iterator[World]:
    """The scenario's world on one database (``sqlite`` or ``postgres``, the test's parameter)."""
    name: str = request.param
    backend: Backend = request.getfixturevalue(f"{name}_backend")
    root = tmp_path_factory.mktemp(f"learning-loop-{name}")
    storage = root / "storage"
    held = _split_data(data_dir, root / "data")
    (root / "train_config.json").write_text(json.dumps(TRAIN_CONFIG))
    database_url = backend.fresh(storage)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")}
    env.update(
        PRODTYPE_STORAGE_DIR=str(storage),
        PRODTYPE_DATABASE_URL=database_url,
        PRODTYPE_DATA_DIR=str(root / "data"),
        PRODTYPE_IMAGE_CACHE_DIR=str(loop_image_cache),
        PRODTYPE_JWT_SECRET="e2e-secret-" + "x" * 40,
        PRODTYPE_CHAMPION_POLL_SECONDS="1",
        PRODTYPE_RETRAIN_MIN_NEW_REVIEWS=str(len(held)),
        PRODTYPE_TRAIN_CONFIG_FILE=str(root / "train_config.json"),
        PRODTYPE_EVAL_X_PATH=str(root / "data" / "X_eval.csv"),
        PRODTYPE_EVAL_Y_PATH=str(root / "data" / "Y_eval.csv"),
        PRODTYPE_EVAL_IMAGES_DIR=str(data_dir / "image_train"),
    )
    w = World(backend=name, env=env, storage=storage, data=root / "data", held_back=held)
    (storage / "mlflow").mkdir(parents=True)  # an empty registry store, already migrated (saves ~10 s)
    shutil.copyfile(mlflow_template, storage / "mlflow" / "mlflow.db")
    log = (root / "server.log").open("wb")
    try:
        base = w.cli("retrain", "--force", "--quiet")
        assert base["promoted"] and base["version"] == 1, base
        w.notes["base"] = base
        w.url = f"http://127.0.0.1:{_free_port()}"
        port = w.url.rsplit(":", 1)[1]
        w.server = subprocess.Popen(
            [str(PRODTYPE), "serve", "--port", port], env=env, stdout=log, stderr=subprocess.STDOUT
        )

        def serving_v1() -> bool:
            assert w.server is not None and w.server.poll() is None, (root / "server.log").read_text()[-4000:]
            try:
                return w.health().get("model_version") == "prodtype/v1"
            except httpx.TransportError:
                return False

        until(serving_v1, 180, lambda: "the server did not come up with the champion", every=0.5)
        yield w
    finally:
        if w.server is not None:
            w.server.send_signal(signal.SIGINT)
            try:
                w.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                w.server.kill()
                w.server.wait()
        log.close()
        results = {"base": w.notes.get("base"), "feedback": w.notes.get("feedback")}
        (root / "results.json").write_text(json.dumps(results, indent=2, default=str))
        backend.drop(database_url)


@BOTH
def test_base_model_is_the_champion_and_is_served(world: World) -> None:
    health = world.health()
    assert health["model_version"] == "prodtype/v1" and health["model_loaded"]
    models = world.models()
    assert models["champion"] == 1 and models["serving_version"] == 1
    assert models["data"][0]["status"] == "champion" and "first model" in models["data"][0]["reason"]
    with world.client() as c:
        assert c.get(f"{API}/models", headers=world.auth("carl")).status_code == 403
        assert c.post(f"{API}/retrain", headers=world.auth("rita")).status_code == 403


@BOTH
def test_reviews_retrain_and_the_new_champion_is_served_without_restart(world: World) -> None:
    status = world.get("/retrain/status")
    precondition(
        world.models()["champion"] == 1 and world.health()["model_version"] == "prodtype/v1",
        "the base model v1 is the champion and is served",
    )
    precondition(status["new_reviewed_products"] == 0 and not status["running"], "nothing reviewed yet")
    pid = world.server.pid  # type: ignore[union-attr]
    with world.client() as c:
        right: list[bool] = []
        for row in world.held_back.itertuples():
            r = world.predict(c, row)
            assert r.status_code == 201, r.text
            body = r.json()
            assert body["model_version"] == "prodtype/v1"
            right.append(body["prdtypecode"] == row.label)
            decision: dict[str, Any] = {"decision": "accept"}
            if not right[-1]:
                decision["prdtypecode"] = int(row.label)
            rv = c.post(f"{API}/predictions/{body['id']}/review", json=decision, headers=world.auth("rita"))
            assert rv.status_code == 200, rv.text
        for junk in ("zzzz", "test test"):  # rejected: kept for the audit, never trained on
            r = c.post(f"{API}/predictions", files={"designation": (None, junk)}, headers=world.auth("carl"))
            assert r.status_code == 201, r.text
            rv = c.post(
                f"{API}/predictions/{r.json()['id']}/review",
                json={"decision": "reject"},
                headers=world.auth("rita"),
            )
            assert rv.status_code == 200, rv.text

        status = world.get("/retrain/status")
        n = len(world.held_back)
        assert status["new_reviewed_products"] == n and status["should_retrain"], status
        window = right[-status["live_accuracy_window"] :]
        assert status["live_accuracy"] == pytest.approx(sum(window) / len(window), abs=1e-3)
        assert status["rejected_total"] == 2 and not status["running"]

        started = c.post(f"{API}/retrain", json={"force": False}, headers=world.auth("admin"))
        assert started.status_code == 202, started.text
        job = started.json()
        again = c.post(f"{API}/retrain", headers=world.auth("admin"))
        assert again.status_code == 409 and "already running" in again.json()["detail"]

    # Predictions keep coming while the job trains and the service switches models.
    outcomes: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    rows = list(world.held_back.itertuples())

    def customer(offset: int) -> None:
        try:
            with world.client() as client:
                i = offset
                while not stop.is_set():
                    r = world.predict(client, rows[i % len(rows)])
                    json_body = r.headers.get("content-type", "").startswith("application/json")
                    outcomes.append(
                        (r.status_code, r.json().get("model_version", "") if json_body else r.text)
                    )
                    i += 2
                    stop.wait(0.5)
        except BaseException as exc:  # an exception in a thread is only a warning to pytest: keep it
            errors.append(exc)

    def answered_by(version: str) -> int:
        return sum(1 for _, v in outcomes if v == version)

    threads = [threading.Thread(target=customer, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    try:
        record: dict[str, Any] = {}

        def job_done() -> bool:
            record.update(world.get(f"/retrain/{job['id']}"))
            return record["status"] != "running" or bool(errors)

        until(job_done, 1200, lambda: f"the retrain is still running: {record}", every=2)
        assert record["status"] == "succeeded", record
        result = record["result"]
        world.notes["feedback"] = result
        assert result["version"] == 2 and result["feedback_rows"] >= 0.9 * len(world.held_back)
        assert result["promoted"], result["reason"]
        world.wait_for_model("prodtype/v2")
        # A few predictions on the new model, while the customers keep going.
        until(
            lambda: answered_by("prodtype/v2") >= 3 or errors,
            120,
            lambda: f"no predictions by v2 yet: {outcomes[-5:]}",
            every=0.3,
        )
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=90)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)

    assert world.server.poll() is None and world.server.pid == pid  # type: ignore[union-attr]
    assert outcomes and all(code == 201 for code, _ in outcomes), [o for o in outcomes if o[0] != 201][:5]
    versions = [v for _, v in outcomes]
    assert set(versions) == {"prodtype/v1", "prodtype/v2"}
    assert versions[0] == "prodtype/v1" and versions[-1] == "prodtype/v2"
    assert answered_by("prodtype/v1") >= 2  # the customers were served while the job trained
    models = world.models()
    assert models["champion"] == 2 and models["serving_version"] == 2
    v2 = models["data"][0]
    assert v2["metrics"]["eval_weighted_f1"] > v2["metrics"]["champion_eval_weighted_f1"]
    base_f1, new_f1 = v2["metrics"]["champion_eval_weighted_f1"], v2["metrics"]["eval_weighted_f1"]
    print(
        f"\nevaluation-set weighted F1 ({world.backend}): base {base_f1:.4f}, "
        f"with {len(world.held_back)} reviewed {new_f1:.4f}"
    )


@pytest.fixture(scope="module")
def airflow_home(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """A migrated Airflow home for the DAG runs, or None without the Airflow virtualenv (a failure in CI)."""
    from loop.airflow_support import AIRFLOW_VENV, migrate

    if not (AIRFLOW_VENV / "bin" / "airflow").is_file():
        if in_ci():
            pytest.fail(f"no Airflow virtualenv at {AIRFLOW_VENV} (CI=true): run `make airflow-venv`")
        return None
    home = tmp_path_factory.mktemp("airflow-home")
    migrate(home)
    return home


def _airflow_env(world: World, home: Path) -> dict[str, str]:
    from loop.airflow_support import airflow_env

    prodtype_env = {k: v for k, v in world.env.items() if k.startswith("PRODTYPE_")}
    return airflow_env(home, {**prodtype_env, "PRODTYPE_CLI": str(PRODTYPE)})


@SQLITE
def test_a_candidate_trained_on_shuffled_labels_is_not_promoted(
    world: World, airflow_home: Path | None
) -> None:
    """Through the real Airflow DAG (end to end); through the CLI steps when Airflow is not installed."""
    from loop.airflow_support import run_airflow

    before = world.models()
    precondition(before["champion"] is not None and before["count"] >= 1, "a champion is registered")
    precondition(not world.retrain_running(), "no retrain is running")
    if airflow_home is not None:
        conf = json.dumps({"force": True, "shuffle_labels": True})
        proc = run_airflow(
            ["dags", "test", "prodtype_retrain", "-c", conf],
            _airflow_env(world, airflow_home),
            1500,
            airflow_home / "retrain-dag.log",
        )
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "state=success" in out, out[-5000:]
        via = "airflow"
    else:
        run = "shuffled-cli"
        for step in ("export", "train", "evaluate", "register", "promote"):
            args = ["retrain", "--step", step, "--run-name", run, "--quiet"]
            world.cli(*args, *(["--shuffle-labels"] if step == "train" else []))
        via = "cli"
    models = world.models()
    new = models["data"][0]
    assert new["version"] == before["count"] + 1 and new["status"] == "challenger", new
    assert new["reason"].startswith("not promoted") and "challenger" in new["aliases"]
    assert models["champion"] == before["champion"]
    assert world.health()["model_version"] == f"prodtype/v{before['champion']}"
    if via == "cli":
        pytest.skip(
            "shuffled candidate checked through the CLI steps; no Airflow venv: run `make airflow-venv`"
        )


@SQLITE
def test_rollback_restores_the_previous_champion(world: World) -> None:
    models = world.models()
    promoted = [h["version"] for h in models["history"] if h["action"] == "promote"]
    precondition(
        len(promoted) >= 2 and promoted[-1] == models["champion"] == models["serving_version"],
        f"two promotions in the history, the latest served (history: {models['history']})",
    )
    current, previous = promoted[-1], promoted[-2]
    with world.client() as c:
        r = c.post(f"{API}/models/rollback", json={"reason": "e2e"}, headers=world.auth("admin"))
        assert r.status_code == 200, r.text
        assert r.json()["champion"]["version"] == previous
        world.wait_for_model(f"prodtype/v{previous}")
        row = next(world.held_back.itertuples())
        assert world.predict(c, row).json()["model_version"] == f"prodtype/v{previous}"
    models = world.models()
    assert models["champion"] == previous and models["history"][-1]["action"] == "rollback"
    assert {v["version"]: v["status"] for v in models["data"]}[current] == "rolled_back"


@SQLITE
def test_a_killed_retrain_leaves_registry_and_champion_unchanged(world: World) -> None:
    precondition(not world.retrain_running(), "no retrain is running")
    models = world.models()
    precondition(models["champion"] == models["serving_version"], "the champion is served")
    before = [(v["version"], v["aliases"]) for v in models["data"]]
    served = world.health()["model_version"]
    runs = world.storage / "loop" / "runs"
    known_runs = set(runs.iterdir()) if runs.is_dir() else set()
    proc = subprocess.Popen(
        [str(PRODTYPE), "retrain", "--force"],
        env=world.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the step logs this line as the training begins
            if "training a candidate" in line:
                break
        assert proc.poll() is None, "the retrain ended before it could be killed"
        new_runs = set(runs.iterdir()) - known_runs
        assert len(new_runs) == 1, new_runs
        (run_dir,) = new_runs
        assert not (run_dir / "candidate").exists()  # killed inside the training, before its bundle exists
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    after = [(v["version"], v["aliases"]) for v in world.models()["data"]]
    assert after == before
    assert world.health()["model_version"] == served
    assert not world.retrain_running()  # the lock was freed with the process


@SQLITE
def test_a_bundle_that_fails_its_checks_is_refused_and_the_old_model_keeps_serving(world: World) -> None:
    from prodtype.config import LoopSettings, Settings
    from prodtype.loop.registry import CHAMPION, Registry

    models = world.models()
    champion = models["champion"]
    others = [v["version"] for v in models["data"] if v["version"] != champion]
    precondition(
        champion is not None and champion == models["serving_version"] and bool(others),
        "a served champion and another registered version",
    )
    victim_version = max(others)
    registry = Registry.from_settings(
        Settings(
            _env_file=None,  # type: ignore[call-arg]
            storage_dir=world.storage,
            loop=LoopSettings(_env_file=None),  # type: ignore[call-arg]
        )
    )
    bundle = registry.local_bundle(victim_version)
    victim = next(p for p in sorted(bundle.iterdir()) if p.suffix == ".npz")
    victim.write_bytes(victim.read_bytes() + b"tampered")
    with world.client() as c:
        r = c.post(f"{API}/models/{victim_version}/promote", headers=world.auth("admin"))
        assert r.status_code == 422 and "refused" in r.json()["detail"], r.text
        assert "checksum" in r.json()["detail"]
    assert registry.alias_version(CHAMPION) == champion

    # Promoted behind the service's back (another tool, no checks): the service refuses to load it.
    registry.promote(victim_version, reason="e2e: a corrupt bundle", actor="test")
    until(
        lambda: str(victim_version) in world.models()["follower"]["refused"],
        60,
        lambda: f"the follower did not refuse it: {world.models()['follower']}",
        every=0.5,
    )
    assert world.health()["model_version"] == f"prodtype/v{champion}"
    with world.client() as c:
        row = next(world.held_back.itertuples())
        assert world.predict(c, row).json()["model_version"] == f"prodtype/v{champion}"
    assert registry.rollback(reason="e2e: undo").version == champion


def _expected_live_accuracy(world: World, window: int) -> tuple[float, int]:
    """The share accepted unchanged among the latest ``window`` accepted reviews, from the API's list."""
    reviewed: list[dict[str, Any]] = []
    offset = 0
    while True:
        page = world.get("/predictions", status="accepted", sort="-id", offset=offset, limit=100)
        reviewed += page["data"]
        offset += 100
        if offset >= page["count"]:
            break
    latest = sorted(
        reviewed, key=lambda p: (datetime.fromisoformat(p["reviewed_at"]), p["id"]), reverse=True
    )[:window]
    unchanged = sum(p["final_code"] == p["prdtypecode"] for p in latest)
    return unchanged / len(latest), len(latest)


@BOTH
def test_monitoring_reports_live_accuracy_class_mix_and_backlog(
    world: World, request: pytest.FixtureRequest
) -> None:
    from loop.airflow_support import run_airflow

    with world.client() as c:  # the backlog this test reads: at least one pending prediction of its own
        r = c.post(
            f"{API}/predictions", files={"designation": (None, "Lampe de chevet")}, headers=world.auth("carl")
        )
        assert r.status_code == 201, r.text
    pending = world.get("/predictions", status="pending", limit=1)["count"]
    total = world.get("/predictions", limit=1)["count"]
    precondition(world.get("/predictions", status="accepted", limit=1)["count"] > 0, "reviewed predictions")
    window = world.get("/retrain/status")["live_accuracy_window"]
    accuracy, reviews = _expected_live_accuracy(world, window)

    out = world.storage / "loop" / "monitoring"
    airflow_home = request.getfixturevalue("airflow_home") if world.backend == "sqlite" else None
    if airflow_home is not None:  # through the real DAG on SQLite; the command it runs on PostgreSQL
        env = _airflow_env(world, airflow_home)
        proc = run_airflow(
            ["dags", "test", "prodtype_monitoring"], env, 600, airflow_home / "monitoring-dag.log"
        )
        assert proc.returncode == 0 and "state=success" in proc.stdout + proc.stderr, proc.stdout[-4000:]
        report = json.loads(sorted(out.glob("monitoring-*.json"))[-1].read_text())
    else:
        report = world.cli("monitor", "--days", "1")
    assert report["awaiting_review"] == pending
    assert report["predictions"] == total  # all made today
    assert sum(report["predicted_counts"].values()) == total
    assert (report["live_accuracy"], report["live_accuracy_reviews"]) == (
        pytest.approx(accuracy, abs=1e-4),
        reviews,
    )
    assert report["class_shift_psi"] is not None
    assert list(out.glob("class-mix-*.png"))
