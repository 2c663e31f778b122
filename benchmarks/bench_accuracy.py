"""Accuracy benchmark: stratified 5-fold cross-validation on the challenge sample, all in one run.

(a) TF-IDF + LinearSVC on text, the original project's best model (the baseline);
(b) our text branch (TF-IDF SVM + sentence embeddings, fused as for a product without a photo);
(c) our image branch alone (products with a photo only);
(d) the fused model.
Also times one full training on the whole sample with a cold and with a warm feature cache.
Prints a table and writes it to benchmarks/results/accuracy.{md,json}.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC

from prodtype.data.challenge import Dataset, image_paths, load_dataset
from prodtype.ml.embeddings import encode_cached, get_embedder
from prodtype.ml.image import ImageEncoder
from prodtype.ml.train import TrainConfig, fit_model, train_model

ROOT = Path(__file__).resolve().parent


def _subset(ds: Dataset, idx: np.ndarray) -> Dataset:
    return Dataset(products=ds.products.iloc[idx], image_only=ds.image_only, fingerprint=ds.fingerprint)


def _f1(y: np.ndarray, pred: np.ndarray, average: str = "weighted") -> float:
    return float(f1_score(y, pred, average=average, zero_division=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "rakuten")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=ROOT.parent / ".cache" / "bench-features")
    parser.add_argument("--skip-timing", action="store_true", help="skip the cold/warm full-training timings")
    args = parser.parse_args()

    d = args.data
    ds = load_dataset(d / "X_train.csv", d / "Y_train.csv", d / "image_train", d / "image_only_train.csv")
    y = ds.products["label"].to_numpy(dtype=np.int64)
    texts = ds.products["text"].tolist()
    cfg = TrainConfig(seed=args.seed)
    rows: dict[str, dict[str, list[float]]] = {k: {"wf1": [], "mf1": [], "time": []} for k in "abcd"}
    skf = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)
    for fold, (tr, te) in enumerate(skf.split(np.zeros(len(y)), y), start=1):
        t0 = time.perf_counter()
        vec = TfidfVectorizer()
        base = LinearSVC().fit(vec.fit_transform([texts[i] for i in tr]), y[tr])
        pred_a = base.predict(vec.transform([texts[i] for i in te]))
        t_a = time.perf_counter() - t0

        t0 = time.perf_counter()
        result = fit_model(
            _subset(ds, tr),
            cfg,
            image_cache_dir=args.cache_dir / "image",
            text_cache_dir=args.cache_dir / "text",
            progress=False,
        )
        t_d = time.perf_counter() - t0
        model = result.model

        test = ds.products.iloc[te]
        feats, has_img, _ = ImageEncoder().encode_files(image_paths(test), args.cache_dir / "image")
        emb = encode_cached(
            get_embedder("use", None, cfg.embed_max_chars), test["text"].tolist(), args.cache_dir / "text"
        )
        b = model.branches(test["text"].tolist(), emb, feats, has_img)
        classes = model.classes
        no_img = np.zeros(len(te), bool)
        pred_b = classes[model.fuse(b, no_img).argmax(1)]
        pred_c = classes[b.image_logp[has_img].argmax(1)]
        pred_d = classes[model.fuse(b, has_img).argmax(1)]
        yt = y[te]
        for key, pred, truth, secs in (
            ("a", pred_a, yt, t_a),
            ("b", pred_b, yt, t_d),
            ("c", pred_c, yt[has_img], t_d),
            ("d", pred_d, yt, t_d),
        ):
            rows[key]["wf1"].append(_f1(truth, pred))
            rows[key]["mf1"].append(_f1(truth, pred, "macro"))
            rows[key]["time"].append(secs)
        print(
            f"fold {fold}: baseline {rows['a']['wf1'][-1]:.4f}  text {rows['b']['wf1'][-1]:.4f}  "
            f"image {rows['c']['wf1'][-1]:.4f} (n={int(has_img.sum())})  fused {rows['d']['wf1'][-1]:.4f}  "
            f"train {t_d:.0f}s",
            flush=True,
        )

    names = {
        "a": "(a) baseline: TF-IDF + LinearSVC (text)",
        "b": "(b) text branch: TF-IDF SVM + USE, fused",
        "c": "(c) image branch: EfficientNet-Lite0 + LR (rows with image)",
        "d": "(d) fused model (text + image)",
    }
    base_mean = statistics.mean(rows["a"]["wf1"])
    n_img = int(ds.products["image_path"].notna().sum())
    lines = [
        f"Stratified {args.folds}-fold CV on {d} ({len(y)} products, {n_img} "
        f"with image, +{len(ds.image_only)} image-only for the image branch); {platform.node()}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}",
        "",
        "| model | weighted F1 (mean ± sd) | Δ vs (a) | macro F1 | train s/fold |",
        "|---|---|---|---|---|",
    ]
    summary = {}
    for k in "abcd":
        w, m, t = rows[k]["wf1"], rows[k]["mf1"], rows[k]["time"]
        mean, sd = statistics.mean(w), statistics.stdev(w) if len(w) > 1 else 0.0
        summary[k] = {"name": names[k], "weighted_f1": w, "macro_f1": m, "train_s": t}
        lines.append(
            f"| {names[k]} | {mean:.4f} ± {sd:.4f} | {mean - base_mean:+.4f} | {statistics.mean(m):.4f} | "
            f"{statistics.median(t):.1f} |"
        )
    if not args.skip_timing:
        timings = {}
        with tempfile.TemporaryDirectory() as tmp:
            for label in ("cold", "warm"):
                t0 = time.perf_counter()
                train_model(
                    ds,
                    Path(tmp) / label,
                    cfg,
                    image_cache_dir=Path(tmp) / "img",
                    text_cache_dir=Path(tmp) / "txt",
                    progress=False,
                )
                timings[label] = time.perf_counter() - t0
        summary["full_training_s"] = timings
        lines += [
            "",
            f"Full training on the sample: cold caches {timings['cold']:.0f} s, "
            f"warm caches {timings['warm']:.0f} s (2-core machine).",
        ]
    text = "\n".join(lines)
    print("\n" + text)
    out = ROOT / "results"
    out.mkdir(exist_ok=True)
    (out / "accuracy.md").write_text(text + "\n")
    (out / "accuracy.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
