"""Accuracy benchmark: stratified k-fold cross-validation on the challenge sample, all rows on the same folds.

Rows, each scored on the held-out fold of every split, for each fold seed:

- (a) the strong classical baseline: sublinear TF-IDF of word 1-2-grams + ``char_wb`` 2-5-grams (min_df=2),
  LinearSVC C=0.5 (the original project's best text model, tuned);
- (a') the weak baseline: ``TfidfVectorizer()`` defaults + LinearSVC (what this table used to compare to);
- for each model configuration (the default, and any ``--variant``): its text branches alone (fused as for
  a product without a photo), its image branch alone (products with a photo), and the fused model.

It prints, per row, the weighted F1 (the official metric) as mean ± sd over all folds of all seeds, the
mean per seed, the paired difference to the strong baseline (mean ± sd of the per-fold differences: a
gain smaller than its sd is noise), macro F1 and training seconds per fold; and writes the table to
``benchmarks/results/accuracy.md`` (and the per-fold figures to ``accuracy.json``).

    python benchmarks/bench_accuracy.py [--seeds 0 1] [--folds 5]
        [--variant 'float={"embedder": "use", "image_encoder": "lite0"}'] [--no-default]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_union
from sklearn.svm import LinearSVC

from prodtype.data.challenge import Dataset, image_paths, load_dataset
from prodtype.ml.embeddings import encode_cached, get_embedder
from prodtype.ml.image import ImageEncoder
from prodtype.ml.train import TrainConfig, fit_model

ROOT = Path(__file__).resolve().parent


def _subset(ds: Dataset, idx: np.ndarray) -> Dataset:
    return Dataset(products=ds.products.iloc[idx], image_only=ds.image_only, fingerprint=ds.fingerprint)


def _f1(y: np.ndarray, pred: np.ndarray, average: str = "weighted") -> float:
    return float(f1_score(y, pred, average=average, zero_division=0))


def strong_baseline() -> Any:
    words = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2)
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)
    return make_union(words, chars)


@dataclass
class Row:
    name: str
    wf1: dict[int, list[float]] = field(default_factory=dict)  # seed -> per-fold weighted F1
    mf1: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def add(self, seed: int, truth: np.ndarray, pred: np.ndarray, secs: float) -> None:
        self.wf1.setdefault(seed, []).append(_f1(truth, pred))
        self.mf1.append(_f1(truth, pred, "macro"))
        self.seconds.append(secs)

    @property
    def all(self) -> list[float]:
        return [v for seed in sorted(self.wf1) for v in self.wf1[seed]]


def error_analysis(y: np.ndarray, pred: np.ndarray, config: str, seed: int, data: Path) -> list[str]:
    """The 10 class pairs confused most often and the 6 weakest classes, from out-of-fold predictions."""
    import pandas as pd

    names: dict[int, str] = {}
    categories = data / "categories.csv"
    if categories.exists():
        frame = pd.read_csv(categories)
        names = {int(c): str(n) for c, n in zip(frame.iloc[:, 0], frame.iloc[:, 1], strict=True)}
    wrong = y != pred
    directed: dict[tuple[int, int], int] = {}
    for a, b in zip(y[wrong].tolist(), pred[wrong].tolist(), strict=True):
        directed[(a, b)] = directed.get((a, b), 0) + 1
    pairs: dict[tuple[int, int], int] = {}
    for (a, b), count in directed.items():
        key = (min(a, b), max(a, b))
        pairs[key] = pairs.get(key, 0) + count
    out = [
        f"Error analysis ({config}, fused, out-of-fold on fold seed {seed}): {int(wrong.sum())} of {len(y)} "
        "products wrong. The 10 most confused pairs (a→b / b→a counts):",
        "",
        "| pair | errors | a→b / b→a |",
        "|---|---|---|",
    ]

    def label(c: int) -> str:
        return f"{c} {names.get(c, '')}".strip()

    for (a, b), count in sorted(pairs.items(), key=lambda kv: -kv[1])[:10]:
        out.append(
            f"| {label(a)} ↔ {label(b)} | {count} | {directed.get((a, b), 0)} / {directed.get((b, a), 0)} |"
        )
    classes = np.unique(y)
    f1 = f1_score(y, pred, labels=classes, average=None, zero_division=0)
    worst = ", ".join(
        f"{label(int(classes[i]))} {f1[i]:.2f} ({int((y == classes[i]).sum())} products)"
        for i in np.argsort(f1)[:6]
    )
    return [*out, "", f"Weakest classes (F1): {worst}."]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "rakuten")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="fold seeds")
    parser.add_argument("--cache-dir", type=Path, default=ROOT.parent / ".cache" / "bench-features")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME=JSON of TrainConfig fields, another model to score",
    )
    parser.add_argument("--no-default", action="store_true", help="score only the --variant configurations")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "accuracy.md")
    parser.add_argument(
        "--timing", action="store_true", help="also time one full training, cold and warm caches"
    )
    args = parser.parse_args()

    d = args.data
    ds = load_dataset(d / "X_train.csv", d / "Y_train.csv", d / "image_train", d / "image_only_train.csv")
    y = ds.products["label"].to_numpy(dtype=np.int64)
    texts = ds.products["text"].tolist()
    configs: dict[str, dict[str, Any]] = {} if args.no_default else {"default": {}}
    for spec in args.variant:
        name, _, raw = spec.partition("=")
        configs[name] = json.loads(raw)
    rows: dict[str, Row] = {
        "strong": Row("(a) strong baseline: TF-IDF words 1-2 + chars 2-5, LinearSVC C=0.5 (text)"),
        "weak": Row("(a') weak baseline: TfidfVectorizer() defaults + LinearSVC (text)"),
    }
    for name in configs:
        rows[f"{name}:text"] = Row(f"{name}: text branches, fused as without a photo")
        rows[f"{name}:image"] = Row(f"{name}: image branch alone (rows with a photo)")
        rows[f"{name}:fused"] = Row(f"{name}: fused model (text + photo)")

    first_config = next(iter(configs), None)
    oof_pred = np.zeros(len(y), dtype=np.int64)  # the first configuration's fused predictions, first seed
    for seed in args.seeds:
        skf = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=seed)
        for fold, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y), start=1):
            yt = y[te]
            train_texts, test_texts = [texts[i] for i in tr], [texts[i] for i in te]
            for key, vectorizer, c in (("strong", strong_baseline(), 0.5), ("weak", TfidfVectorizer(), 1.0)):
                t0 = time.perf_counter()
                svm = LinearSVC(C=c).fit(vectorizer.fit_transform(train_texts), y[tr])
                rows[key].add(
                    seed, yt, svm.predict(vectorizer.transform(test_texts)), time.perf_counter() - t0
                )
            line = f"seed {seed} fold {fold}: strong {rows['strong'].wf1[seed][-1]:.4f}"
            for name, overrides in configs.items():
                cfg = TrainConfig(seed=seed, **overrides)
                t0 = time.perf_counter()
                result = fit_model(
                    _subset(ds, tr),
                    cfg,
                    image_cache_dir=args.cache_dir / "image",
                    text_cache_dir=args.cache_dir / "text",
                    progress=False,
                )
                secs = time.perf_counter() - t0
                model = result.model
                test = ds.products.iloc[te]
                encoder = ImageEncoder(name=cfg.image_encoder)
                feats, has_img, _ = encoder.encode_files(image_paths(test), args.cache_dir / "image")
                emb = None
                if cfg.embedder:
                    embedder = get_embedder(cfg.embedder, None, cfg.embed_max_chars)
                    emb = encode_cached(embedder, test_texts, args.cache_dir / "text")
                b = model.branches(test_texts, emb, feats, has_img)
                classes = model.classes
                rows[f"{name}:text"].add(
                    seed, yt, classes[model.fuse(b, np.zeros(len(te), bool)).argmax(1)], secs
                )
                rows[f"{name}:image"].add(seed, yt[has_img], classes[b.image_logp[has_img].argmax(1)], secs)
                fused_pred = classes[model.fuse(b, has_img).argmax(1)]
                rows[f"{name}:fused"].add(seed, yt, fused_pred, secs)
                if name == first_config and seed == args.seeds[0]:
                    oof_pred[te] = fused_pred
                line += f"  {name} {rows[f'{name}:fused'].wf1[seed][-1]:.4f} ({secs:.0f}s)"
            print(line, flush=True)

    strong = rows["strong"].all
    n_img = int(ds.products["image_path"].notna().sum())
    lines = [
        f"Stratified {args.folds}-fold CV on the sample ({len(y)} products, {n_img} with a photo, "
        f"+{len(ds.image_only)} image-only photos for the image branch), fold seeds {args.seeds}; "
        f"{platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| model | weighted F1 (mean ± sd, all folds) | per seed | Δ vs (a), paired (mean ± sd) | macro F1 "
        "| train s/fold |",
        "|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {"configs": configs, "seeds": args.seeds, "folds": args.folds}
    for key, row in rows.items():
        values = row.all
        per_seed = " / ".join(f"{statistics.mean(row.wf1[s]):.4f}" for s in sorted(row.wf1))
        if key.endswith(":image"):
            delta = "(other rows)"
        else:
            diffs = [a - b for a, b in zip(values, strong, strict=True)]
            delta = f"{statistics.mean(diffs):+.4f} ± {statistics.stdev(diffs) if len(diffs) > 1 else 0:.4f}"
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(
            f"| {row.name} | {statistics.mean(values):.4f} ± {spread:.4f} | {per_seed} | {delta} "
            f"| {statistics.mean(row.mf1):.4f} | {statistics.median(row.seconds):.1f} |"
        )
        summary[key] = {"name": row.name, "weighted_f1": row.wf1, "macro_f1": row.mf1, "train_s": row.seconds}
    if args.timing:
        timings = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label in ("cold", "warm"):
                t0 = time.perf_counter()
                fit_model(
                    ds,
                    TrainConfig(),
                    image_cache_dir=Path(tmp) / "i",
                    text_cache_dir=Path(tmp) / "t",
                    progress=False,
                )
                timings[label] = time.perf_counter() - t0
        summary["full_training_s"] = timings
        lines += [
            "",
            f"Full training on the sample: cold caches {timings['cold']:.0f} s, "
            f"warm {timings['warm']:.0f} s.",
        ]
    if first_config is not None:
        lines += ["", *error_analysis(y, oof_pred, first_config, args.seeds[0], args.data)]
    text = "\n".join(lines)
    print("\n" + text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
