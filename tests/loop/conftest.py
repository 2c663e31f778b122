"""Fixtures of the learning-loop tests: a storage folder with a migrated database and an MLflow store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from loop.tiny import PAIRS, TRAIN_CONFIG, load_tiny, train_tiny, write_tiny_folder
from prodtype.config import LoopSettings, Settings
from prodtype.data.challenge import Dataset
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.loop.registry import Registry
from prodtype.loop.retrain import LoopContext
from service_support.built_once import built_once
from service_support.databases import Backend, postgres_backend, sqlite_backend  # noqa: F401 (fixtures)
from service_support.registries import mlflow_template, registry_in  # noqa: F401 (fixture)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """SQLite; PostgreSQL as well for the tests marked ``@both_databases`` (the ones whose queries matter:
    trigger, feedback export, monitoring, retrain watermark). The rest is about files and MLflow."""
    name = getattr(request, "param", "sqlite")
    return request.getfixturevalue(f"{name}_backend")  # type: ignore[no-any-return]


@pytest.fixture
def settings(
    backend: Backend, tmp_path: Path, data_dir: Path, loop_settings: LoopSettings
) -> Iterator[Settings]:
    storage = tmp_path / "storage"
    url = backend.fresh(storage)
    yield Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="test",
        storage_dir=storage,
        database_url=url,
        data_dir=data_dir,
        image_cache_dir=tmp_path / "cache",
        jwt_secret="test-secret-" + "x" * 40,  # type: ignore[arg-type]
        loop=loop_settings,
    )
    backend.drop(url)


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
def registry(settings: Settings, mlflow_template: Path) -> Registry:  # noqa: F811
    return registry_in(settings, mlflow_template)


@pytest.fixture
def ctx(settings: Settings, registry: Registry) -> LoopContext:
    return LoopContext(settings, registry)


@pytest.fixture(scope="session")
def tiny_data_dir(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 products of six types in the challenge layout (see loop/tiny.py)."""
    return write_tiny_folder(data_dir, tmp_path_factory.mktemp("tiny") / "data")


@pytest.fixture(scope="session")
def tiny_bundles(
    tiny_data_dir: Path, feature_cache_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """Three real bundles trained once per session on disjoint pairs of types (``a``, ``b``, ``c``: see
    ``PAIRS``), so that a prediction tells which one answered. Shared by the xdist workers of a run."""

    def build(root: Path) -> None:
        data = load_tiny(tiny_data_dir)
        for name, types in PAIRS.items():
            keep = data.products.index[data.products["label"].isin(types)]
            subset = Dataset(data.products.loc[keep], fingerprint=f"tiny-{name}", sources=data.sources)
            train_tiny(subset, root / name, feature_cache_dir / "image")

    root = built_once(tmp_path_factory, "tiny-bundles", build)
    return {name: root / name for name in PAIRS}


@pytest.fixture
def tiny_ctx(ctx: LoopContext, tiny_data_dir: Path, feature_cache_dir: Path) -> LoopContext:
    """The loop on the tiny data with the real trainer and scorer (2 folds, no embedder: seconds a run)."""
    ctx.settings = ctx.settings.model_copy(
        update={"data_dir": tiny_data_dir, "image_cache_dir": feature_cache_dir / "image"}
    )
    ctx.train_config = dict(TRAIN_CONFIG)
    return ctx


@pytest.fixture
def sessions(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings.resolved_database_url)
    yield make_sessionmaker(engine)
    engine.dispose()
