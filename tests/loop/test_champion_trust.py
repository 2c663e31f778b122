"""Whoever can write to the MLflow registry cannot choose what the service serves: only promotions and
rollbacks made through prodtype (API, CLI, retrain job) are recorded in prodtype's database, and the
follower serves the recorded version, with the bundle that was promoted, whatever the alias says."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import LoopSettings
from prodtype.loop import model_versions, retrain
from prodtype.loop.champion import ChampionFollower
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.registry import CHAMPION, HISTORY_TAG, Registry
from prodtype.loop.retrain import LoopContext
from prodtype.serving.errors import ConflictError
from prodtype.serving.model_holder import ModelHolder, load_model


@pytest.fixture
def bundles(tiny_bundles: dict[str, Path]) -> list[Path]:
    """The three real tiny bundles (registering copies them into the artifact store)."""
    return [tiny_bundles[name] for name in "abc"]


def register(registry: Registry, bundle: Path) -> int:
    return registry.log_and_register(bundle, run_name=bundle.name, params={}, metrics={}, tags={}).version


@pytest.fixture
def ledger(sessions: sessionmaker[Session]) -> PromotionLedger:
    return PromotionLedger(sessions)


def follower_for(
    registry: Registry, loop_settings: LoopSettings, ledger: PromotionLedger
) -> tuple[ChampionFollower, ModelHolder]:
    holder = ModelHolder()
    follower = ChampionFollower(
        holder,
        registry,
        loop_settings,
        recorded=lambda: ledger.champion(registry.model_name),
    )
    return follower, holder


def promote(registry: Registry, version: int, ledger: PromotionLedger) -> None:
    model_versions.promote(registry, version, actor="admin", check=load_model, ledger=ledger)


def test_an_alias_moved_in_mlflow_is_reported_and_ignored(
    registry: Registry,
    loop_settings: LoopSettings,
    ledger: PromotionLedger,
    bundles: list[Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    v1, v2 = register(registry, bundles[0]), register(registry, bundles[1])
    follower, holder = follower_for(registry, loop_settings, ledger)
    promote(registry, v1, ledger)
    assert follower.check_now() and holder.version == "prodtype/v1"

    # Someone with access to MLflow moves the alias (no prodtype involved): the service stays on v1.
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION, str(v2))
    with caplog.at_level(logging.ERROR, logger="prodtype.loop.champion"):
        assert not follower.check_now()
        assert not follower.check_now()
    assert holder.version == "prodtype/v1"
    status = follower.status()
    assert status["untrusted_alias"]["alias"] == v2 and status["untrusted_alias"]["recorded"] == v1
    assert "moved outside prodtype" in status["refused"][str(v2)]
    assert len([r for r in caplog.records if "moved outside prodtype" in r.getMessage()]) == 1  # once

    # The same version promoted through prodtype is served.
    registry.client.set_registered_model_alias(registry.model_name, CHAMPION, str(v1))
    promote(registry, v2, ledger)
    assert follower.check_now() and holder.version == "prodtype/v2"
    assert follower.status()["untrusted_alias"] is None


def test_a_service_started_on_a_hand_set_alias_serves_nothing_from_the_registry(
    registry: Registry, loop_settings: LoopSettings, ledger: PromotionLedger, bundles: list[Path]
) -> None:
    v1 = register(registry, bundles[0])
    registry.promote(v1, reason="set in MLflow directly")  # the registry alone, not prodtype
    follower, holder = follower_for(registry, loop_settings, ledger)
    assert not follower.check_now() and not holder.loaded
    assert follower.status()["untrusted_alias"]["recorded"] is None


def test_a_bundle_replaced_in_the_artifact_store_after_its_promotion_is_refused(
    registry: Registry, loop_settings: LoopSettings, ledger: PromotionLedger, bundles: list[Path]
) -> None:
    v1, v2 = register(registry, bundles[0]), register(registry, bundles[1])
    follower, holder = follower_for(registry, loop_settings, ledger)
    promote(registry, v1, ledger)
    assert follower.check_now()
    promote(registry, v2, ledger)
    manifest = registry.local_bundle(v2) / "manifest.json"
    swapped = json.loads(manifest.read_text()) | {"version": "another model"}  # what an attacker would serve
    manifest.write_text(json.dumps(swapped))
    assert not follower.check_now()
    assert holder.version == "prodtype/v1"
    assert "changed in the registry since it was promoted" in follower.refused[v2]


def test_rollback_follows_prodtypes_records_not_the_registry_history(
    registry: Registry, loop_settings: LoopSettings, ledger: PromotionLedger, bundles: list[Path]
) -> None:
    versions = [register(registry, bundle) for bundle in bundles]
    for version in versions[:2]:
        promote(registry, version, ledger)
    # The history tag lives in MLflow too: rewritten, it would send a rollback to v3.
    forged = [{"action": "promote", "version": v} for v in (3, 2)]
    registry.client.set_registered_model_tag(registry.model_name, HISTORY_TAG, json.dumps(forged))
    info = model_versions.rollback(registry, actor="admin", check=load_model, ledger=ledger)
    assert info.version == versions[0] == registry.alias_version(CHAMPION)
    champion = ledger.champion(registry.model_name)
    assert champion is not None and (champion.version, champion.action) == (versions[0], "rollback")
    with pytest.raises(ConflictError, match="first champion prodtype recorded"):
        model_versions.rollback(registry, actor="admin", check=load_model, ledger=ledger)


def test_the_retrain_job_records_its_promotion(
    tiny_ctx: LoopContext, sessions: sessionmaker[Session]
) -> None:
    ctx = tiny_ctx
    out = retrain.run_all(ctx, force=True)
    assert out.promoted
    recorded = PromotionLedger(sessions).champion(ctx.registry.model_name)
    assert recorded is not None and recorded.version == out.version and recorded.actor == "retrain"
    assert recorded.manifest_sha256 is not None
