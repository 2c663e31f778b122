"""Promote and roll back over the API with real bundles: a version whose bundle fails its checks (here a
file changed after training, so its checksum no longer matches) is refused with 422 and nothing changes."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from prodtype.app import create_app
from prodtype.config import LoopSettings, Settings
from prodtype.db.tables import AuditEvent
from prodtype.loop.registry import CHAMPION, Registry
from prodtype.serving.model_holder import ModelHolder
from service_support.databases import SqliteBackend
from service_support.registries import mlflow_template, registry_in  # noqa: F401 (fixture)

from .conftest import API, Headers

LOOP = LoopSettings(_env_file=None, follow_champion=False)  # type: ignore[call-arg]


@pytest.fixture
def backend(sqlite_backend: SqliteBackend) -> SqliteBackend:
    """SQLite only: the registry is MLflow's own store; the app's database only receives the audit events."""
    return sqlite_backend


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"loop": LOOP})


@pytest.fixture
def registry(settings: Settings, mlflow_template: Path) -> Registry:  # noqa: F811
    return registry_in(settings, mlflow_template)


@pytest.fixture
def app(settings: Settings, model_holder: ModelHolder, registry: Registry) -> FastAPI:
    # A holder of its own: the session's shared one must not be swapped by this app's follower.
    app = create_app(settings, model_holder=ModelHolder(model_holder.get()))
    return app


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def add_version(registry: Registry, trained_bundle: Path, folder: Path) -> int:
    shutil.copytree(trained_bundle, folder)
    info = registry.log_and_register(folder, run_name=folder.name, params={}, metrics={}, tags={})
    return info.version


def tamper(registry: Registry, version: int) -> tuple[Path, bytes]:
    """Append bytes to one of the version's array files; returns the file and its original content."""
    victim = next(p for p in sorted(registry.local_bundle(version).iterdir()) if p.suffix == ".npz")
    original = victim.read_bytes()
    victim.write_bytes(original + b"tampered")
    return victim, original


def audited(app: FastAPI, action: str) -> list[str]:
    with app.state.sessions() as session:
        return [e.entity_id for e in session.scalars(select(AuditEvent).where(AuditEvent.action == action))]


def test_promoting_a_tampered_bundle_is_refused_and_an_intact_one_is_not(
    app: FastAPI,
    client: TestClient,
    auth: Callable[[str], Headers],
    registry: Registry,
    trained_bundle: Path,
    tmp_path: Path,
) -> None:
    v1 = add_version(registry, trained_bundle, tmp_path / "v1")
    v2 = add_version(registry, trained_bundle, tmp_path / "v2")
    v3 = add_version(registry, trained_bundle, tmp_path / "v3")
    registry.promote(v1, reason="first", actor="test")
    tamper(registry, v2)

    refused = client.post(f"{API}/models/{v2}/promote", json={"reason": "try"}, headers=auth("admin"))
    assert refused.status_code == 422, refused.text
    detail = refused.json()["detail"]
    assert f"version {v2} was refused" in detail and "checksum mismatch" in detail
    assert "the champion is unchanged" in detail
    assert registry.alias_version(CHAMPION) == v1
    assert [h["version"] for h in registry.history()] == [v1]
    assert audited(app, "model.promoted") == []

    promoted = client.post(f"{API}/models/{v3}/promote", json={"reason": "intact"}, headers=auth("admin"))
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["champion"]["version"] == v3
    assert registry.alias_version(CHAMPION) == v3
    assert audited(app, "model.promoted") == [str(v3)]


def test_rolling_back_to_a_tampered_bundle_is_refused(
    app: FastAPI,
    client: TestClient,
    auth: Callable[[str], Headers],
    registry: Registry,
    trained_bundle: Path,
    tmp_path: Path,
) -> None:
    v1 = add_version(registry, trained_bundle, tmp_path / "v1")
    v2 = add_version(registry, trained_bundle, tmp_path / "v2")
    registry.promote(v1, reason="first", actor="test")
    registry.promote(v2, reason="second", actor="test")
    victim, original = tamper(registry, v1)

    refused = client.post(f"{API}/models/rollback", json={"reason": "try"}, headers=auth("admin"))
    assert refused.status_code == 422, refused.text
    assert f"version {v1} was refused" in refused.json()["detail"]
    assert "checksum mismatch" in refused.json()["detail"]
    assert registry.alias_version(CHAMPION) == v2
    assert [h["action"] for h in registry.history()] == ["promote", "promote"]

    victim.write_bytes(original)  # repaired: the same rollback goes through
    done = client.post(f"{API}/models/rollback", json={"reason": "repaired"}, headers=auth("admin"))
    assert done.status_code == 200, done.text
    assert done.json()["champion"]["version"] == v1 and registry.alias_version(CHAMPION) == v1
    assert audited(app, "model.rolled_back") == [str(v1)]
