"""Retrain orchestration on real tiny models (loop/tiny.py: 300 products, 2 folds, no embedder, seconds a
run): steps, promotion, challengers, and nothing changed on failure. The full-size model goes through the same
steps in tests/e2e.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy.orm import Session, sessionmaker

from loop.records import review, submit
from loop.tiny import TYPES
from prodtype.data.challenge import Dataset
from prodtype.loop import retrain
from prodtype.loop.evalset import SPLIT_FILE
from prodtype.loop.registry import CHALLENGER, CHAMPION
from prodtype.loop.retrain import LoopContext
from prodtype.serving.errors import InvalidInputError
from prodtype.serving.model_holder import load_model
from service_support.databases import both_databases


class Recording:
    """The real trainer, remembering what it was given (and optionally changing the labels first)."""

    def __init__(self, ctx: LoopContext, relabel: Callable[[Dataset], Dataset] | None = None) -> None:
        self.real = retrain._train_default(ctx)
        self.relabel = relabel
        self.seen: list[Dataset] = []

    def __call__(self, data: Dataset, out_dir: Path, progress: bool) -> Path:
        self.seen.append(data)
        return self.real(self.relabel(data) if self.relabel else data, out_dir, progress)


def recording(ctx: LoopContext, relabel: Callable[[Dataset], Dataset] | None = None) -> Recording:
    trainer = Recording(ctx, relabel)
    ctx.trainer = trainer
    return trainer


def relabelled(data: Dataset, labels: pd.Series) -> Dataset:
    products = data.products.copy()
    products["label"] = labels.astype(products["label"].dtype)
    return Dataset(products, data.image_only, data.missing_images, data.extra_labels, data.fingerprint + "-x")


@both_databases
def test_first_retrain_becomes_champion_and_trains_on_base_plus_feedback(
    tiny_ctx: LoopContext, sessions: sessionmaker[Session]
) -> None:
    ctx = tiny_ctx
    trainer = recording(ctx)
    with sessions() as s:
        review(s, submit(s, "Nouveau produit corrigé", 2280), "accept", 2583)
        review(s, submit(s, "Produit rejeté", 2280), "reject")
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
    # a real bundle, scored on the evaluation set: six types of distinct products are easy
    assert out.candidate_metrics and out.candidate_metrics["weighted_f1"] > 0.6
    assert sorted(load_model(ctx.registry.local_bundle(1)).classes) == sorted(TYPES)


def test_better_candidate_is_promoted_worse_one_stays_challenger(tiny_ctx: LoopContext) -> None:
    ctx = tiny_ctx
    recording(ctx)
    weak = retrain.run_all(ctx, force=True, shuffle_labels=True)  # the first model, however bad
    assert weak.promoted and weak.candidate_metrics
    better = retrain.run_all(ctx, force=True)
    assert better.promoted and better.champion == 2
    # the champion was scored in the same run, on the same evaluation set
    assert better.champion_metrics and better.candidate_metrics
    assert better.champion_metrics["weighted_f1"] == weak.candidate_metrics["weighted_f1"]
    worse = retrain.run_all(ctx, force=True, shuffle_labels=True)
    assert not worse.promoted and worse.champion == 2
    champion_f1 = better.candidate_metrics["weighted_f1"]
    assert f"does not beat the champion's {champion_f1:.4f}" in worse.reason
    assert ctx.registry.alias_version(CHALLENGER) == 3
    assert ctx.registry.get(3).tags["promotion_reason"] == worse.reason


def test_a_class_collapse_is_not_promoted(tiny_ctx: LoopContext) -> None:
    ctx = tiny_ctx

    # The champion knows 2583 and nothing else (the other labels shuffled); the candidate learns the other
    # types well but never sees 2583 (relabelled 1560): better overall, and 2583 collapses.
    def only_2583(data: Dataset) -> Dataset:
        labels = data.products["label"]
        others = labels[labels != 2583]
        shuffled = pd.Series(np.random.default_rng(0).permutation(others.to_numpy()), index=others.index)
        return relabelled(data, labels.where(labels == 2583, shuffled))

    def without_2583(data: Dataset) -> Dataset:
        labels = data.products["label"]
        return relabelled(data, labels.where(labels != 2583, 1560))

    recording(ctx, only_2583)
    first = retrain.run_all(ctx, force=True)
    assert first.promoted
    recording(ctx, without_2583)
    out = retrain.run_all(ctx, force=True)
    assert out.candidate_metrics and first.candidate_metrics
    assert out.candidate_metrics["weighted_f1"] > first.candidate_metrics["weighted_f1"]
    assert not out.promoted and "class 2583 loses" in out.reason


@both_databases
def test_no_retrain_unless_the_trigger_fires(tiny_ctx: LoopContext, sessions: sessionmaker[Session]) -> None:
    ctx = tiny_ctx
    trainer = recording(ctx)
    out = retrain.run_all(ctx)
    assert not out.retrained and out.trigger.new_reviewed_products == 0
    assert trainer.seen == [] and ctx.registry.versions() == []
    with sessions() as s:
        for i in range(5):
            review(s, submit(s, f"Produit {i}", 10), "accept")
    assert retrain.run_all(ctx).retrained
    assert retrain.check(ctx).new_reviewed_products == 0  # counted from the last training's watermark


def test_a_failure_midway_leaves_registry_and_champion_as_they_were(tiny_ctx: LoopContext) -> None:
    ctx = tiny_ctx
    retrain.run_all(ctx, force=True)
    before = [(v.version, v.aliases) for v in ctx.registry.versions()]

    def dies(*_args: object) -> Path:
        raise KeyboardInterrupt  # what a kill looks like from the inside

    ctx.trainer = dies
    with pytest.raises(KeyboardInterrupt):
        retrain.run_all(ctx, force=True)
    assert [(v.version, v.aliases) for v in ctx.registry.versions()] == before


def test_steps_one_by_one_share_a_run_folder(tiny_ctx: LoopContext) -> None:
    ctx = tiny_ctx
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


def test_a_warm_retrain_starts_from_the_champion_and_falls_back_to_full_for_a_new_type(
    tiny_ctx: LoopContext, sessions: sessionmaker[Session]
) -> None:
    ctx = tiny_ctx
    ctx.train_config = {**ctx.train_config, "retrain": "warm"}
    first = retrain.run_all(ctx, force=True)
    assert first.promoted and first.run_dir
    assert retrain.read_state(Path(first.run_dir))["retrain"]["reason"] == "no previous model"

    with sessions() as s:
        review(s, submit(s, "Piscine tubulaire ronde 3 m", 2583), "accept")
    warm = retrain.run_all(ctx, force=True)
    assert warm.run_dir and warm.version == 2
    how = retrain.read_state(Path(warm.run_dir))["retrain"]
    champion_bundle = ctx.registry.local_bundle(1)
    champion_manifest = json.loads((champion_bundle / "manifest.json").read_text())
    assert how["mode"] == "warm" and how["previous"] == champion_manifest["version"]
    candidate = ctx.registry.local_bundle(2)
    assert (candidate / "tfidf.json").read_bytes() == (champion_bundle / "tfidf.json").read_bytes()
    assert ctx.registry.client.get_run(ctx.registry.get(2).run_id).data.params["retrain_mode"] == "warm"

    with sessions() as s:  # a type the champion never saw: its fusion has no bias for it, so train in full
        review(s, submit(s, "Livre ancien de collection", 10), "accept")
    full = retrain.run_all(ctx, force=True)
    assert full.run_dir
    how = retrain.read_state(Path(full.run_dir))["retrain"]
    assert how["mode"] == "full" and "product types it never saw (10)" in how["reason"]
    assert 10 in load_model(ctx.registry.local_bundle(3)).classes
