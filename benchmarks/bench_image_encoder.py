"""Speed of the image branch's encoder on the sample's photos: ms per image, median of several runs.

Rows: decode + preprocess; the ONNX forward at batch 1 and 32 (baseline: the torch model it was exported
from, same batch, same thread count, when the ``export`` extra is installed); ``encode_files`` end to end
without a cache, and with a warm cache (baseline: without).

    python benchmarks/bench_image_encoder.py [--data ../shared/data/rakuten] [--images 64] [--runs 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from prodtype.ml.image import ImageEncoder, decode_image, preprocess

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PRODTYPE_DATA_DIR", ROOT.parent / "shared" / "data" / "rakuten"))


def median_ms(fn: Callable[[], object], items: int, runs: int) -> float:
    """Median over ``runs`` timed calls (after one warm-up call) of milliseconds per item."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000 / items


def torch_forward(threads: int) -> Callable[[np.ndarray], object] | None:
    """The exported torch model's forward, or None without the export extra."""
    if (
        importlib.util.find_spec("torch") is None
        or importlib.util.find_spec("efficientnet_lite_pytorch") is None
    ):
        return None
    import torch

    spec = importlib.util.spec_from_file_location(
        "export_image_encoder", ROOT / "scripts" / "export_image_encoder.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_feature_model()
    torch.set_num_threads(threads)

    def forward(batch: np.ndarray) -> object:
        with torch.no_grad():
            return model(torch.from_numpy(batch))

    return forward


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="challenge sample folder")
    parser.add_argument("--images", type=int, default=64, help="photos to time (from image_train/)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per row (median reported)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    args = parser.parse_args(argv)

    paths = sorted((args.data / "image_train").glob("*.jpg"))[: args.images]
    if len(paths) < 32:
        print(f"error: need at least 32 JPEGs in {args.data / 'image_train'}, found {len(paths)}")
        return 1
    payloads = [p.read_bytes() for p in paths]
    encoder = ImageEncoder(threads=args.threads)
    batch = np.stack([preprocess(decode_image(data)) for data in payloads])
    one = batch[:1]
    thirty_two = batch[:32]
    onnx_forward = encoder.encode_preprocessed
    baseline = torch_forward(args.threads)
    n = len(paths)

    rows: list[tuple[str, float, str, float | None]] = []
    rows.append(
        (
            "decode + preprocess",
            median_ms(lambda: [preprocess(decode_image(d)) for d in payloads], n, args.runs),
            "",
            None,
        )
    )
    for label, x in (("ONNX forward, batch 1", one), ("ONNX forward, batch 32", thirty_two)):
        size = len(x)
        ours = median_ms(lambda x=x: onnx_forward(x), size, args.runs)
        theirs = median_ms(lambda x=x: baseline(x), size, args.runs) if baseline else None
        rows.append((label, ours, f"torch, batch {size}" if baseline else "(torch not installed)", theirs))
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        names = [str(p) for p in paths]
        cold = median_ms(lambda: encoder.encode_files(names), n, max(1, args.runs // 2))
        encoder.encode_files(names, cache_dir=cache)  # fill the cache
        warm = median_ms(lambda: encoder.encode_files(names, cache_dir=cache), n, args.runs)
    rows.append(("encode_files, no cache", cold, "", None))
    rows.append(("encode_files, warm cache", warm, "encode_files, no cache", cold))

    print(
        f"image encoder: {n} photos (500x500 JPEG) from {args.data / 'image_train'}, {args.threads} threads, "
    )
    print(f"median of {args.runs} runs, ms per image; speed-up = baseline / figure")
    header = f"{'step':<26}{'ms/image':>10}  {'baseline':<24}{'ms/image':>10}{'speed-up':>10}"
    print(header)
    print("-" * len(header))
    for label, ours, base_label, theirs in rows:
        base = f"{theirs:10.2f}{theirs / ours:9.1f}x" if theirs is not None else f"{'':10}{'':10}"
        print(f"{label:<26}{ours:10.2f}  {base_label:<24}{base}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
