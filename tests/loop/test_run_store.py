"""Steps of one retrain run on different machines: each step a separate ``prodtype retrain --step`` process
with its own empty storage folder, sharing only the database, the object store (moto in server mode) and
the registry, as Airflow tasks on different Celery workers do."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from loop.tiny import TRAIN_CONFIG
from prodtype.config import Settings
from prodtype.loop.registry import CHAMPION, Registry
from prodtype.loop.run_store import RunFolderSync
from prodtype.serving.object_store import ObjectStore
from service_support.object_store import keys, s3_endpoint, s3_env, s3_url  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

SRC = Path(__file__).resolve().parents[2] / "src"
CLI = "from prodtype.cli import app; app()"
RUN = "scheduled__2026-12-02T06:00:00+00:00"
RUN_FOLDER = "scheduled__2026-12-02T06_00_00_00_00"


def test_each_step_on_its_own_machine_completes_the_run(
    settings: Settings,
    tiny_data_dir: Path,
    feature_cache_dir: Path,
    mlflow_template: Path,
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    # The shared registry: a tracking store and an artifact folder that no machine's storage folder holds.
    shared = tmp_path / "registry"
    shared.mkdir()
    (shared / "mlflow.db").write_bytes(mlflow_template.read_bytes())
    tracking = f"sqlite:///{shared / 'mlflow.db'}"
    Registry(tracking, artifact_root=shared / "artifacts")._experiment_id()
    config = tmp_path / "train.json"
    config.write_text(json.dumps(TRAIN_CONFIG))
    common = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PRODTYPE_", "AWS_"))},
        **s3_env(s3_endpoint, s3_url),
        "PYTHONPATH": str(SRC),
        "PRODTYPE_DATABASE_URL": settings.resolved_database_url,
        "PRODTYPE_DATA_DIR": str(tiny_data_dir),
        "PRODTYPE_MLFLOW_TRACKING_URI": tracking,
        "PRODTYPE_TRAIN_CONFIG_FILE": str(config),
        "PRODTYPE_PROMOTION_MIN_CLASS_SUPPORT": "5",
        # a cache of photo features, not state: shared to keep the test short
        "PRODTYPE_IMAGE_CACHE_DIR": str(feature_cache_dir / "image"),
    }
    outputs: dict[str, Any] = {}
    for step in ("export", "train", "evaluate", "register", "promote"):
        machine = tmp_path / f"machine-{step}"
        env = {**common, "PRODTYPE_STORAGE_DIR": str(machine)}
        proc = subprocess.run(
            [sys.executable, "-c", CLI, "retrain", "--step", step, "--run-name", RUN, "--quiet"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert proc.returncode == 0, f"step {step} failed:\n{proc.stderr[-4000:]}"
        outputs[step] = json.loads(proc.stdout)
        # what the next machine will need is in the object store, not only on this one
        stored = [k.split(f"runs/{RUN_FOLDER}/", 1)[1] for k in keys(s3_endpoint, s3_url) if "/runs/" in k]
        assert "state.json" in stored, stored
        if step == "train":
            assert "candidate/manifest.json" in stored
    assert outputs["promote"]["promoted"] is True
    registry = Registry(tracking)
    version = outputs["register"]["version"]
    assert registry.alias_version(CHAMPION) == version == outputs["promote"]["champion"]
    stored = keys(s3_endpoint, s3_url)
    assert "prodtype/loop/eval_split.json" in stored  # every machine evaluated on the same products
    assert not [k for k in stored if f"/{RUN_FOLDER}/candidate/" in k]  # the registry holds the bundle now
    state = json.loads(
        (tmp_path / "machine-promote" / "loop" / "runs" / RUN_FOLDER / "state.json").read_text()
    )
    assert state["version"] == version and state["outcome"]["promoted"] is True


def test_pull_mirrors_the_store_and_push_sends_only_what_changed(
    tmp_path: Path,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    objects = ObjectStore(s3_url, **_keys(s3_endpoint))
    first = RunFolderSync(objects, tmp_path / "a" / "runs" / "r1", tmp_path / "a")
    first.run_dir.mkdir(parents=True)
    assert first.pull() == 0  # a new run: nothing stored yet
    (first.run_dir / "state.json").write_text("{}")
    (first.run_dir / "candidate").mkdir()
    (first.run_dir / "candidate" / "model.bin").write_bytes(b"x" * 1000)
    assert first.push() == 2
    assert first.push() == 0  # nothing changed

    second = RunFolderSync(objects, tmp_path / "b" / "runs" / "r1", tmp_path / "b")
    (second.run_dir / "leftover.partial").parent.mkdir(parents=True)
    (second.run_dir / "leftover.partial").write_text("from a step that failed here")
    assert second.pull() == 2
    assert not (second.run_dir / "leftover.partial").exists()  # the store is the truth
    assert (second.run_dir / "candidate" / "model.bin").read_bytes() == b"x" * 1000
    (second.run_dir / "candidate" / "model.bin").unlink()
    (second.run_dir / "state.json").write_text('{"version": 1}')
    assert second.push() == 1
    assert [k.split("/runs/r1/")[1] for k in keys(s3_endpoint, s3_url)] == ["state.json"]

    assert first.pull() == 1  # the changed state; the removed bundle goes here too
    assert not (first.run_dir / "candidate").exists()
    assert (first.run_dir / "state.json").read_text() == '{"version": 1}'


def _keys(endpoint: str) -> dict[str, str]:
    from service_support.object_store import ACCESS_KEY, REGION, SECRET_KEY

    return {
        "endpoint_url": endpoint,
        "region": REGION,
        "access_key_id": ACCESS_KEY,
        "secret_access_key": SECRET_KEY,
    }
