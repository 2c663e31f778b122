"""The hand-written parts of benchmarks/bench_candidates.py, whose figures the README reports: the gated
fusion (its own likelihood and gradient), the per-class fusion weights, the LDA stacker and the k-NN
branch."""

from __future__ import annotations

import numpy as np
import pytest

from prodtype.ml.fusion import fit_fusion
from service_support.benchmarks import benchmark_module


@pytest.fixture(scope="module")
def bench():  # type: ignore[no-untyped-def]
    with benchmark_module("bench_candidates") as module:
        yield module


def _branches(rng: np.random.Generator, n: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = rng.integers(0, k, n)
    noise = rng.normal(size=(3, n, k))
    branches = noise.copy()
    branches[0, np.arange(n), y] += 1.5
    branches[1, np.arange(n), y] += 1.0
    branches[2, np.arange(n), y] += 2.0
    has = rng.random(n) < 0.5
    branches[2, ~has] = 0.0
    return branches, has, y


def test_gated_fusion_without_meta_information_is_the_models_fusion(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    branches, has, y = _branches(rng, 400, 5)
    plain = fit_fusion(branches, has, y).proba(branches, has)
    meta = np.zeros((400, 2))  # nothing to gate on: the gates' weights stay at zero
    gated = bench.fit_gated_fusion(branches, has, meta, y)(branches, has, meta)
    np.testing.assert_allclose(gated, plain, atol=2e-3)


def test_gated_fusion_learns_which_branch_to_trust_from_a_meta_feature(bench) -> None:  # type: ignore[no-untyped-def]
    # Half the products have a text branch that is right and an embedding branch that is noise, the other half
    # the reverse; a meta-feature says which half. The plain fusion must average; the gated one can choose.
    rng = np.random.default_rng(1)
    n, k = 600, 6
    y = rng.integers(0, k, n)
    which = rng.random(n) < 0.5
    branches = rng.normal(size=(3, n, k))
    branches[0, np.flatnonzero(which), y[which]] += 3.0
    branches[1, np.flatnonzero(~which), y[~which]] += 3.0
    has = np.zeros(n, dtype=bool)
    branches[2] = 0.0
    meta = np.where(which, 1.0, -1.0)[:, None]
    tr, te = np.arange(400), np.arange(400, n)
    plain = fit_fusion(branches[:, tr], has[tr], y[tr]).proba(branches[:, te], has[te])
    gated = bench.fit_gated_fusion(branches[:, tr], has[tr], meta[tr], y[tr])(
        branches[:, te], has[te], meta[te]
    )

    def nll(p: np.ndarray) -> float:
        return float(-np.log(p[np.arange(len(te)), y[te]]).mean())

    assert nll(gated) < 0.7 * nll(plain)
    assert (gated.argmax(1) == y[te]).mean() > (plain.argmax(1) == y[te]).mean() + 0.05


def test_knn_branch_votes_for_the_labels_of_the_nearest_products(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    classes = np.array([10, 40, 50])
    centres = rng.normal(size=(3, 16)) * 5
    y_tr = np.repeat(classes, 20)
    e_tr = np.repeat(centres, 20, axis=0) + rng.normal(size=(60, 16)) * 0.1
    e_te = centres[[2, 0, 1]] + rng.normal(size=(3, 16)) * 0.1
    logp = bench._knn_logp(e_tr, y_tr, e_te, classes)
    assert logp.shape == (3, 3)
    np.testing.assert_allclose(np.exp(logp).sum(1), 1.0, atol=1e-9)
    assert classes[logp.argmax(1)].tolist() == [50, 10, 40]


def test_per_class_fusion_weights_shrunk_hard_are_the_models_fusion(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    branches, has, y = _branches(rng, 400, 5)
    plain = fit_fusion(branches, has, y).proba(branches, has)
    shrunk = bench.fit_class_fusion(branches, has, y, 10.0)(branches, has, None)
    np.testing.assert_allclose(shrunk, plain, atol=2e-3)


def test_per_class_fusion_weights_learn_which_branch_knows_which_type(bench) -> None:  # type: ignore[no-untyped-def]
    # The text branch is right on types 0-2 and noise on 3-5, the embedding branch the reverse: one weight per
    # branch must average them, a weight per branch and type can trust each where it knows.
    rng = np.random.default_rng(4)
    n, k = 900, 6
    y = rng.integers(0, k, n)
    branches = rng.normal(size=(3, n, k))
    rows = np.arange(n)
    low = y < 3
    branches[0, rows[low], y[low]] += 3.0
    branches[1, rows[~low], y[~low]] += 3.0
    branches[0, :, 3:] += rng.normal(size=(n, 3)) * 3  # the text branch's scores of 3-5 are loud noise
    branches[1, :, :3] += rng.normal(size=(n, 3)) * 3
    branches[2] = 0.0
    has = np.zeros(n, dtype=bool)
    tr, te = rows[:600], rows[600:]
    plain = fit_fusion(branches[:, tr], has[tr], y[tr]).proba(branches[:, te], has[te])
    per_class = bench.fit_class_fusion(branches[:, tr], has[tr], y[tr], 1e-4)(branches[:, te], has[te], None)
    assert (per_class.argmax(1) == y[te]).mean() > (plain.argmax(1) == y[te]).mean() + 0.05


def test_lda_stacker_gives_probabilities_over_all_types(bench) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    branches, has, y = _branches(rng, 500, 5)
    seen = y != 4  # a type the stacker never saw gets probability 0, in its own column
    proba = bench.fit_lda_stacker(branches[:, seen], has[seen], y[seen], 5)(branches, has, None)
    assert proba.shape == (500, 5)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    assert (proba[:, 4] == 0).all()
    fused = fit_fusion(branches[:, seen], has[seen], y[seen]).proba(branches[:, seen], has[seen])
    assert (proba.argmax(1) == y)[seen].mean() >= (fused.argmax(1) == y[seen]).mean() - 0.02
