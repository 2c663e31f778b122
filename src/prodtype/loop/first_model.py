"""The first model: ``prodtype run`` with nothing registered makes one and registers it as version 1, the
champion, so that the registry is the one source of truth for what is served from the first start on.

It goes through the retrain steps like any later model (export, train on the base data less the evaluation
set, evaluate, register, promote, recorded in the promotion ledger), so that its evaluation figures compare
with its successors'. A bundle left under ``storage/models`` by an earlier prodtype (or put there to seed a
deployment) is registered instead of training a new one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from prodtype.loop import retrain
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.retrain import LoopContext
from prodtype.serving.errors import ConflictError, InvalidInputError

ACTOR = "prodtype run"


@dataclass(frozen=True)
class FirstChampion:
    """The champion ``prodtype run`` serves: ``created`` when this call registered it."""

    version: int
    created: bool
    trained: bool = False
    adopted_from: Path | None = None
    eval_weighted_f1: float | None = None
    run_dir: Path | None = None


def ensure_champion(
    ctx: LoopContext, *, legacy_bundle: Path | None = None, say: Callable[[str], object] = print
) -> FirstChampion:
    """The champion prodtype recorded; with none, register ``legacy_bundle`` (or a model trained on
    PRODTYPE_DATA_DIR) as a new version and make it the champion."""
    name = ctx.registry.model_name
    recorded = PromotionLedger(ctx.sessions()).champion(name)
    if recorded is not None:
        return FirstChampion(recorded.version, created=False)
    versions = ctx.registry.versions()
    if versions:
        raise ConflictError(
            f"the registry holds {len(versions)} version(s) of {name} but prodtype never recorded a "
            f"champion: choose one with `prodtype models promote VERSION` (e.g. {versions[0].version})"
        )
    if legacy_bundle is None and ctx.settings.data_dir is None:
        raise InvalidInputError(
            "no model to serve and no data to train one: set PRODTYPE_MODEL_PATH to a model bundle, "
            "or PRODTYPE_DATA_DIR to a folder with the challenge files "
            "(X_train.csv, Y_train.csv, image_train/)"
        )
    run_dir = retrain.new_run_dir(ctx, datetime.now(UTC).strftime("first-model-%Y%m%dT%H%M%S"))
    retrain.write_state(run_dir, trigger=["first model"], started_at=datetime.now(UTC).isoformat())
    retrain.export(ctx, run_dir)
    if legacy_bundle is not None:
        say(f"No model registered: registering the bundle {legacy_bundle} as the first version")
        _adopt(ctx, run_dir, legacy_bundle)
    else:
        split = retrain.evaluation_split(ctx)
        say(
            f"No model registered: training the first one on {len(split.train)} products from "
            f"{ctx.settings.data_dir} ({len(split.eval)} kept aside to evaluate it)"
        )
        retrain.train(ctx, run_dir, progress=True)
    retrain.evaluate(ctx, run_dir)
    retrain.register(ctx, run_dir, trigger=["first model"])
    outcome = retrain.promote(ctx, run_dir, actor=ACTOR)
    state = retrain.read_state(run_dir)
    return FirstChampion(
        outcome.version,
        created=True,
        trained=legacy_bundle is None,
        adopted_from=legacy_bundle,
        eval_weighted_f1=float(state["candidate_metrics"]["weighted_f1"]),
        run_dir=run_dir,
    )


def _adopt(ctx: LoopContext, run_dir: Path, bundle: Path) -> None:
    """Put a bundle trained elsewhere where the train step leaves its candidate (evaluated like one)."""
    base = retrain.load_base(ctx)
    split = retrain.evaluation_split(ctx, base)
    final = run_dir / "candidate"
    shutil.rmtree(final, ignore_errors=True)
    shutil.copytree(bundle, final)
    retrain.write_state(
        run_dir,
        bundle=str(final),
        adopted_from=str(bundle),
        base_rows=None,
        feedback_rows=0,
        eval_rows=len(split.eval),
        base_fingerprint=base.fingerprint,
        input_fingerprint=None,
        eval_fingerprint=split.fingerprint,
        shuffle_labels=False,
    )
