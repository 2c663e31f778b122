"""``prodtype run`` with no model anywhere: it trains one on the challenge files in PRODTYPE_DATA_DIR, saves
it under ``storage/models`` (where the next start finds it) and serves it.

On a small slice of the sample (a few types, a few hundred products), so that the real default training
takes seconds; the image features come from the session's cache.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pandas as pd
import pytest

from prodtype.config import Settings
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


def test_run_trains_a_first_model_saves_it_where_the_next_start_finds_it_and_serves_it(
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
    # Any answer of the health check: the server listens only once the training is over, and whether it
    # then serves the new model is what this test checks.
    with running_server("run", env, startup_timeout=900, up=lambda r: True) as server:
        assert f"No model configured: training one on {n} products" in server.output
        bundles = [p for p in (storage / "models").iterdir() if (p / "manifest.json").is_file()]
        assert len(bundles) == 1, bundles
        bundle = bundles[0]
        assert f"Model trained and saved in {bundle}" in server.output
        manifest = json.loads((bundle / "manifest.json").read_text())
        assert sorted(manifest["classes"]) == sorted(TYPES)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            health = client.get(f"{API}/health").json()
            assert health["model_loaded"] and health["model_version"] == manifest["version"]
            login = {"username": "admin", "password": "first run admin password"}
            token = client.post(f"{API}/auth/token", data=login).json()["access_token"]
            files = {"designation": (None, "Piscine tubulaire ronde 3,05 x 0,76 m")}
            r = client.post(f"{API}/predictions", files=files, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201, r.text
            assert r.json()["model_version"] == manifest["version"] and r.json()["prdtypecode"] in TYPES
    # The next start serves this bundle instead of training again.
    assert find_model(Settings(_env_file=None, storage_dir=storage)) == bundle  # type: ignore[call-arg]
