"""The hand-written parts of benchmarks/bench_photo_curve.py, whose learning curve and extrapolation the
README reports: the training subsets of each fit and the line through the points."""

from __future__ import annotations

import numpy as np
import pytest

from service_support.benchmarks import benchmark_module


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    with benchmark_module("bench_photo_curve") as module:
        yield module


def test_each_fraction_draws_its_own_subsets_of_the_right_size_and_the_whole_set_once(bench) -> None:  # type: ignore[no-untyped-def]
    quarter = bench.draws(1001, 0.25, 3, (0, 2))
    assert [len(p) for p in quarter] == [250, 250, 250]
    for pick in quarter:
        assert len(np.unique(pick)) == 250 and np.all(np.diff(pick) > 0) and pick.max() < 1001
    assert not np.array_equal(quarter[0], quarter[1]) and not np.array_equal(quarter[1], quarter[2])
    # reproducible from (fold seed, fold, draw); another fold gets other subsets
    again = bench.draws(1001, 0.25, 3, (0, 2))
    assert all(np.array_equal(a, b) for a, b in zip(quarter, again, strict=True))
    assert not np.array_equal(bench.draws(1001, 0.25, 1, (0, 3))[0], quarter[0])
    # the whole set is fitted once, in its order: the photo branch of bench_image_heads.py's first row
    (whole,) = bench.draws(1001, 1.0, 3, (0, 2))
    np.testing.assert_array_equal(whole, np.arange(1001))


def test_the_line_through_the_points_and_the_photos_it_extrapolates_to(bench) -> None:  # type: ignore[no-untyped-def]
    photos = [100, 200, 400, 800, 800]
    f1 = [0.2 + 0.07 * np.log2(n / 100) for n in photos]
    a, b = bench.line_fit(photos, f1)
    assert b == pytest.approx(0.07) and a + b * np.log2(100) == pytest.approx(0.2)
    # 0.41 is three doublings of 0.07 above 0.2 at 100 photos
    assert bench.photos_for(0.41, a, b) == pytest.approx(800)
