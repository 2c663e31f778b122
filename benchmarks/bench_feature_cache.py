"""Feature cache speed: the single SQLite store against the old one-``.npy``-per-vector folders, same run.

Writes ``--n`` vectors of ``--dim`` float32 (1280: image features; 512: sentence embeddings) in batches of 16
(as the image encoder commits them), then reads them all back in random order one at a time (a decoding
thread's lookup) and in one ``get_many`` (the text cache's lookup), and a miss for each of ``--n``
absent keys.
Prints vectors per second for each, the ratio store / files, and the size on disk.

    python benchmarks/bench_feature_cache.py [--n 20000] [--dim 1280]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from prodtype.ml.feature_store import FeatureStore


def _save_file(root: Path, key: str, vector: np.ndarray) -> None:
    """The old cache's write: a temporary file in the shard folder, then an atomic rename."""
    path = root / key[:2] / f"{key}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as fh:
        np.save(fh, vector, allow_pickle=False)
    os.replace(tmp, path)


def _load_file(root: Path, key: str) -> np.ndarray | None:
    try:
        return np.load(root / key[:2] / f"{key}.npy", allow_pickle=False)
    except OSError:
        return None


def _du(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1280)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(args.n)]
    absent = [hashlib.sha256(f"absent{i}".encode()).hexdigest() for i in range(args.n)]
    vectors = rng.standard_normal((args.n, args.dim)).astype(np.float32)
    order = list(range(args.n))
    random.Random(0).shuffle(order)
    work = Path(tempfile.mkdtemp(prefix="bench-cache-"))
    rows: dict[str, dict[str, float]] = {"files": {}, "store": {}}
    try:
        files = work / "files"
        t = time.perf_counter()
        for key, vec in zip(keys, vectors, strict=True):
            _save_file(files, key, vec)
        rows["files"]["write"] = args.n / (time.perf_counter() - t)
        t = time.perf_counter()
        for i in order:
            _load_file(files, keys[i])
        rows["files"]["read one"] = args.n / (time.perf_counter() - t)
        rows["files"]["read batch"] = rows["files"]["read one"]  # no batch read: one file per vector
        t = time.perf_counter()
        for key in absent:
            _load_file(files, key)
        rows["files"]["miss"] = args.n / (time.perf_counter() - t)
        rows["files"]["MB on disk"] = _du(files) / 1e6
        rows["files"]["files"] = sum(1 for _ in files.rglob("*.npy"))

        with FeatureStore(work / "store", "ns", args.dim, legacy=False) as store:
            t = time.perf_counter()
            for start in range(0, args.n, 16):
                store.put_many(zip(keys[start : start + 16], vectors[start : start + 16], strict=True))
            rows["store"]["write"] = args.n / (time.perf_counter() - t)
            t = time.perf_counter()
            for i in order:
                store.get(keys[i])
            rows["store"]["read one"] = args.n / (time.perf_counter() - t)
            t = time.perf_counter()
            found = store.get_many([keys[i] for i in order])
            rows["store"]["read batch"] = args.n / (time.perf_counter() - t)
            assert len(found) == args.n
            np.testing.assert_array_equal(found[keys[0]], vectors[0])
            t = time.perf_counter()
            for key in absent:
                store.get(key)
            rows["store"]["miss"] = args.n / (time.perf_counter() - t)
        rows["store"]["MB on disk"] = _du(work / "store") / 1e6
        rows["store"]["files"] = sum(1 for p in (work / "store").iterdir() if p.is_file())
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"{time.strftime('%Y-%m-%d')}: {args.n} vectors of {args.dim} float32, load {os.getloadavg()[0]:.1f}"
    )
    print("| vectors/s | per-file cache | SQLite store | store / files |")
    print("|---|---|---|---|")
    for what in ("write", "read one", "read batch", "miss", "MB on disk", "files"):
        a, b = rows["files"][what], rows["store"][what]
        print(f"| {what} | {a:,.0f} | {b:,.0f} | {b / a:.2f} |")


if __name__ == "__main__":
    main()
