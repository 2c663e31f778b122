"""Evaluation with the official metric (weighted F1) and the figures people look at, plus a report."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from prodtype.data.challenge import Dataset, image_paths
from prodtype.ml.bundle import ModelBundle
from prodtype.ml.fusion import expected_calibration_error


@dataclass
class Scores:
    n: int
    weighted_f1: float | None
    macro_f1: float | None
    accuracy: float | None


@dataclass
class EvaluationResult:
    weighted_f1: float
    macro_f1: float
    accuracy: float
    n: int
    per_class: dict[str, dict[str, float]]
    with_image: Scores
    text_only: Scores
    ece: float
    model_version: str = ""
    labels: list[int] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)

    def to_dict(self, with_confusion: bool = False) -> dict[str, Any]:
        out = asdict(self)
        if not with_confusion:
            out.pop("confusion")
            out.pop("labels")
        return out


def _scores(y: np.ndarray, pred: np.ndarray) -> Scores:
    if len(y) == 0:
        return Scores(0, None, None, None)
    return Scores(
        len(y),
        float(f1_score(y, pred, average="weighted", zero_division=0)),
        float(f1_score(y, pred, average="macro", zero_division=0)),
        float(accuracy_score(y, pred)),
    )


def score(
    y: np.ndarray, pred: np.ndarray, proba: np.ndarray, classes: np.ndarray, has_image: np.ndarray
) -> EvaluationResult:
    """All metrics from true codes, predicted codes and probabilities (columns in ``classes`` order)."""
    labels = np.unique(np.concatenate([y, pred]))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class = {
        str(int(c)): {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, c in enumerate(labels)
    }
    overall = _scores(y, pred)
    known = np.isin(y, classes)
    y_idx = np.searchsorted(classes, y[known])
    return EvaluationResult(
        weighted_f1=overall.weighted_f1 or 0.0,
        macro_f1=overall.macro_f1 or 0.0,
        accuracy=overall.accuracy or 0.0,
        n=overall.n,
        per_class=per_class,
        with_image=_scores(y[has_image], pred[has_image]),
        text_only=_scores(y[~has_image], pred[~has_image]),
        ece=expected_calibration_error(proba[known], y_idx) if known.any() else 0.0,
        labels=[int(c) for c in labels],
        confusion=confusion_matrix(y, pred, labels=labels).tolist(),
    )


def predict_dataset(
    bundle: ModelBundle, dataset: Dataset, *, image_cache_dir: Path | None = None, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (n, n_classes) for every product of ``dataset``, and which had a usable image."""
    products = dataset.products
    feats, has_image, _ = bundle.encoder.encode_files(
        image_paths(products), image_cache_dir, progress=progress
    )
    return bundle.predict_proba(products["text"].tolist(), feats, has_image, progress=progress), has_image


def evaluate(
    bundle: ModelBundle, dataset: Dataset, *, image_cache_dir: Path | None = None, progress: bool = False
) -> EvaluationResult:
    labelled = dataset.products["label"].notna()
    if not labelled.all():
        raise ValueError("evaluation needs a label for every product (pass the Y file)")
    proba, has_image = predict_dataset(bundle, dataset, image_cache_dir=image_cache_dir, progress=progress)
    classes = np.asarray(bundle.classes)
    y = dataset.products["label"].to_numpy(dtype=np.int64)
    result = score(y, classes[proba.argmax(axis=1)], proba, classes, has_image)
    result.model_version = bundle.version
    return result


def write_report(result: EvaluationResult, out_dir: Path, names: dict[int, str] | None = None) -> Path:
    """``report.md`` with a confusion-matrix PNG and a per-class F1 chart; returns the markdown's path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = names or {}
    labels = result.labels
    cm = np.asarray(result.confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(11, 9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), [str(c) for c in labels], rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), [f"{c} {names.get(c, '')}"[:32] for c in labels], fontsize=7)
    ax.set_xlabel("predicted prdtypecode")
    ax.set_ylabel("true prdtypecode")
    ax.set_title(f"Confusion matrix (row-normalised), weighted F1 {result.weighted_f1:.3f}")
    fig.colorbar(im, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(out_dir / "confusion_matrix.png", dpi=110)
    plt.close(fig)

    order = sorted(result.per_class, key=lambda c: result.per_class[c]["f1"])
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.barh([f"{c} {names.get(int(c), '')}"[:36] for c in order], [result.per_class[c]["f1"] for c in order])
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title("F1 per product type")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "per_class_f1.png", dpi=110)
    plt.close(fig)

    def fmt(v: float | None) -> str:
        return "n/a" if v is None else f"{v:.4f}"

    lines = [
        f"# Evaluation of model {result.model_version}",
        "",
        "| subset | n | weighted F1 | macro F1 | accuracy |",
        "|---|---|---|---|---|",
        f"| all | {result.n} | {fmt(result.weighted_f1)} | {fmt(result.macro_f1)} | {fmt(result.accuracy)} |",
        f"| with image | {result.with_image.n} | {fmt(result.with_image.weighted_f1)} | "
        f"{fmt(result.with_image.macro_f1)} | {fmt(result.with_image.accuracy)} |",
        f"| text only | {result.text_only.n} | {fmt(result.text_only.weighted_f1)} | "
        f"{fmt(result.text_only.macro_f1)} | {fmt(result.text_only.accuracy)} |",
        "",
        f"Expected calibration error of the confidence: {result.ece:.4f}",
        "",
        "![confusion matrix](confusion_matrix.png)",
        "",
        "![per-class F1](per_class_f1.png)",
        "",
        "| prdtypecode | category | precision | recall | F1 | support |",
        "|---|---|---|---|---|---|",
    ]
    for c, m in sorted(result.per_class.items(), key=lambda kv: int(kv[0])):
        lines.append(
            f"| {c} | {names.get(int(c), '')} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
            f"{m['support']} |"
        )
    path = out_dir / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (out_dir / "metrics.json").write_text(json.dumps(result.to_dict(with_confusion=True), indent=2))
    return path
