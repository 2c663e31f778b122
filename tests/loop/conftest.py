"""Fixtures of the learning-loop tests: a storage folder with a migrated database and an MLflow store."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import Settings
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.loop_config import LoopSettings
from prodtype.registry import Registry
from prodtype.services.retrain import LoopContext
from service_support.databases import SqliteBackend, sqlite_backend  # noqa: F401 (fixture)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow store, migrated once (MLflow's own migrations take ~10 s), copied per test."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    registry = Registry(f"sqlite:///{folder / 'mlflow.db'}")
    registry.client.search_experiments()
    return folder / "mlflow.db"


@pytest.fixture
def settings(sqlite_backend: SqliteBackend, tmp_path: Path, data_dir: Path) -> Settings:  # noqa: F811
    storage = tmp_path / "storage"
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        storage_dir=storage,
        database_url=sqlite_backend.fresh(storage),
        data_dir=data_dir,
        image_cache_dir=tmp_path / "cache",
        jwt_secret="test-secret-" + "x" * 40,  # type: ignore[arg-type]
    )


@pytest.fixture
def loop_settings() -> LoopSettings:
    return LoopSettings(
        _env_file=None,  # type: ignore[call-arg]
        retrain_min_new_reviews=5,
        live_accuracy_min_reviews=4,
        champion_poll_seconds=0.2,
        promotion_min_class_support=5,
    )


@pytest.fixture
def registry(settings: Settings, loop_settings: LoopSettings, mlflow_template: Path) -> Registry:
    target = settings.storage_dir / "mlflow" / "mlflow.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(mlflow_template, target)
    return Registry.from_settings(settings, loop_settings)


@pytest.fixture
def ctx(settings: Settings, loop_settings: LoopSettings, registry: Registry) -> LoopContext:
    return LoopContext(settings, loop_settings, registry)


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.resolved_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
