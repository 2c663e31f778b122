"""Where a prediction's time goes: each stage of ``ModelBundle.predict``, timed alone, and a cProfile.

    python benchmarks/profile_predict.py --model BUNDLE [--data ../shared/data/rakuten] [--n 200]
                                         [--threads 1] [--cprofile predict.prof]

For each stage it prints the p50 wall time and the p50 CPU time of the process (CPU time moves less than
wall time when other jobs share the machine), for one product at a time and per product in a batch of 32:
decoding + resizing the photo, the image encoder, the TF-IDF features, the text head, the sentence
embedding, and the whole prediction. With ``--cprofile`` the whole predictions also run under cProfile and
the 25 most expensive functions are printed (open the file with ``python -m pstats`` or snakeviz).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PRODTYPE_DATA_DIR", ROOT.parent / "shared" / "data" / "rakuten"))


def timed(fn: Callable[[int], object], n: int, per: int = 1) -> tuple[float, float]:
    """(p50 wall ms, p50 CPU ms) per item of ``fn(i)`` over ``n`` calls, after a warm-up."""
    for i in range(min(5, n)):
        fn(i)
    wall, cpu = [], []
    for i in range(n):
        w, c = time.perf_counter(), time.process_time()
        fn(i)
        wall.append((time.perf_counter() - w) * 1000 / per)
        cpu.append((time.process_time() - c) * 1000 / per)
    return statistics.median(wall), statistics.median(cpu)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, required=True, help="model bundle")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=200, help="products timed per stage")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (default: all CPUs)")
    parser.add_argument("--cprofile", type=Path, help="write a cProfile of the whole predictions here")
    args = parser.parse_args(argv)

    from prodtype.data.text import join_text
    from prodtype.ml.bundle import load_bundle
    from prodtype.ml.predictor import ProductInput

    x = pd.read_csv(args.data / "X_train.csv", index_col=0, dtype={"designation": str, "description": str})
    x = x.fillna("")
    products = list(zip(x["designation"], x["description"], strict=True))
    photos = [p.read_bytes() for p in sorted((args.data / "image_train").glob("*.jpg"))[: args.n]]
    bundle = load_bundle(args.model, threads=args.threads)
    bundle.warm_up()
    model, encoder, embedder = bundle.model, bundle.encoder, bundle._embedder()
    texts = [join_text(d, s) for d, s in products]
    pixels = [encoder.prepare(p) for p in photos]
    matrices = [model.tfidf.transform([t]) for t in texts[: args.n]]
    inputs = [ProductInput(d, s, photos[i % len(photos)]) for i, (d, s) in enumerate(products[: args.n])]
    n, k = args.n, 32

    def batch(i: int) -> slice:
        start = (i * k) % max(1, n - k)
        return slice(start, start + k)

    rows: list[tuple[str, tuple[float, float], tuple[float, float] | None]] = [
        ("decode + resize the photo", timed(lambda i: encoder.prepare(photos[i % len(photos)]), n), None),
        (
            "image encoder",
            timed(lambda i: encoder.encode_preprocessed(pixels[i % len(pixels)][None]), n),
            timed(lambda i: encoder.encode_preprocessed(np.stack(pixels[batch(i)])), max(1, n // k), k),
        ),
        (
            "TF-IDF features",
            timed(lambda i: model.tfidf.transform([texts[i]]), n),
            timed(lambda i: model.tfidf.transform(texts[batch(i)]), max(1, n // k), k),
        ),
        ("text head", timed(lambda i: model.text_head.scores(matrices[i]), n), None),
    ]
    if embedder is not None:
        rows.append(
            (
                f"sentence embedding ({embedder.name})",
                timed(lambda i: embedder.encode([texts[i]]), n),
                timed(lambda i: embedder.encode(texts[batch(i)]), max(1, n // k), k),
            )
        )
    rows.append(
        (
            "whole prediction, photo",
            timed(lambda i: bundle.predict_many([inputs[i]]), n),
            timed(lambda i: bundle.predict_many(inputs[batch(i)]), max(1, n // k), k),
        )
    )
    rows.append(("whole prediction, text only", timed(lambda i: bundle.predict(*products[i]), n), None))

    table = Table(
        title=f"{bundle.version}: p50 per product, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}"
    )
    for column in ("stage", "one: wall ms", "one: CPU ms", f"batch of {k}: wall ms", f"batch of {k}: CPU ms"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for name, one, many in rows:
        table.add_row(
            name,
            f"{one[0]:.2f}",
            f"{one[1]:.2f}",
            f"{many[0]:.2f}" if many else "",
            f"{many[1]:.2f}" if many else "",
        )
    Console().print(table)

    if args.cprofile:
        profiler = cProfile.Profile()
        profiler.enable()
        for item in inputs:
            bundle.predict_many([item])
        profiler.disable()
        profiler.dump_stats(args.cprofile)
        pstats.Stats(str(args.cprofile)).sort_stats("cumulative").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
