"""Two replicas of the service on one PostgreSQL database, one object store and one MLflow registry.

Two real ``prodtype serve`` processes on their own ports with their own storage folders share only what a
deployment behind a load balancer shares: the database, the image store (S3: moto in server mode), the
registry and the JWT secret. A prediction made on one is read, with its photo, and reviewed on the other; a
retrain started on one blocks a retrain on the other (409) and both follow the job; a job killed on one is
seen failed on the other; after a promotion both serve the new champion.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loop.tiny import PAIRS, load_tiny, train_tiny, write_tiny_folder
from prodtype.data.challenge import Dataset
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.loop import model_versions
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.registry import Registry
from service_support.databases import PASSWORD, PostgresBackend, postgres_backend  # noqa: F401 (fixture)
from service_support.images import photo
from service_support.object_store import keys, s3_endpoint, s3_env, s3_url  # noqa: F401 (fixtures)
from service_support.registries import mlflow_template  # noqa: F401 (fixture)
from service_support.server import Server, running_server
from service_support.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
API = "/api/v1"
SECRET = "two-replicas-secret-" + "x" * 40


@pytest.fixture(scope="module")
def bundles(
    data_dir: Path, feature_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Two real tiny bundles on disjoint types (seconds each: 2 folds, no embedder, cached photo features)."""
    root = tmp_path_factory.mktemp("two-replica-bundles")
    data = load_tiny(write_tiny_folder(data_dir, root / "data"))
    out = {}
    for name in ("a", "b"):
        keep = data.products.index[data.products["label"].isin(PAIRS[name])]
        subset = Dataset(data.products.loc[keep], fingerprint=f"tiny-{name}", sources=data.sources)
        out[name] = train_tiny(subset, root / name, feature_cache_dir / "image")
    return out


class Replica:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.client = httpx.Client(base_url=server.url, timeout=60)

    def token(self, user: str) -> dict[str, str]:
        r = self.client.post(f"{API}/auth/token", data={"username": user, "password": PASSWORD})
        assert r.status_code == 200, r.text
        return {"Authorization": f"Bearer {r.json()['access_token']}"}

    def serving(self) -> str | None:
        return self.client.get(f"{API}/health").json().get("model_version")  # type: ignore[no-any-return]


@pytest.fixture
def replicas(
    postgres_backend: PostgresBackend,  # noqa: F811
    mlflow_template: Path,  # noqa: F811
    bundles: dict[str, Path],
    data_dir: Path,
    feature_cache_dir: Path,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
    tmp_path: Path,
) -> Iterator[tuple[Replica, Replica, Registry]]:
    url = postgres_backend.fresh(tmp_path / "db")
    shared = tmp_path / "shared"  # what a registry server would hold: the store and the artifacts
    shared.mkdir()
    shutil.copyfile(mlflow_template, shared / "mlflow.db")
    tracking = f"sqlite:///{shared / 'mlflow.db'}"
    registry = Registry(tracking, artifact_root=shared / "artifacts", cache_dir=tmp_path / "downloads")
    v1 = registry.log_and_register(bundles["a"], run_name="a", params={}, metrics={}, tags={}).version
    engine = make_engine(url)
    model_versions.promote(
        registry, v1, actor="test", ledger=PromotionLedger(make_sessionmaker(engine)), reason="first"
    )
    engine.dispose()
    common = {
        "PRODTYPE_DATABASE_URL": url,
        "PRODTYPE_JWT_SECRET": SECRET,
        "PRODTYPE_MLFLOW_TRACKING_URI": tracking,
        "PRODTYPE_CHAMPION_POLL_SECONDS": "0.5",
        "PRODTYPE_DATA_DIR": str(data_dir),  # the sample: a retrain trains for minutes (it is killed)
        "PRODTYPE_IMAGE_CACHE_DIR": str(feature_cache_dir / "image"),
        **s3_env(s3_endpoint, s3_url),
    }
    try:
        with (
            running_server("serve", {**common, "PRODTYPE_STORAGE_DIR": str(tmp_path / "a")}) as a,
            running_server("serve", {**common, "PRODTYPE_STORAGE_DIR": str(tmp_path / "b")}) as b,
        ):
            yield Replica(a), Replica(b), registry
    finally:
        postgres_backend.drop(url)


def _kill_job(job: dict[str, Any]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job["pid"], signal.SIGKILL)  # the child runs in its own session


def test_two_replicas_share_the_retrain_lock_the_jobs_the_reviews_and_the_champion(
    replicas: tuple[Replica, Replica, Registry],
    bundles: dict[str, Path],
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    a, b, registry = replicas
    until(lambda: a.serving() == b.serving() == "prodtype/v1", timeout=120, every=0.3)
    admin = a.token("admin")  # issued by one replica, accepted by the other (the same secret)

    # A prediction made on one replica is read, with its photo, and reviewed on the other.
    image = photo(3)
    made = a.client.post(
        f"{API}/predictions",
        files={
            "designation": (None, "Figurine Star Wars Yoda"),
            "description": (None, ""),
            "image": ("yoda.jpg", image, "image/jpeg"),
        },
        headers=a.token("carl"),
    )
    assert made.status_code == 201, made.text
    pid = made.json()["id"]
    assert len(keys(s3_endpoint, s3_url)) == 1  # in the shared store, not on replica a's disk
    assert not (tmp_path / "a" / "images").exists()
    rita = b.token("rita")
    assert b.client.get(f"{API}/predictions/{pid}", headers=rita).json()["designation"].startswith("Figurine")
    served = b.client.get(f"{API}/predictions/{pid}/image", headers=rita)
    assert served.status_code == 200 and served.content == image
    reviewed = b.client.post(f"{API}/predictions/{pid}/review", json={"decision": "accept"}, headers=rita)
    assert reviewed.status_code == 200, reviewed.text
    assert a.client.get(f"{API}/predictions/{pid}", headers=rita).json()["status"] == "accepted"

    # A retrain started on one blocks a retrain on the other; both see the job.
    started = a.client.post(f"{API}/retrain", json={"force": True}, headers=admin)
    assert started.status_code == 202, started.text
    job = started.json()
    try:
        refused = b.client.post(f"{API}/retrain", json={"force": True}, headers=admin)
        assert refused.status_code == 409 and "already running" in refused.json()["detail"], refused.text
        assert b.client.get(f"{API}/retrain/status", headers=admin).json()["running"] is True
        seen = b.client.get(f"{API}/retrain/{job['id']}", headers=admin).json()
        assert (seen["status"], seen["requested_by"], seen["pid"]) == ("running", "admin", job["pid"])
    finally:
        _kill_job(job)
    # Killed on replica a's machine: replica b sees it failed (the lock went with the process) and free.
    until(
        lambda: b.client.get(f"{API}/retrain/{job['id']}", headers=admin).json()["status"] == "failed",
        timeout=60,
    )
    assert b.client.get(f"{API}/retrain/status", headers=admin).json()["running"] is False

    # A promotion through one replica: both switch to the new champion.
    v2 = registry.log_and_register(bundles["b"], run_name="b", params={}, metrics={}, tags={}).version
    promoted = b.client.post(f"{API}/models/{v2}/promote", json={"reason": "test"}, headers=admin)
    assert promoted.status_code == 200, promoted.text
    until(
        lambda: a.serving() == b.serving() == f"prodtype/v{v2}",
        timeout=120,
        message=lambda: f"a serves {a.serving()}, b serves {b.serving()}",
        every=0.3,
    )
