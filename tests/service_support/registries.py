"""An empty MLflow registry store, migrated once per test run (MLflow's own migrations take ~10 s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prodtype.config import Settings
from prodtype.loop.registry import Registry
from service_support.built_once import built_once


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow store; copy it with :func:`registry_in` for each test."""

    def build(folder: Path) -> None:
        Registry(f"sqlite:///{folder / 'mlflow.db'}").client.search_experiments()

    return built_once(tmp_path_factory, "mlflow-template", build) / "mlflow.db"


def registry_in(settings: Settings, template: Path) -> Registry:
    """The embedded registry of ``settings``' storage folder, starting as a copy of the empty template."""
    target = settings.storage_dir / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return Registry.from_settings(settings)
