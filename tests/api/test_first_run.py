"""``prodtype run`` with no model anywhere: it trains one on the challenge files in PRODTYPE_DATA_DIR (less
the evaluation set), registers it as version 1, makes it the champion (recorded in the promotion ledger)
and serves it; the next start serves the champion instead of training again.

On a small slice of the sample (a few types, a few hundred products), so that the real default training
takes seconds; the image features come from the session's cache.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from prodtype.config import Settings
from prodtype.db import migrate
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.loop.first_model import ensure_champion
from prodtype.loop.ledger import PromotionLedger, manifest_digest
from prodtype.loop.registry import CHAMPION, Registry
from prodtype.loop.retrain import LoopContext
from prodtype.serving.errors import ConflictError
from prodtype.serving.model_holder import find_model
from service_support.server import running_server

pytestmark = pytest.mark.slow

API = "/api/v1"
TYPES = (10, 1280, 2583, 2705)


def small_challenge_folder(data_dir: Path, out: Path) -> int:
    """The sample's products of a few types, in the challenge layout; returns how many."""
    out.mkdir(parents=True)
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)
    keep = y.index[y["prdtypecode"].isin(TYPES)]
    x.loc[keep].to_csv(out / "X_train.csv")
    y.loc[keep].to_csv(out / "Y_train.csv")
    (out / "image_train").symlink_to(data_dir / "image_train")
    return len(keep)


def never_train(*_args: object) -> Path:
    raise AssertionError("a model was trained")


@contextmanager
def loop_context(settings: Settings) -> Iterator[LoopContext]:
    """The loop's context on ``settings``' storage, whose trainer must not be called."""
    engine = make_engine(settings.resolved_database_url)
    migrate.upgrade(engine)
    try:
        yield LoopContext(
            settings,
            Registry.from_settings(settings),
            trainer=never_train,
            _sessions=make_sessionmaker(engine),
        )
    finally:
        engine.dispose()


def test_run_trains_a_first_model_registers_it_as_the_champion_and_serves_it(
    tmp_path: Path, data_dir: Path, feature_cache_dir: Path
) -> None:
    n = small_challenge_folder(data_dir, tmp_path / "data")
    storage = tmp_path / "storage"
    env = {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_DATA_DIR": str(tmp_path / "data"),
        "PRODTYPE_IMAGE_CACHE_DIR": str(feature_cache_dir / "image"),
        "PRODTYPE_ADMIN_PASSWORD": "first run admin password",
    }
    settings = Settings(_env_file=None, storage_dir=storage, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    # Any answer of the health check: the server listens only once the training is over, and whether it
    # then serves the new model is what this test checks.
    with running_server("run", env, startup_timeout=900, up=lambda r: True) as server:
        n_eval = round(n * settings.loop.eval_fraction)
        assert f"No model registered: training the first one on {n - n_eval} products" in server.output
        assert f"({n_eval} kept aside to evaluate it)" in server.output
        assert "as prodtype version 1, the champion" in server.output
        assert not (storage / "models").exists()  # nothing outside the registry
        registry = Registry.from_settings(settings)
        info = registry.get(1)
        assert info.aliases == [CHAMPION] and [v.version for v in registry.versions()] == [1]
        manifest = json.loads((registry.local_bundle(1) / "manifest.json").read_text())
        assert sorted(manifest["classes"]) == sorted(TYPES)
        assert info.metrics["eval_weighted_f1"] > 0.5 and info.tags["bundle_version"] == manifest["version"]
        with httpx.Client(base_url=server.url, timeout=60) as client:
            health = client.get(f"{API}/health").json()
            assert health["model_loaded"] and health["model_version"] == "prodtype/v1"
            login = {"username": "admin", "password": "first run admin password"}
            token = client.post(f"{API}/auth/token", data=login).json()["access_token"]
            auth = {"Authorization": f"Bearer {token}"}
            files = {"designation": (None, "Piscine tubulaire ronde 3,05 x 0,76 m")}
            r = client.post(f"{API}/predictions", files=files, headers=auth)
            assert r.status_code == 201, r.text
            assert r.json()["model_version"] == "prodtype/v1" and r.json()["prdtypecode"] in TYPES
            models = client.get(f"{API}/models", headers=auth).json()
            assert models["champion"] == 1 and models["serving_version"] == 1
            # recorded like any promotion: in the ledger (what services serve) and the champion history
            assert [(h["action"], h["version"], h["by"]) for h in models["history"]] == [
                ("promote", 1, "prodtype run")
            ]
    with loop_context(settings) as ctx:
        recorded = PromotionLedger(ctx.sessions()).champion("prodtype")
        assert recorded is not None and (recorded.version, recorded.actor) == (1, "prodtype run")
        assert recorded.manifest_sha256 == manifest_digest(registry.local_bundle(1))
        # The next start serves this version instead of training again.
        again = ensure_champion(ctx, say=lambda _m: None)
        assert (again.version, again.created) == (1, False)


def test_a_bundle_left_under_storage_models_becomes_version_1_instead_of_training(
    tmp_path: Path, data_dir: Path, trained_bundle: Path
) -> None:
    small_challenge_folder(data_dir, tmp_path / "data")
    storage = tmp_path / "storage"
    shutil.copytree(trained_bundle, storage / "models" / "model-old")
    settings = Settings(_env_file=None, storage_dir=storage, data_dir=tmp_path / "data")  # type: ignore[call-arg]
    said: list[str] = []
    with loop_context(settings) as ctx:
        first = ensure_champion(ctx, legacy_bundle=find_model(settings), say=said.append)
        assert (first.version, first.created, first.trained) == (1, True, False)
        assert first.adopted_from == storage / "models" / "model-old"
        assert said == [
            f"No model registered: registering the bundle {first.adopted_from} as the first version"
        ]
        assert ctx.registry.alias_version(CHAMPION) == 1
        recorded = PromotionLedger(ctx.sessions()).champion("prodtype")
        assert recorded is not None and recorded.version == 1
        assert recorded.manifest_sha256 == manifest_digest(trained_bundle)


def test_a_registry_without_a_recorded_champion_is_not_given_a_new_version_1(
    tmp_path: Path, data_dir: Path, trained_bundle: Path
) -> None:
    settings = Settings(_env_file=None, storage_dir=tmp_path / "storage", data_dir=data_dir)  # type: ignore[call-arg]
    with loop_context(settings) as ctx:
        ctx.registry.log_and_register(trained_bundle, run_name="by hand", params={}, metrics={}, tags={})
        with pytest.raises(ConflictError, match="prodtype models promote VERSION"):
            ensure_champion(ctx, say=lambda _m: None)
        assert [v.version for v in ctx.registry.versions()] == [1]
