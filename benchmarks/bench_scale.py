"""Scale: cold training, warm retraining and bulk prediction against the number of products N.

Builds a synthetic data set in the challenge layout from the development sample, then, for each N:

- **cold training**: ``prodtype train`` on N products with an empty feature cache (a new user's first run):
  wall time, the time of each stage (from the bundle's training report) and the peak resident memory of the
  training process (``wait4``'s ``ru_maxrss``);
- **warm retraining**: ``prodtype train --warm-from <the cold model>`` on the same N products plus 2,000 new
  ones, on the caches the cold run left: what a retrain with reviewers' corrections does (``auto``: warm from
  20,000 products, full below; the mode is in the table); ``--full-retrain`` also times it in full;
- **bulk prediction**: ``prodtype predict-batch`` on ``--predict`` unseen products with their photos and an
  empty cache: products per second.

It prints a table, fits ``time = a * N^b`` per stage (b = 1: linear) and extrapolates to ``--target``
(84,916, the full challenge data), clearly labelled as extrapolated; it writes ``scale.json`` and a plot
``scale.png`` (time and memory against N) into ``--out``.

The synthetic products: the class of each is drawn from the full data's class mix (``Y_train_CVw08PX.csv``);
its title is the first half of one sample title and the second half of another of the same class, its
description one of the same class; its photo a random crop (70-100 % of the side) of a sample photo of the
same class, resized to 500x500 and re-encoded at a random JPEG quality, so that no two files share bytes
(the feature cache keys on the bytes: duplicates would flatter warm and cold runs alike).

    python benchmarks/bench_scale.py --sizes 10000 40000 84916 [--data ../shared/data/rakuten] [--out DIR]

``--compare-ngrams N`` only times the TF-IDF features and the SVM fit on N synthetic texts (no photos) for
the character n-grams within words (``char_wb``, the default) and across spaces (``char``), alternating.

``--compare-embedders N`` only times what the French word vectors add on N synthetic texts: computing them
(``fr-vectors+title``) and the embedding head's LDA fit on 1,624 dimensions against 1,024 (the sentence
vectors' part is random here: an LDA fit's time depends on the shapes, not on the values).

The products are built once for the largest N (plus the retrain and prediction sets) and the smaller sets are
prefixes of it. Building the full size takes a while (about 4 ms a photo per core).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import subprocess
import sys
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PRODTYPE_DATA_DIR", REPO.parent / "shared" / "data" / "rakuten"))
RETRAIN_NEW = 2000
STAGES = ("image_features", "text_features", "sentence_embeddings", "out_of_fold", "fusion", "final_fit")


# -- the synthetic data set ---------------------------------------------------------------------------------
def _class_pools(data: Path) -> tuple[dict[int, list[tuple[str, str]]], dict[int, list[Path]], pd.Series]:
    x = pd.read_csv(data / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(data / "Y_train.csv", index_col=0)["prdtypecode"]
    texts: dict[int, list[tuple[str, str]]] = defaultdict(list)
    photos: dict[int, list[Path]] = defaultdict(list)
    for idx, row in x.iterrows():
        label = int(y[idx])
        texts[label].append((str(row["designation"]), str(row["description"])))
        photo = data / "image_train" / f"image_{row['imageid']}_product_{row['productid']}.jpg"
        if photo.is_file():
            photos[label].append(photo)
    only = data / "image_only_train.csv"
    if only.is_file():
        for row in pd.read_csv(only).itertuples():
            photo = data / "image_train" / f"image_{row.imageid}_product_{row.productid}.jpg"
            if photo.is_file():
                photos[int(row.prdtypecode)].append(photo)
    mix = pd.read_csv(data / "Y_train_CVw08PX.csv", index_col=0)["prdtypecode"].value_counts(normalize=True)
    mix = mix[[c for c in mix.index if c in texts]]
    return texts, photos, mix / mix.sum()


def _photo(job: tuple[str, str, int]) -> None:
    source, target, seed = job
    rng = random.Random(seed)
    img = Image.open(source).convert("RGB")
    side = rng.randint(int(0.7 * min(img.size)), min(img.size))
    x, y = rng.randint(0, img.width - side), rng.randint(0, img.height - side)
    img = img.crop((x, y, x + side, y + side)).resize((500, 500), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=rng.randint(80, 95))
    Path(target).write_bytes(buf.getvalue())


def _mixed_title(t1: str, t2: str) -> str:
    """The first half of one title's words and the second half of another's."""
    w1, w2 = t1.split(), t2.split()
    return " ".join(w1[: max(1, len(w1) // 2)] + w2[len(w2) // 2 :])


def synthetic_texts(data: Path, n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """The texts (title and description joined as the model joins them) and labels of ``n`` synthetic
    products made as :func:`build_products` makes them, without their photos."""
    from prodtype.data.text import join_text

    texts, _, mix = _class_pools(data)
    rng = np.random.default_rng(seed)
    labels = rng.choice(mix.index.to_numpy(), size=n, p=mix.to_numpy())
    out = []
    for label in labels:
        pool = texts[int(label)]
        (t1, d1), (t2, _) = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        out.append(join_text(_mixed_title(t1, t2), d1))
    return out, labels


def compare_ngrams(data: Path, n: int, seed: int, repeats: int) -> list[dict[str, Any]]:
    """The TF-IDF features and the SVM fit, the model's own steps, for the character n-grams within words
    (``char_wb``, the default) and across spaces (``char``) on ``n`` synthetic texts, alternating: seconds,
    features and the matrix's size; prints a table and returns its rows."""
    import dataclasses

    from prodtype.ml.heads import fit_svm
    from prodtype.ml.text import TfidfFeatures
    from prodtype.ml.train import TrainConfig

    texts, labels = synthetic_texts(data, n, seed)
    classes = np.unique(labels)
    cfg = TrainConfig()
    rows = []
    print(
        "| N | run | char n-grams | TF-IDF fit s | transform s (2 processes) | SVM fit s | char vocabulary "
        "| non-zeros per text | matrix MB | load |\n|---|---|---|---|---|---|---|---|---|---|"
    )
    for rep in range(repeats):
        for analyzer in ("char_wb", "char"):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            features = TfidfFeatures(dataclasses.replace(cfg.tfidf, char_analyzer=analyzer)).fit(texts)
            t1 = time.perf_counter()
            x = features.transform_many(texts, workers=2)
            t2 = time.perf_counter()
            fit_svm(x, labels, classes, cfg.svm_c, cfg.seed)
            t3 = time.perf_counter()
            assert features.char is not None
            row = {
                "n": n,
                "run": rep + 1,
                "analyzer": analyzer,
                "fit_s": t1 - t0,
                "transform_s": t2 - t1,
                "svm_s": t3 - t2,
                "char_vocabulary": len(features.char.vocabulary_),
                "nnz_per_text": x.nnz / n,
                "matrix_mb": (x.data.nbytes + x.indices.nbytes) / 2**20,
                "load": load,
            }
            rows.append(row)
            print(
                f"| {n:,} | {rep + 1} | {analyzer} | {row['fit_s']:.1f} | {row['transform_s']:.1f} | "
                f"{row['svm_s']:.1f} | {row['char_vocabulary']:,} | {row['nnz_per_text']:.0f} | "
                f"{row['matrix_mb']:.0f} | {load:.1f} |",
                flush=True,
            )
    return rows


def compare_embedders(data: Path, n: int, seed: int, repeats: int) -> list[dict[str, Any]]:
    """The word vectors of ``n`` synthetic texts and the embedding head's fit with and without them
    (1,624 against 1,024 dimensions), alternating: seconds and the input's size; prints a table and returns
    its rows."""
    from prodtype.ml.embeddings import get_embedder
    from prodtype.ml.heads import fit_lda

    texts, labels = synthetic_texts(data, n, seed)
    classes = np.unique(labels)
    t0 = time.perf_counter()
    words_embedder = get_embedder("fr-vectors+title")
    load_s = time.perf_counter() - t0
    sentence = np.random.default_rng(seed).normal(size=(n, 1024)).astype(np.float32)
    rows = []
    print(
        f"word vectors loaded in {load_s:.2f} s\n"
        "| N | run | input | word vectors s | LDA fit s | input MB | load |\n|---|---|---|---|---|---|---|"
    )
    for rep in range(repeats):
        t1 = time.perf_counter()
        words = words_embedder.encode(texts)
        words_s = time.perf_counter() - t1
        for name, x in (("1,024-d (before)", sentence), ("1,624-d (default)", np.hstack([sentence, words]))):
            load = os.getloadavg()[0]
            t2 = time.perf_counter()
            fit_lda(x, labels, classes)
            row = {
                "n": n,
                "run": rep + 1,
                "input": name,
                "words_s": words_s if x.shape[1] > 1024 else 0.0,
                "lda_s": time.perf_counter() - t2,
                "input_mb": x.nbytes / 2**20,
                "load": load,
            }
            rows.append(row)
            print(
                f"| {n:,} | {rep + 1} | {name} | {row['words_s']:.1f} | {row['lda_s']:.1f} | "
                f"{row['input_mb']:.0f} | {load:.1f} |",
                flush=True,
            )
    return rows


def build_products(data: Path, n: int, out: Path, seed: int = 0, workers: int = 2) -> pd.DataFrame:
    """``n`` synthetic labelled products (index, designation, description, productid, imageid, label), with
    their photos in ``out/image_train``; reused when ``out`` already holds at least ``n``."""
    table = out / "products.csv"
    if table.is_file():
        have = pd.read_csv(table, index_col=0, keep_default_na=False)
        if len(have) >= n:
            return have.iloc[:n]
    texts, photos, mix = _class_pools(data)
    all_photos = [p for ps in photos.values() for p in ps]
    rng = np.random.default_rng(seed)
    labels = rng.choice(mix.index.to_numpy(), size=n, p=mix.to_numpy())
    rows, jobs = [], []
    (out / "image_train").mkdir(parents=True, exist_ok=True)
    for i, label in enumerate(labels):
        pool = texts[int(label)]
        (t1, d1), (t2, _) = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        title = _mixed_title(t1, t2)
        productid, imageid = 5_000_000_000 + i, 2_000_000_000 + i
        rows.append((i, title, d1, productid, imageid, int(label)))
        sources = photos.get(int(label)) or all_photos
        target = out / "image_train" / f"image_{imageid}_product_{productid}.jpg"
        if not target.is_file():
            jobs.append((str(sources[rng.integers(len(sources))]), str(target), seed * 10_000_000 + i))
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool_:
        list(pool_.map(_photo, jobs, chunksize=64))
    if jobs:
        print(f"built {len(jobs)} photos in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    frame = pd.DataFrame(
        rows, columns=["index", "designation", "description", "productid", "imageid", "label"]
    )
    frame = frame.set_index("index")
    frame.to_csv(table)
    return frame


def write_split(products: pd.DataFrame, folder: Path, name: str) -> tuple[Path, Path]:
    """The challenge's X and Y files for ``products``."""
    folder.mkdir(parents=True, exist_ok=True)
    x_path, y_path = folder / f"X_{name}.csv", folder / f"Y_{name}.csv"
    x = products[["designation", "description", "productid", "imageid"]].copy()
    x.index.name = None
    x.to_csv(x_path, quoting=csv.QUOTE_MINIMAL)
    y = products[["label"]].rename(columns={"label": "prdtypecode"})
    y.index.name = None
    y.to_csv(y_path)
    return x_path, y_path


# -- measuring ----------------------------------------------------------------------------------------------
def run_measured(args: list[str], env: dict[str, str], log: Path) -> tuple[float, float]:
    """Run a command; returns (wall seconds, peak resident memory of the process in MB)."""
    start = time.perf_counter()
    with log.open("w") as fh:
        proc = subprocess.Popen(args, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(args)} failed; see {log}")
    return wall, usage.ru_maxrss / 1024


def measure(
    n: int,
    products: pd.DataFrame,
    work: Path,
    predict_n: int,
    env: dict[str, str],
    full_retrain: bool = False,
) -> dict[str, Any]:
    images = work.parent / "image_train"
    cli = [sys.executable, "-c", "from prodtype.cli import app; app()"]
    folder = work / f"n{n}"
    cache = folder / "cache"
    x, y = write_split(products.iloc[:n], folder, "cold")
    load = os.getloadavg()[0]
    cold_s, cold_mb = run_measured(
        [*cli, "train", "--x", str(x), "--y", str(y), "--images", str(images), "--out", str(folder / "cold"),
         "--cache-dir", str(cache), "--overwrite"],
        env, folder / "cold.log",
    )  # fmt: skip
    report = json.loads((folder / "cold" / "training_report.json").read_text())
    x, y = write_split(products.iloc[: n + RETRAIN_NEW], folder, "warm")
    retrain = [*cli, "train", "--x", str(x), "--y", str(y), "--images", str(images),
               "--cache-dir", str(cache), "--overwrite"]  # fmt: skip
    # what the loop does by default: start from the model it replaces (TrainConfig.retrain="auto")
    warm_s, warm_mb = run_measured(
        [*retrain, "--out", str(folder / "warm"), "--warm-from", str(folder / "cold")],
        env,
        folder / "warm.log",
    )
    warm_report = json.loads((folder / "warm" / "training_report.json").read_text())
    full: dict[str, Any] = {}
    if full_retrain:  # the same retrain in full, for comparison
        full_s, full_mb = run_measured([*retrain, "--out", str(folder / "full")], env, folder / "full.log")
        full_report = json.loads((folder / "full" / "training_report.json").read_text())
        full = {
            "full_retrain_s": round(full_s, 1),
            "full_retrain_peak_mb": round(full_mb),
            "full_retrain_stages_s": {k: full_report["timings_s"].get(k, 0.0) for k in STAGES},
        }
    start = n + RETRAIN_NEW
    x, _ = write_split(products.iloc[start : start + predict_n], folder, "predict")
    pred_s, pred_mb = run_measured(
        [*cli, "predict-batch", "--model", str(folder / "cold"), "--x", str(x), "--images", str(images),
         "--out", str(folder / "submission.csv"), "--cache-dir", str(folder / "predict-cache")],
        env, folder / "predict.log",
    )  # fmt: skip
    return {
        "n": n,
        "load_before": round(load, 2),
        "cold_s": round(cold_s, 1),
        "cold_peak_mb": round(cold_mb),
        "stages_s": {k: report["timings_s"].get(k, 0.0) for k in STAGES},
        "folds": report.get("folds"),
        "oof_weighted_f1": report["out_of_fold"]["weighted_f1"],
        "warm_s": round(warm_s, 1),
        "warm_peak_mb": round(warm_mb),
        "warm_stages_s": {k: warm_report["timings_s"].get(k, 0.0) for k in STAGES},
        "warm_mode": warm_report.get("retrain", {}).get("mode", "full"),
        **full,
        "predict_n": predict_n,
        "predict_s": round(pred_s, 1),
        "predict_per_s": round(predict_n / pred_s, 1),
        "predict_peak_mb": round(pred_mb),
    }


def power_fit(ns: list[int], values: list[float]) -> tuple[float, float]:
    """(a, b) of values = a * n^b by least squares in log space; b = 1 when only one size was measured."""
    if len(ns) < 2:
        return values[0] / ns[0], 1.0
    b, log_a = np.polyfit(np.log(ns), np.log(np.maximum(values, 1e-3)), 1)
    return float(np.exp(log_a)), float(b)


def extrapolate(results: list[dict[str, Any]], target: int) -> dict[str, Any]:
    ns = [r["n"] for r in results]
    out: dict[str, Any] = {"n": target, "stages_s": {}, "exponents": {}}
    for stage in STAGES:
        a, b = power_fit(ns, [r["stages_s"][stage] for r in results])
        out["stages_s"][stage] = a * target**b
        out["exponents"][stage] = b
    for key in ("cold_s", "cold_peak_mb", "warm_s"):
        a, b = power_fit(ns, [r[key] for r in results])
        # a linear fit through the largest measured point is the honest floor for growth (b < 1 is start-up)
        linear = results[-1][key] * target / ns[-1]
        out[key] = max(a * target**b, linear) if key != "cold_peak_mb" else a * target**b
        out["exponents"][key] = b
    return out


def print_table(results: list[dict[str, Any]], extra: dict[str, Any] | None) -> str:
    head = ["N", "cold s", *STAGES, "peak MB", "retrain +2k s (mode)", "full retrain s", "predict/s",
            "OOF wF1", "load"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r['n']:,}", f"{r['cold_s']:.0f}", *(f"{r['stages_s'][s]:.1f}" for s in STAGES)]
        full = f"{r['full_retrain_s']:.0f}" if "full_retrain_s" in r else ""
        cells += [f"{r['cold_peak_mb']:,}", f"{r['warm_s']:.0f} ({r.get('warm_mode', 'full')})", full]
        cells += [f"{r['predict_per_s']:.0f}"]
        cells += [f"{r['oof_weighted_f1']:.3f}", f"{r['load_before']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    if extra is not None:
        cells = [f"{extra['n']:,} (extrapolated)", f"{extra['cold_s']:.0f}"]
        cells += [f"{extra['stages_s'][s]:.0f}" for s in STAGES]
        cells += [f"{extra['cold_peak_mb']:,.0f}", f"{extra['warm_s']:.0f}", "", "", "", ""]
        lines.append("| " + " | ".join(cells) + " |")
        exps = ", ".join(f"{k} {v:.2f}" for k, v in extra["exponents"].items())
        lines.append(f"\ngrowth exponents b of time = a * N^b: {exps}")
    return "\n".join(lines)


def plot(results: list[dict[str, Any]], extra: dict[str, Any] | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in results]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    bottom = np.zeros(len(ns))
    for stage in STAGES:
        values = np.array([r["stages_s"][stage] for r in results])
        ax1.bar([str(n) for n in ns], values, bottom=bottom, label=stage)
        bottom += values
    ax1.plot([str(n) for n in ns], [r["warm_s"] for r in results], "k^--", label="warm retrain (+2,000)")
    ax1.set_xlabel("products N (measured)")
    ax1.set_ylabel("seconds")
    ax1.set_title("cold training time per stage")
    ax1.legend(fontsize=7)
    ax2.plot(ns, [r["cold_peak_mb"] for r in results], "o-", label="measured")
    if extra is not None:
        xs = [ns[-1], extra["n"]]
        ax2.plot(xs, [results[-1]["cold_peak_mb"], extra["cold_peak_mb"]], "o:", label="extrapolated")
        ax2b = ax2.twinx()
        ax2b.plot(ns, [r["cold_s"] / 60 for r in results], "s-", color="C3", label="cold min (measured)")
        ax2b.plot(xs, [results[-1]["cold_s"] / 60, extra["cold_s"] / 60], "s:", color="C3")
        ax2b.set_ylabel("cold training, minutes", color="C3")
    ax2.set_xlabel("products N")
    ax2.set_ylabel("peak resident MB")
    ax2.set_title("peak memory and total time against N")
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def compare_fits(products: pd.DataFrame, n: int, work: Path, repeats: int) -> None:
    """Out-of-fold + final fits one after the other (``threads=1``) against side by side (2 lanes), on the
    same N products with warm feature caches, alternating, in this process; prints seconds and ratio."""
    sys.path.insert(0, str(REPO / "src"))
    from prodtype.data.challenge import load_dataset
    from prodtype.ml.train import TrainConfig, fit_model

    folder = work / f"fits-n{n}"
    x, y = write_split(products.iloc[:n], folder, "fits")
    dataset = load_dataset(x, y, work.parent / "image_train")
    caches = {
        "image_cache_dir": folder / "cache" / "image-features",
        "text_cache_dir": folder / "cache" / "text",
    }
    fit_model(dataset, TrainConfig(), progress=False, **caches)  # fills the caches
    print("| N | run | lanes | out_of_fold s | final_fit s | load |\n|---|---|---|---|---|---|")
    for rep in range(repeats):
        for threads in (1, 2):
            load = os.getloadavg()[0]
            t = fit_model(dataset, TrainConfig(threads=threads), progress=False, **caches).report["timings_s"]
            oof, final = t["out_of_fold"], t["final_fit"]
            print(f"| {n:,} | {rep + 1} | {threads} | {oof:.1f} | {final:.1f} | {load:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 40_000, 84_916])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench-scale")
    parser.add_argument("--predict", type=int, default=1000, help="unseen products for predict-batch")
    parser.add_argument("--target", type=int, default=84_916, help="N to extrapolate to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-fits", type=int, default=0, metavar="N", help="only A/B the fits on N")
    parser.add_argument(
        "--compare-ngrams",
        type=int,
        default=0,
        metavar="N",
        help="only A/B char_wb and char n-grams on N texts",
    )
    parser.add_argument(
        "--compare-embedders",
        type=int,
        default=0,
        metavar="N",
        help="only time the word vectors and the embedding head with and without them on N texts",
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--full-retrain",
        action="store_true",
        help="also time the retrain in full (no --warm-from), to compare",
    )
    args = parser.parse_args()
    if args.compare_ngrams:
        compare_ngrams(args.data, args.compare_ngrams, args.seed, args.repeats)
        return
    if args.compare_embedders:
        compare_embedders(args.data, args.compare_embedders, args.seed, args.repeats)
        return
    if args.compare_fits:
        products = build_products(args.data, args.compare_fits, args.out / "data", args.seed)
        compare_fits(products, args.compare_fits, args.out / "data" / "runs", args.repeats)
        return
    sizes = sorted(args.sizes)
    total = sizes[-1] + RETRAIN_NEW + args.predict
    products = build_products(args.data, total, args.out / "data", args.seed)
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PRODTYPE_STORAGE_DIR": str(args.out / "storage")}
    results = []
    for n in sizes:
        results.append(measure(n, products, args.out / "data" / "runs", args.predict, env, args.full_retrain))
        print(json.dumps(results[-1]), file=sys.stderr)
    extra = extrapolate(results, args.target) if args.target > sizes[-1] else None
    cpus = len(os.sched_getaffinity(0))
    table = print_table(results, extra)
    print(f"{time.strftime('%Y-%m-%d')}, {cpus} CPUs, load before each run in the last column\n{table}")
    (args.out / "scale.json").write_text(json.dumps({"results": results, "extrapolated": extra}, indent=2))
    plot(results, extra, args.out / "scale.png")
    print(f"wrote {args.out / 'scale.json'} and {args.out / 'scale.png'}")


if __name__ == "__main__":
    main()
