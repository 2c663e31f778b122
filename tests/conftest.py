"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service_support.built_once import built_once


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The challenge sample: ``$PRODTYPE_DATA_DIR``, else ``../shared/data/rakuten`` beside the repository."""
    env = os.environ.get("PRODTYPE_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rakuten"
    if not (path / "X_train.csv").is_file():
        pytest.fail(f"no challenge sample at {path} (expected X_train.csv there): set PRODTYPE_DATA_DIR")
    return path


REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def feature_cache_dir() -> Path:
    """Image-feature and text-embedding caches kept between test runs (``.cache/`` is git-ignored)."""
    path = Path(os.environ.get("PRODTYPE_TEST_CACHE", REPO / ".cache" / "test-features"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def sample_dataset(data_dir: Path):  # type: ignore[no-untyped-def]
    from prodtype.data.challenge import load_dataset

    return load_dataset(
        data_dir / "X_train.csv",
        data_dir / "Y_train.csv",
        data_dir / "image_train",
        data_dir / "image_only_train.csv",
    )


@pytest.fixture(scope="session")
def trained_bundle(sample_dataset, feature_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A real model bundle, trained once per test run (shared by its xdist workers) on the whole sample with
    the default config.

    ``PRODTYPE_TEST_BUNDLE`` names one trained beforehand instead (scripts/mutation_check.py trains it once
    for all its runs; the mutants it applies leave training alone)."""
    from prodtype.ml.train import train_model

    prebuilt = os.environ.get("PRODTYPE_TEST_BUNDLE")
    if prebuilt:
        if not (Path(prebuilt) / "manifest.json").is_file():
            pytest.fail(f"PRODTYPE_TEST_BUNDLE={prebuilt} is not a model bundle (no manifest.json there)")
        return Path(prebuilt)

    def build(folder: Path) -> None:
        train_model(
            sample_dataset,
            folder / "model",
            image_cache_dir=feature_cache_dir / "image",
            text_cache_dir=feature_cache_dir / "text",
            progress=False,
        )

    return built_once(tmp_path_factory, "bundle", build) / "model"
