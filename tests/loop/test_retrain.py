"""Retrain orchestration with a stand-in model: steps, promotion, challengers, and nothing changed on failure.

The real model goes through the same steps in tests/e2e.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from loop.fakes import FakeTrainer, fake_score
from loop.records import review, submit
from prodtype.loop import retrain
from prodtype.loop.evalset import SPLIT_FILE
from prodtype.loop.registry import CHALLENGER, CHAMPION
from prodtype.loop.retrain import LoopContext
from prodtype.serving.errors import InvalidInputError
from service_support.databases import both_databases


def with_fakes(ctx: LoopContext, *scores: float, **kw: object) -> FakeTrainer:
    trainer = FakeTrainer(*scores, **kw)  # type: ignore[arg-type]
    ctx.trainer = trainer
    ctx.scorer = fake_score
    return trainer


@both_databases
def test_first_retrain_becomes_champion_and_trains_on_base_plus_feedback(
    ctx: LoopContext, sessions: sessionmaker[Session]
) -> None:
    trainer = with_fakes(ctx, 0.5)
    with sessions() as s:
        review(s, submit(s, "Nouveau produit corrigé", 10), "accept", 2583)
        review(s, submit(s, "Produit rejeté", 10), "reject")
    out = retrain.run_all(ctx, force=True)
    assert out.retrained and out.promoted and out.version == 1 and out.champion == 1
    assert "first model" in out.reason

    trained = trainer.seen[0].products
    split = json.loads((ctx.work_dir / SPLIT_FILE).read_text())
    assert trained.index.intersection(split["index"]).empty  # never trained on the evaluation set
    assert "Nouveau produit corrigé" in set(trained["designation"])
    assert "Produit rejeté" not in set(trained["designation"])
    assert out.feedback_rows == 1 and out.base_rows == len(trained) - 1

    info = ctx.registry.get(1)
    assert info.aliases == [CHAMPION]
    params = ctx.registry.client.get_run(info.run_id).data.params
    assert params["feedback_rows"] == "1" and params["eval_fingerprint"] == split["fingerprint"]
    assert ctx.registry.model_tag(retrain.WATERMARK_TAG)
    assert not Path(str(out.run_dir), "candidate").exists()  # the registry holds the bundle now


def test_better_candidate_is_promoted_worse_one_stays_challenger(ctx: LoopContext) -> None:
    with_fakes(ctx, 0.5, 0.6, 0.55)
    retrain.run_all(ctx, force=True)
    better = retrain.run_all(ctx, force=True)
    assert better.promoted and better.champion == 2
    # the champion was scored in the same run
    assert better.champion_metrics and better.champion_metrics["weighted_f1"] == 0.5
    worse = retrain.run_all(ctx, force=True)
    assert not worse.promoted and worse.champion == 2
    assert "does not beat the champion's 0.6000" in worse.reason
    assert ctx.registry.alias_version(CHALLENGER) == 3
    assert ctx.registry.get(3).tags["promotion_reason"] == worse.reason


def test_a_class_collapse_is_not_promoted(ctx: LoopContext) -> None:
    with_fakes(ctx, 0.5)
    retrain.run_all(ctx, force=True)
    with_fakes(ctx, 0.7, per_class={"2583": 0.0})
    out = retrain.run_all(ctx, force=True)
    assert not out.promoted and "class 2583 loses" in out.reason


@both_databases
def test_no_retrain_unless_the_trigger_fires(ctx: LoopContext, sessions: sessionmaker[Session]) -> None:
    trainer = with_fakes(ctx, 0.5)
    out = retrain.run_all(ctx)
    assert not out.retrained and out.trigger.new_reviewed_products == 0
    assert trainer.seen == [] and ctx.registry.versions() == []
    with sessions() as s:
        for i in range(5):
            review(s, submit(s, f"Produit {i}", 10), "accept")
    assert retrain.run_all(ctx).retrained
    assert retrain.check(ctx).new_reviewed_products == 0  # counted from the last training's watermark


def test_a_failure_midway_leaves_registry_and_champion_as_they_were(ctx: LoopContext) -> None:
    with_fakes(ctx, 0.5)
    retrain.run_all(ctx, force=True)
    before = [(v.version, v.aliases) for v in ctx.registry.versions()]

    def dies(*_args: object) -> Path:
        raise KeyboardInterrupt  # what a kill looks like from the inside

    ctx.trainer = dies
    with pytest.raises(KeyboardInterrupt):
        retrain.run_all(ctx, force=True)
    assert [(v.version, v.aliases) for v in ctx.registry.versions()] == before


def test_steps_one_by_one_share_a_run_folder(ctx: LoopContext) -> None:
    with_fakes(ctx, 0.5)
    run_dir = retrain.new_run_dir(ctx, "manual__2024-01-01T00:00:00+00:00")
    assert ":" not in run_dir.name
    with pytest.raises(InvalidInputError, match="needs the output of step 'train'"):
        retrain.evaluate(ctx, run_dir)
    retrain.export(ctx, run_dir)
    retrain.train(ctx, run_dir)
    decision = retrain.evaluate(ctx, run_dir)
    assert decision.promote and ctx.registry.versions() == []  # nothing registered before 'register'
    info = retrain.register(ctx, run_dir)
    assert retrain.register(ctx, run_dir).version == info.version  # a retried step does not register twice
    assert retrain.promote(ctx, run_dir).champion == info.version
