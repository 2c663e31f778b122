"""Retraining, one step at a time: check → export → train → evaluate → register → promote.

Each step is a plain function over a run folder (``<storage>/loop/runs/<run>``) that keeps the step's
outputs and a ``state.json`` (paths in it relative to the folder: with an object store the folder travels
between machines, see :mod:`prodtype.loop.run_store`); the CLI (``prodtype retrain [--step STEP]``), the
API's background job and the Airflow DAG all call these same functions. Until ``register`` nothing outside
the run folder changes: a retrain killed in the middle leaves the registry and the champion as they were.
The candidate bundle is trained into a ``.partial`` folder and renamed when complete.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

import prodtype
from prodtype.config import LoopSettings, Settings, get_settings
from prodtype.data.challenge import DataError, Dataset, find_challenge_files
from prodtype.files import atomic_write_text
from prodtype.loop.evalset import EvalSplit, load_or_make_split
from prodtype.loop.feedback import combine, export_feedback, load_feedback
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.promotion import PromotionDecision, decide, with_live
from prodtype.loop.registry import CHAMPION, ModelVersionInfo, Registry
from prodtype.loop.shadow import ShadowLedger, live_comparison
from prodtype.loop.steps import RUN_STEP_NAMES
from prodtype.loop.steps import STEPS as STEPS  # re-exported: the steps a run goes through
from prodtype.loop.trigger import TriggerStatus, trigger_status
from prodtype.serving.errors import ConflictError, InvalidInputError
from prodtype.serving.storage import ImageStore, open_image_store

if TYPE_CHECKING:
    from prodtype.ml.train import PreviousModel

log = logging.getLogger(__name__)

STATE = "state.json"
WATERMARK_TAG = "feedback_reviewed_until"


class PromotionOutcome(BaseModel):
    """What the promote step did with the registered candidate."""

    version: int = Field(description="The candidate's registry version")
    promoted: bool
    reason: str = Field(description="Why it was or was not promoted")
    champion: int | None = Field(description="The champion after the step")


class RetrainResult(BaseModel):
    """A whole retrain (:func:`run_all`): trained or not, and what became of the candidate.

    When the trigger did not fire only ``retrained``, ``reason`` and ``trigger`` are set (and printed)."""

    retrained: bool
    reason: str
    trigger: TriggerStatus
    run_dir: str | None = None
    version: int | None = None
    promoted: bool | None = None
    champion: int | None = None
    candidate_metrics: dict[str, float | int] | None = Field(
        default=None, description="weighted_f1, macro_f1, accuracy and n on the evaluation set"
    )
    champion_metrics: dict[str, float | int] | None = None
    feedback_rows: int | None = None
    base_rows: int | None = None

    def printed(self) -> dict[str, Any]:
        """The JSON the CLI prints and a job record keeps (the fields a retrain that did not run lacks are
        left out, not null)."""
        return self.model_dump(mode="json", exclude_unset=True)


@dataclass
class LoopContext:
    """What the steps work with: settings, the registry, the database and the image store."""

    settings: Settings
    registry: Registry
    train_config: Any = None
    # Replaceable for tests of the orchestration: (dataset, out_dir, progress) -> bundle folder, and
    # (bundle folder, evaluation dataset, report folder) -> evaluation dict. Default: prodtype.ml.
    trainer: Callable[[Dataset, Path, bool], Path] | None = None
    scorer: Callable[[Path, Dataset, Path], dict[str, Any]] | None = None
    _sessions: Any = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> LoopContext:
        settings = settings or get_settings()
        return cls(settings, Registry.from_settings(settings), train_config=settings.loop.train_config())

    @property
    def loop(self) -> LoopSettings:
        return self.settings.loop

    @property
    def work_dir(self) -> Path:
        return self.settings.loop_dir

    def sessions(self) -> Any:
        """A session factory on the service's database (migrated to the latest schema once)."""
        if self._sessions is None:
            from prodtype.db import migrate
            from prodtype.db.engine import make_engine, make_sessionmaker

            engine = make_engine(self.settings.resolved_database_url)
            migrate.upgrade(engine)
            self._sessions = make_sessionmaker(engine)
        return self._sessions

    def store(self) -> ImageStore:
        return open_image_store(self.settings)


# -- run folders --------------------------------------------------------------------------------------


def new_run_dir(ctx: LoopContext, name: str | None = None) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    safe = "".join(
        c if c.isalnum() or c in "-_." else "_" for c in (name or f"{stamp}-{secrets.token_hex(3)}")
    )
    run_dir = ctx.work_dir / "runs" / safe
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def read_state(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / STATE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(run_dir: Path, **updates: Any) -> dict[str, Any]:
    state = read_state(run_dir)
    state.update(updates)
    atomic_write_text(Path(run_dir) / STATE, json.dumps(state, indent=2, default=str))
    return state


def _need(state: dict[str, Any], key: str, step: str, before: str) -> Any:
    if key not in state:
        raise InvalidInputError(f"step '{step}' needs the output of step '{before}' in this run folder first")
    return state[key]


# -- data ---------------------------------------------------------------------------------------------


def load_base(ctx: LoopContext) -> Dataset:
    """The base training data: the challenge files in PRODTYPE_DATA_DIR."""
    if ctx.settings.data_dir is None:
        raise InvalidInputError(
            "PRODTYPE_DATA_DIR is not set: it must name the folder with the challenge files"
        )
    try:
        return find_challenge_files(ctx.settings.data_dir).load()
    except DataError as exc:
        raise InvalidInputError(str(exc)) from None


def evaluation_split(ctx: LoopContext, base: Dataset | None = None) -> EvalSplit:
    return load_or_make_split(base if base is not None else load_base(ctx), ctx.loop, ctx.work_dir)


def watermark(ctx: LoopContext) -> datetime | None:
    value = ctx.registry.model_tag(WATERMARK_TAG)
    return datetime.fromisoformat(value) if value else None


# -- steps --------------------------------------------------------------------------------------------


def check(ctx: LoopContext) -> TriggerStatus:
    """Whether enough new reviews arrived, or the live accuracy fell, since the last training."""
    since = watermark(ctx)
    sessions = ctx.sessions()
    with sessions() as session:
        return trigger_status(session, ctx.loop, since)


def export(ctx: LoopContext, run_dir: Path) -> dict[str, Any]:
    """Write the reviewed products in the challenge format to ``run_dir/feedback``."""
    cutoff = datetime.now(UTC)
    sessions = ctx.sessions()
    with sessions() as session:
        result = export_feedback(session, ctx.store(), Path(run_dir) / "feedback", until=cutoff)
    summary = result.summary()
    summary.pop("prediction_ids", None)
    write_state(run_dir, feedback=summary, reviewed_until=cutoff.isoformat())
    return summary


def _shuffled(data: Dataset, seed: int) -> Dataset:
    products = data.products.copy()
    products["label"] = np.random.default_rng(seed).permutation(products["label"].to_numpy())
    image_only = data.image_only.copy()
    if len(image_only):
        image_only["label"] = np.random.default_rng(seed + 1).permutation(image_only["label"].to_numpy())
    return Dataset(
        products,
        image_only,
        data.missing_images,
        data.extra_labels,
        data.fingerprint + "-shuffled",
        data.sources,
    )


def train(ctx: LoopContext, run_dir: Path, *, shuffle_labels: bool = False, progress: bool = False) -> Path:
    """Train the candidate on the base data (less the evaluation set) plus the exported feedback."""
    run_dir = Path(run_dir)
    base = load_base(ctx)
    split = evaluation_split(ctx, base)
    feedback = load_feedback(run_dir / "feedback") if (run_dir / "feedback").is_dir() else None
    data, n_feedback = combine(split.train, feedback, exclude_texts=set(split.eval.products["text"]))
    if shuffle_labels:
        data = _shuffled(data, ctx.loop.eval_seed)
    partial = run_dir / "candidate.partial"
    final = run_dir / "candidate"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(final, ignore_errors=True)
    start = time.perf_counter()
    log.info("training a candidate on %d base + %d feedback products", len(split.train), n_feedback)
    out = (ctx.trainer or _train_default(ctx))(data, partial, progress)
    Path(out).rename(final)
    report_file = final / "training_report.json"
    report = json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
    write_state(
        run_dir,
        retrain=report.get("retrain"),  # full or warm, and why (TrainConfig.retrain)
        bundle=final.name,  # relative to the run folder, which may be on another machine for the next step
        train_seconds=round(time.perf_counter() - start, 1),
        base_rows=len(split.train),
        base_image_only=len(split.train.image_only),
        feedback_rows=n_feedback,
        eval_rows=len(split.eval),
        base_fingerprint=base.fingerprint,
        input_fingerprint=data.fingerprint,
        eval_fingerprint=split.fingerprint,
        shuffle_labels=shuffle_labels,
    )
    return final


def _train_default(ctx: LoopContext) -> Callable[[Dataset, Path, bool], Path]:
    from prodtype.ml.train import TrainConfig, train_model

    config = TrainConfig.build(**ctx.train_config) if isinstance(ctx.train_config, dict) else ctx.train_config

    def run(data: Dataset, out_dir: Path, progress: bool) -> Path:
        images, texts = ctx.settings.resolved_image_cache_dir, ctx.settings.text_cache_dir
        return Path(
            train_model(
                data,
                out_dir,
                config,
                image_cache_dir=images,
                text_cache_dir=texts,
                progress=progress,
                previous=_previous_model(ctx) if config is None or config.retrain != "full" else None,
            )
        )

    return run


def _previous_model(ctx: LoopContext) -> PreviousModel | None:
    """The champion, which a warm retrain may start from (TrainConfig.retrain); None when there is none or
    it cannot be read (then the retrain is a full one, and says why in its log). Only its manifest and
    training report are read here: its parts load if the retrain turns out warm."""
    from prodtype.ml.bundle import BundleError
    from prodtype.ml.train import PreviousModel

    info = ctx.registry.champion()
    if info is None:
        return None
    try:
        return PreviousModel.load(ctx.registry.local_bundle(info.version))
    except (BundleError, OSError, ValueError) as exc:
        log.warning("champion v%s cannot be read (%s): retraining in full", info.version, exc)
        return None


def score_bundle(
    bundle: Path, data: Dataset, report_dir: Path, image_cache_dir: Path | None = None
) -> dict[str, Any]:
    """Evaluate a bundle on ``data`` and write the report (markdown + plots) to ``report_dir``."""
    from prodtype.ml.bundle import load_bundle
    from prodtype.ml.evaluate import evaluate as evaluate_model
    from prodtype.ml.evaluate import write_report

    result = evaluate_model(load_bundle(bundle), data, image_cache_dir=image_cache_dir)
    write_report(result, report_dir)
    metrics: dict[str, Any] = result.to_dict()
    return metrics


def _score(ctx: LoopContext, bundle: Path, split: EvalSplit, report_dir: Path) -> dict[str, Any]:
    report_dir.mkdir(parents=True, exist_ok=True)
    if ctx.scorer is not None:
        metrics = ctx.scorer(bundle, split.eval, report_dir)
    else:
        metrics = score_bundle(bundle, split.eval, report_dir, ctx.settings.resolved_image_cache_dir)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    return metrics


def evaluate(ctx: LoopContext, run_dir: Path) -> PromotionDecision:
    """Score the candidate and the current champion on the evaluation set, and apply the promotion rule."""
    run_dir = Path(run_dir)
    state = read_state(run_dir)
    bundle = run_dir / _need(state, "bundle", "evaluate", "train")
    split = evaluation_split(ctx)
    if split.fingerprint != state.get("eval_fingerprint"):
        raise ConflictError("the evaluation set changed since the candidate was trained; train it again")
    candidate = _score(ctx, bundle, split, run_dir / "evaluation" / "candidate")
    champion_info = ctx.registry.champion()
    champion: dict[str, Any] | None = None
    if champion_info is not None:
        champion = _score(
            ctx, ctx.registry.local_bundle(champion_info.version), split, run_dir / "evaluation" / "champion"
        )
    decision = decide(candidate, champion, ctx.loop)
    write_state(
        run_dir,
        candidate_metrics={k: candidate[k] for k in ("weighted_f1", "macro_f1", "accuracy", "n")},
        champion_version=champion_info.version if champion_info else None,
        champion_metrics=(
            {k: champion[k] for k in ("weighted_f1", "macro_f1", "accuracy", "n")} if champion else None
        ),
        decision=decision.to_dict(),
    )
    return decision


def register(ctx: LoopContext, run_dir: Path, trigger: list[str] | None = None) -> ModelVersionInfo:
    """Log the run to MLflow (parameters, metrics, reports, the bundle) and register a new version."""
    run_dir = Path(run_dir)
    state = read_state(run_dir)
    if "version" in state:  # already registered by an earlier try of this step
        return ctx.registry.get(int(state["version"]))
    bundle = run_dir / _need(state, "bundle", "register", "train")
    decision = _need(state, "decision", "register", "evaluate")
    cand = state["candidate_metrics"]
    metrics = {f"eval_{k}": float(v) for k, v in cand.items() if k != "n"}
    if state.get("champion_metrics"):
        metrics["champion_eval_weighted_f1"] = float(state["champion_metrics"]["weighted_f1"])
        metrics["gain_weighted_f1"] = float(decision["gain"])
    per_class = json.loads((run_dir / "evaluation" / "candidate" / "metrics.json").read_text()).get(
        "per_class", {}
    )
    metrics.update({f"eval_f1_{code}": float(m["f1"]) for code, m in per_class.items()})
    params = {
        key: state.get(key)
        for key in (
            "base_rows",
            "base_image_only",
            "feedback_rows",
            "eval_rows",
            "input_fingerprint",
            "base_fingerprint",
            "eval_fingerprint",
            "shuffle_labels",
            "train_seconds",
            "champion_version",
            "reviewed_until",
        )
    }
    how = state.get("retrain") or {}
    params["retrain_mode"] = how.get(
        "mode", "full"
    )  # warm: TF-IDF vocabulary and fusion kept, see TrainConfig
    params["retrain_from"] = how.get("previous")
    params["prodtype_version"] = prodtype.__version__
    params["data_dir"] = str(ctx.settings.data_dir)
    params["train_config"] = json.dumps(ctx.train_config, default=str) if ctx.train_config else "default"
    feedback = state.get("feedback") or {}
    params["feedback_duplicates"] = feedback.get("duplicates", 0)
    params["feedback_rejected_excluded"] = feedback.get("rejected_excluded", 0)
    manifest = (
        json.loads((bundle / "manifest.json").read_text()) if (bundle / "manifest.json").is_file() else {}
    )
    version_tags = {
        "bundle_version": str(manifest.get("version", "")),
        "input_fingerprint": str(state.get("input_fingerprint")),
        "eval_fingerprint": str(state.get("eval_fingerprint")),
        "eval_weighted_f1": f"{cand['weighted_f1']:.4f}",
        "base_rows": str(state.get("base_rows")),
        "feedback_rows": str(state.get("feedback_rows")),
        "promotion": "pending",
        "promotion_reason": decision["reason"],
    }
    info = ctx.registry.log_and_register(
        bundle,
        run_name=run_dir.name,
        params=params,
        metrics=metrics,
        tags={"prodtype.trigger": "; ".join(trigger or state.get("trigger") or ["manual"])},
        artifacts={"evaluation": run_dir / "evaluation", "feedback": run_dir / "feedback" / "feedback.json"},
        version_tags=version_tags,
    )
    if state.get("reviewed_until"):
        ctx.registry.set_model_tag(WATERMARK_TAG, str(state["reviewed_until"]))
    write_state(run_dir, version=info.version, run_id=info.run_id)
    shutil.rmtree(bundle, ignore_errors=True)  # the registry holds it now
    _log_card(ctx, info.version)
    return info


def _log_card(ctx: LoopContext, version: int) -> None:
    """The version's model card, logged to its run; a card that cannot be written never fails the retrain
    (``GET /models/{version}/card`` builds it from the registry all the same)."""
    from prodtype.catalog import load_catalog
    from prodtype.loop.model_card import log_card

    try:
        log_card(ctx.registry, version, load_catalog(ctx.settings.categories_file))
    except Exception as exc:
        log.warning("could not log the model card of version %s: %s", version, exc)


def promote(ctx: LoopContext, run_dir: Path, actor: str | None = None) -> PromotionOutcome:
    """Apply the promotion rule to the registered candidate: champion, or challenger with the reason."""
    run_dir = Path(run_dir)
    state = read_state(run_dir)
    version = int(_need(state, "version", "promote", "register"))
    decision = dict(_need(state, "decision", "promote", "evaluate"))
    if ctx.loop.promotion_require_live and decision.get("champion_weighted_f1") is not None:
        # The evaluation set's decision stays in the state: running this step again later re-applies the
        # live rule to the reviews that have arrived since.
        live = live_comparison(ctx.sessions(), version)
        decision = with_live(PromotionDecision(**decision), live, ctx.loop).to_dict()
    current = ctx.registry.alias_version(CHAMPION)
    if current != state.get("champion_version") and current != version:
        decision["promote"] = False
        decision["reason"] = (
            f"not promoted: the champion changed during the run (scored against version "
            f"{state.get('champion_version')}, now {current}); retrain to compare with the new champion"
        )
    if decision["promote"] and current != version:
        ctx.registry.promote(version, reason=decision["reason"], actor=actor or "retrain")
        # Recorded in prodtype's database: running services serve only what is recorded there.
        PromotionLedger(ctx.sessions()).record(
            ctx.registry.model_name,
            "promote",
            version,
            previous=current,
            bundle=ctx.registry.local_bundle(version),
            actor=actor or "retrain",
            reason=decision["reason"],
        )
    elif not decision["promote"]:
        ctx.registry.mark_challenger(version, reason=decision["reason"])
    _follow_shadow(ctx, version, promoted=bool(decision["promote"]))
    _log_card(ctx, version)  # again, with the decision
    outcome = PromotionOutcome(
        version=version,
        promoted=bool(decision["promote"]),
        reason=decision["reason"],
        champion=ctx.registry.alias_version(CHAMPION),
    )
    write_state(run_dir, outcome=outcome.model_dump(mode="json"))
    return outcome


def _follow_shadow(ctx: LoopContext, version: int, *, promoted: bool) -> None:
    """A promoted version leaves the shadow; one that is not goes into it when the settings say so."""
    shadows = ShadowLedger(ctx.sessions())
    current = shadows.current(ctx.registry.model_name)
    if promoted:
        if current is not None and current.version == version:
            shadows.stop(ctx.registry.model_name, actor="retrain", reason=f"version {version} was promoted")
    elif ctx.loop.shadow_challenger and (current is None or current.version != version):
        shadows.start(
            ctx.registry.model_name,
            version,
            bundle=ctx.registry.local_bundle(version),
            actor="retrain",
            reason="not promoted: in shadow, its live accuracy is measured (PRODTYPE_SHADOW_CHALLENGER)",
        )


# The steps after the trigger's check, in order: the one table that `prodtype retrain --step NAME`, the API's
# retrain job (through run_all) and the Airflow DAG (one task per name) follow. Each takes the context, the
# run folder, shuffle_labels and progress, and returns what the command prints as JSON.
RunStep = Callable[[LoopContext, Path, bool, bool], Any]
RUN_STEPS: dict[str, RunStep] = {
    "export": lambda ctx, run_dir, _shuffle, _progress: export(ctx, run_dir),
    "train": lambda ctx, run_dir, shuffle, progress: {
        "bundle": str(train(ctx, run_dir, shuffle_labels=shuffle, progress=progress))
    },
    "evaluate": lambda ctx, run_dir, _shuffle, _progress: evaluate(ctx, run_dir).to_dict(),
    "register": lambda ctx, run_dir, _shuffle, _progress: register(ctx, run_dir).to_dict(),
    "promote": lambda ctx, run_dir, _shuffle, _progress: promote(ctx, run_dir).model_dump(mode="json"),
}
if tuple(RUN_STEPS) != RUN_STEP_NAMES:  # one list of steps: the command line offers the names of steps.py
    raise RuntimeError(f"RUN_STEPS {tuple(RUN_STEPS)} differ from prodtype.loop.steps {RUN_STEP_NAMES}")


def run_all(
    ctx: LoopContext,
    *,
    force: bool = False,
    run_dir: Path | None = None,
    shuffle_labels: bool = False,
    progress: bool = False,
    on_step: Callable[[str], object] | None = None,
) -> RetrainResult:
    """Every step in one process. Without ``force`` nothing is trained unless the trigger fires."""
    status = check(ctx)
    if not (force or status.should_retrain):
        return RetrainResult(retrained=False, reason="the trigger did not fire", trigger=status)
    run_dir = run_dir or new_run_dir(ctx)
    write_state(run_dir, trigger=status.reasons or ["forced"], started_at=datetime.now(UTC).isoformat())
    for step, run_step in RUN_STEPS.items():
        if on_step is not None:
            on_step(step)
        run_step(ctx, run_dir, shuffle_labels, progress)
    state = read_state(run_dir)
    outcome = PromotionOutcome.model_validate(state["outcome"])
    return RetrainResult(
        retrained=True,
        run_dir=str(run_dir),
        version=outcome.version,
        promoted=outcome.promoted,
        reason=outcome.reason,
        champion=outcome.champion,
        candidate_metrics=state["candidate_metrics"],
        champion_metrics=state.get("champion_metrics"),
        feedback_rows=state.get("feedback_rows"),
        base_rows=state.get("base_rows"),
        trigger=status,
    )
