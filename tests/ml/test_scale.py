"""Training at scale: parallel fits give the same model as sequential ones, fewer folds from ``large_n`` on,
and a training killed mid-way leaves no bundle and a consistent feature cache behind."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prodtype.data.challenge import Dataset, image_paths
from prodtype.ml.feature_store import STORE_FILE
from prodtype.ml.image import ImageEncoder
from prodtype.ml.parallel import run_lanes
from prodtype.ml.train import TrainConfig, fit_model
from service_support.benchmarks import benchmark_module
from service_support.waiting import until

SRC = str(Path(__file__).resolve().parents[2] / "src")


def first_per_class(dataset: Dataset, n: int) -> Dataset:
    """The first ``n`` products of every class (so that 3 stratified folds fit), no image-only photos."""
    products = dataset.products.groupby("label", group_keys=False).head(n).sort_index()
    return Dataset(
        products=products.copy(),
        image_only=dataset.image_only.iloc[:0],
        fingerprint=f"first-{n}-" + dataset.fingerprint,
    )


@pytest.mark.slow
def test_parallel_fits_equal_sequential_fits(sample_dataset, feature_cache_dir: Path) -> None:  # type: ignore[no-untyped-def]
    subset = first_per_class(sample_dataset, 12)
    caches = {"image_cache_dir": feature_cache_dir / "image", "text_cache_dir": feature_cache_dir / "text"}
    results = [
        fit_model(subset, TrainConfig(folds=3, threads=threads), progress=False, **caches)  # type: ignore[arg-type]
        for threads in (1, 2)
    ]
    sequential, parallel = results
    np.testing.assert_array_equal(parallel.oof_branches, sequential.oof_branches)
    np.testing.assert_array_equal(parallel.model.text_head.coef, sequential.model.text_head.coef)
    assert parallel.model.embed_head is not None and sequential.model.embed_head is not None
    np.testing.assert_array_equal(parallel.model.embed_head.coef, sequential.model.embed_head.coef)
    np.testing.assert_array_equal(parallel.model.image_head.coef, sequential.model.image_head.coef)
    assert parallel.report["folds"] == 3

    fewer = fit_model(
        subset, TrainConfig(folds=5, large_n=len(subset.products), large_n_folds=2), progress=False, **caches
    )  # type: ignore[arg-type]
    assert fewer.report["folds"] == 2
    assert (
        fit_model(
            subset,
            TrainConfig(folds=3, large_n=len(subset.products) + 1, large_n_folds=2),
            progress=False,
            **caches,
        ).report[  # type: ignore[arg-type]
            "folds"
        ]
        == 3
    )


def test_run_lanes_overlaps_lanes_and_raises_the_first_error() -> None:
    started: list[str] = []
    events = {name: __import__("threading").Event() for name in ("a", "b")}

    def wait_for(other: str, me: str) -> None:
        started.append(me)
        events[me].set()
        assert events[other].wait(10), f"lane {other} never ran beside lane {me}"

    run_lanes([[lambda: wait_for("b", "a")], [lambda: wait_for("a", "b")]], 2, False, "t")
    assert sorted(started) == ["a", "b"]  # both ran, and each saw the other running: they overlapped

    done: list[int] = []

    def boom() -> None:
        raise RuntimeError("fit failed")

    with pytest.raises(RuntimeError, match="fit failed"):
        run_lanes([[boom, lambda: done.append(1)], [lambda: done.append(2)]], 2, False, "t")
    assert 1 not in done  # the failed lane stopped

    order: list[int] = []
    run_lanes([[lambda: order.append(1), lambda: order.append(2)], [lambda: order.append(3)]], 1, False, "t")
    assert order == [1, 2, 3]  # one worker: lanes one after the other, each in order


TRAIN = """
import sys
from prodtype.cli import app
sys.argv = ["prodtype", "train", *sys.argv[1:]]
app()
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_training_killed_mid_way_leaves_no_bundle_and_a_consistent_cache(
    sig: signal.Signals, data_dir: Path, tmp_path: Path
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "models" / "m"
    args = [
        "--x",
        data_dir / "X_train.csv",
        "--y",
        data_dir / "Y_train.csv",
        "--images",
        data_dir / "image_train",
    ]
    args += ["--image-only", data_dir / "image_only_train.csv", "--out", out, "--cache-dir", cache]
    env = {**os.environ, "PYTHONPATH": SRC, "PRODTYPE_STORAGE_DIR": str(tmp_path / "storage")}
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN, *map(str, args)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    store = cache / "image-features" / STORE_FILE

    def cached() -> int:
        if not store.is_file():
            return 0
        with sqlite3.connect(store, timeout=30) as conn:
            # the file exists a moment before the trainer's schema is committed in it
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'features'").fetchone() is None:
                return 0
            count: int = conn.execute("SELECT count(*) FROM features").fetchone()[0]
        return count

    try:
        # wait until photos are being cached (or the training ended, which the assert below refuses)
        until(lambda: proc.poll() is not None or cached() >= 64, 240, "no photo was cached", every=0.2)
        assert proc.poll() is None and cached() >= 64, "the training ended or never cached a photo"
        proc.send_signal(sig)
        assert proc.wait(timeout=60) != 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert not out.exists()
    assert not out.parent.exists() or not any(out.parent.iterdir())  # no half-written bundle, no temp folder
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # what was committed is right: the features of the photos in the cache equal freshly encoded ones
    encoder = ImageEncoder()
    with encoder.feature_store(cache / "image-features") as features:
        keys = set(features.keys())
        assert len(keys) >= 64
        photos = [Path(p) for p in image_paths(_sample_products(data_dir)) if p is not None]
        checked = 0
        for photo in photos:
            data = photo.read_bytes()
            key = encoder.cache_key(data)
            if key in keys:
                np.testing.assert_allclose(
                    features.get(key), encoder.encode_bytes(data), rtol=1e-4, atol=1e-5
                )
                checked += 1
            if checked == 5:
                break
        assert checked == 5


def _sample_products(data_dir: Path) -> object:
    from prodtype.data.challenge import load_dataset

    return load_dataset(data_dir / "X_train.csv", data_dir / "Y_train.csv", data_dir / "image_train").products


@pytest.fixture(scope="module")
def bench_scale():  # type: ignore[no-untyped-def]
    with benchmark_module("bench_scale") as module:
        yield module


def test_synthetic_texts_mix_titles_of_one_class_and_repeat_with_the_seed(
    bench_scale, data_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    texts, labels = bench_scale.synthetic_texts(data_dir, 300, seed=3)
    again, labels_again = bench_scale.synthetic_texts(data_dir, 300, seed=3)
    assert texts == again and (labels == labels_again).all()
    assert len(texts) == 300 and len(set(labels)) > 10  # the full data's mix: many types in 300 products
    other, _ = bench_scale.synthetic_texts(data_dir, 300, seed=4)
    assert other != texts
    assert bench_scale._mixed_title("a b c d", "w x y z") == "a b y z"


def test_compare_ngrams_measures_both_analyzers_on_the_same_texts(bench_scale, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    rows = bench_scale.compare_ngrams(data_dir, 400, seed=0, repeats=1)
    by = {r["analyzer"]: r for r in rows}
    assert set(by) == {"char_wb", "char"}
    # across spaces there are more distinct n-grams (those spanning two words) and more in each text
    assert by["char"]["char_vocabulary"] > by["char_wb"]["char_vocabulary"]
    assert by["char"]["nnz_per_text"] > by["char_wb"]["nnz_per_text"]


def test_compare_embedders_times_the_head_with_and_without_the_word_vectors(
    bench_scale, data_dir: Path
) -> None:  # type: ignore[no-untyped-def]
    rows = bench_scale.compare_embedders(data_dir, 300, seed=0, repeats=1)
    assert [r["input"] for r in rows] == ["1,024-d (before)", "1,624-d (default)"]
    before, after = rows
    assert after["input_mb"] == before["input_mb"] * 1624 / 1024  # the same rows, 600 more columns
    assert before["words_s"] == 0 < after["words_s"] and after["lda_s"] > 0
