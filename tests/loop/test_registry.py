"""The MLflow registry: runs and versions, champion/challenger aliases, history, rollback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from loop.tiny import copy_bundle
from prodtype.loop.registry import CHALLENGER, CHAMPION, Registry, RegistryError, UnknownVersionError


@pytest.fixture
def bundle(tiny_bundles: dict[str, Path]) -> Path:
    return tiny_bundles["a"]


def register(registry: Registry, tmp_path: Path, name: str, f1: float = 0.5, *, bundle: Path) -> int:
    bundle = copy_bundle(bundle, tmp_path / name)
    report = tmp_path / f"{name}-report"
    report.mkdir()
    (report / "report.md").write_text("# report\n")
    info = registry.log_and_register(
        bundle,
        run_name=name,
        params={"base_rows": 10, "feedback_rows": 2, "input_fingerprint": "abc"},
        metrics={"eval_weighted_f1": f1},
        tags={"prodtype.trigger": "test"},
        artifacts={"evaluation": report},
        version_tags={"bundle_version": name},
    )
    return info.version


def test_importing_prodtype_does_not_import_mlflow() -> None:
    import subprocess

    code = (
        "import sys, prodtype, prodtype.loop.registry, prodtype.app, prodtype.cli; "
        "print('mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_empty_store(registry: Registry) -> None:
    assert registry.versions() == []
    assert registry.champion() is None
    assert registry.alias_version(CHAMPION) is None
    assert registry.previous_champion() is None


def test_a_run_is_logged_with_its_bundle_and_registered(
    registry: Registry, tmp_path: Path, bundle: Path
) -> None:
    version = register(registry, tmp_path, "first", 0.61, bundle=bundle)
    info = registry.get(version)
    assert version == 1 and info.run_id
    assert info.metrics["eval_weighted_f1"] == pytest.approx(0.61)
    assert info.tags["bundle_version"] == "first"
    local = registry.local_bundle(version)
    assert (local / "manifest.json").is_file()
    assert str(local).startswith(str(registry.artifact_root))
    run = registry.client.get_run(info.run_id)
    assert run.data.params["feedback_rows"] == "2" and run.info.status == "FINISHED"
    artifacts = {a.path for a in registry.client.list_artifacts(info.run_id)}
    assert {"bundle", "evaluation"} <= artifacts


def test_promote_challenger_rollback_keep_the_history(
    registry: Registry, tmp_path: Path, bundle: Path
) -> None:
    v1, v2, v3 = (register(registry, tmp_path, f"m{i}", bundle=bundle) for i in range(3))
    registry.promote(v1, reason="first", actor="test")
    registry.mark_challenger(v2, reason="not better")
    assert registry.alias_version(CHALLENGER) == v2
    registry.promote(v3, reason="better")
    assert registry.champion().version == v3  # type: ignore[union-attr]
    assert registry.previous_champion() == v1
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote(v3, reason="again")

    back = registry.rollback(reason="bad in production", actor="ops")
    assert back.version == v1 and registry.alias_version(CHAMPION) == v1
    assert registry.get(v3).tags["promotion"] == "rolled_back"
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback()
    history = registry.history()
    assert [(h["action"], h["version"]) for h in history] == [
        ("promote", v1),
        ("promote", v3),
        ("rollback", v1),
    ]
    assert history[-1]["by"] == "ops" and history[-1]["previous"] == v3
    listed = registry.versions()
    assert [v.version for v in listed] == [v3, v2, v1]
    assert listed[-1].aliases == [CHAMPION]


def test_rollback_after_promote_rollback_promote(registry: Registry, tmp_path: Path, bundle: Path) -> None:
    v1, v2, v3 = (register(registry, tmp_path, f"m{i}", bundle=bundle) for i in range(3))
    registry.promote(v1, reason="a")
    registry.promote(v2, reason="b")
    registry.rollback()
    registry.promote(v3, reason="c")
    assert registry.rollback().version == v1


def test_unknown_version(registry: Registry, tmp_path: Path, bundle: Path) -> None:
    register(registry, tmp_path, "only", bundle=bundle)
    with pytest.raises(UnknownVersionError, match="no version 7"):
        registry.promote(7, reason="x")


def test_reading_an_absent_store_does_not_create_it(tmp_path: Path) -> None:
    registry = Registry(f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}")
    assert registry.versions() == [] and registry.history() == [] and registry.alias_version(CHAMPION) is None
    with pytest.raises(UnknownVersionError):
        registry.get(1)
    with pytest.raises(RegistryError, match="no champion"):
        registry.rollback()
    assert not (tmp_path / "mlflow").exists()
