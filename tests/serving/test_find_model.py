"""Which bundle the service loads: PRODTYPE_MODEL_PATH, else the newest bundle under ``storage/models``."""

from __future__ import annotations

import os
from pathlib import Path

from prodtype.config import Settings
from prodtype.serving.model_holder import BUNDLE_MANIFEST, find_model


def settings(storage: Path, model_path: Path | None = None) -> Settings:
    return Settings(_env_file=None, storage_dir=storage, model_path=model_path)  # type: ignore[call-arg]


def bundle(folder: Path, mtime: float) -> Path:
    folder.mkdir(parents=True)
    manifest = folder / BUNDLE_MANIFEST
    manifest.write_text("{}")
    os.utime(manifest, (mtime, mtime))
    return folder


def test_the_newest_bundle_is_chosen_whatever_the_names(tmp_path: Path) -> None:
    models = tmp_path / "models"
    # Names sort the other way round from their ages, and the directory order is whatever the disk gives.
    bundle(models / "model-c", 1_000)
    newest = bundle(models / "model-a", 3_000)
    bundle(models / "model-b", 2_000)
    assert find_model(settings(tmp_path)) == newest


def test_folders_without_a_manifest_are_not_bundles(tmp_path: Path) -> None:
    models = tmp_path / "models"
    chosen = bundle(models / "model-old", 1_000)
    (models / ".model-new.tmp123").mkdir()  # a bundle being written (save_bundle's temporary folder)
    (models / "notes").mkdir()
    (models / "README.txt").write_text("not a bundle")
    assert find_model(settings(tmp_path)) == chosen


def test_none_without_bundles(tmp_path: Path) -> None:
    assert find_model(settings(tmp_path)) is None  # no models folder at all
    (tmp_path / "models").mkdir()
    assert find_model(settings(tmp_path)) is None  # an empty one


def test_the_configured_path_wins_over_newer_bundles(tmp_path: Path) -> None:
    bundle(tmp_path / "models" / "model-new", 5_000)
    configured = bundle(tmp_path / "elsewhere" / "chosen", 1_000)
    assert find_model(settings(tmp_path, model_path=configured)) == configured
