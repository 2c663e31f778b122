"""An empty MLflow registry store, migrated once per session (MLflow's own migrations take ~10 s)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from prodtype.config import Settings
from prodtype.loop.registry import Registry


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow store; copy it with :func:`registry_in` for each test."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    registry = Registry(f"sqlite:///{folder / 'mlflow.db'}")
    registry.client.search_experiments()
    return folder / "mlflow.db"


def registry_in(settings: Settings, template: Path) -> Registry:
    """The embedded registry of ``settings``' storage folder, starting as a copy of the empty template."""
    target = settings.storage_dir / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(template, target)
    return Registry.from_settings(settings)
