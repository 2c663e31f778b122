"""Nearest-neighbour branches measured beside the model's stack, and the cost of a k-NN lookup at full size.

Sellers reuse stock photos, so a k-NN over the training photos' embeddings (cosine, distance-weighted class
votes) might add what a linear head on the same features misses; the same for the sentence embeddings. This
measures it without changing the model: for each fold seed, :func:`prodtype.ml.train.fit_model` on the whole
sample gives the out-of-fold branch outputs (its folds are the accuracy benchmark's: StratifiedKFold, 5
splits, the same seed). A k-NN branch is computed out-of-fold on the same folds (k and the vote temperature
chosen by an inner 5-fold CV on each outer fold's training rows only), and the fusion is refitted nested, as
``fit_model`` reports its own out-of-fold figure: fitted on the other folds, scored on the held-out one.

Rows: the image branch alone on products with a photo (logistic head, k-NN, both summed), the fused model
with and without each k-NN branch, and the paired per-fold differences (mean ± standard error over the
folds of all seeds). Then the time of one lookup among 85,000 vectors of 1,280 floats (the full challenge
data's photos), one thread, for one query and a batch of 32.

    python benchmarks/bench_knn.py [--profile fast|accurate] [--seeds 0 1] [--cache-dir .cache/bench-features]
        [--out benchmarks/results/knn-PROFILE.md]
"""

from __future__ import annotations

import statistics
import time

import numpy as np
from sample_folds import (
    ROOT,
    Clock,
    fold_parser,
    fused_table,
    load_sample,
    out_of_fold,
    weighted_f1,
    write_table,
)
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from prodtype.data.challenge import image_paths
from prodtype.ml.embeddings import encode_cached, get_embedder
from prodtype.ml.fusion import fit_fusion
from prodtype.ml.image import ImageEncoder
from prodtype.ml.train import TrainConfig, _folds

GRID_K = (5, 10, 20, 40)
GRID_T = (0.02, 0.05, 0.1, 0.2, 0.5, 1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)


def knn_logp(
    xtr: np.ndarray,
    ytr_idx: np.ndarray,
    xte: np.ndarray,
    n_classes: int,
    k: int,
    t: float,
    alpha: float = 0.5,
) -> np.ndarray:
    """Log of smoothed, distance-weighted (exp((cos - 1) / t)) class votes of the k nearest training rows."""
    sims = _unit(xte) @ _unit(xtr).T
    k = min(k, len(xtr))
    idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = np.exp((np.take_along_axis(sims, idx, 1) - 1.0) / t)
    votes = np.zeros((len(xte), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(xte)), k), ytr_idx[idx].ravel()), w.ravel())
    return np.log((votes + alpha / n_classes) / (votes.sum(1, keepdims=True) + alpha))


def tuned_knn(
    xtr: np.ndarray,
    ytr_idx: np.ndarray,
    xte: np.ndarray,
    n_classes: int,
    pool: tuple[np.ndarray, np.ndarray],
    standardize: bool = False,
) -> tuple[np.ndarray, tuple[int, float]]:
    """k-NN log-votes for ``xte``, (k, t) picked by inner CV log-likelihood on the training rows only.

    ``standardize``: cosine between features centred and scaled by the training rows' mean and sd (as the
    logistic head sees them) instead of the raw (non-negative) features.
    """
    if standardize:
        both = np.vstack([xtr, pool[0]])
        mu, sd = both.mean(axis=0), both.std(axis=0) + 1e-6
        xtr, xte, pool = (xtr - mu) / sd, (xte - mu) / sd, ((pool[0] - mu) / sd, pool[1])
    best, best_ll = (GRID_K[0], GRID_T[0]), -np.inf
    inner = StratifiedKFold(5, shuffle=True, random_state=0)
    counts = np.bincount(ytr_idx, minlength=n_classes)
    strat = np.where(counts[ytr_idx] >= 5, ytr_idx, -1)  # rare classes pooled for the split
    for k in GRID_K:
        for t in GRID_T:
            ll = 0.0
            for itr, ite in inner.split(np.zeros(len(ytr_idx)), strat):
                x_pool = np.vstack([xtr[itr], pool[0]])
                y_pool = np.concatenate([ytr_idx[itr], pool[1]])
                lp = knn_logp(x_pool, y_pool, xtr[ite], n_classes, k, t)
                ll += float(lp[np.arange(len(ite)), ytr_idx[ite]].sum())
            if ll > best_ll:
                best, best_ll = (k, t), ll
    x_all = np.vstack([xtr, pool[0]])
    y_all = np.concatenate([ytr_idx, pool[1]])
    return knn_logp(x_all, y_all, xte, n_classes, *best), best


def near_duplicates(
    img: np.ndarray, has_img: np.ndarray, pool: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]]
) -> dict[float, int]:
    """How many held-out photos have a training (or image-only) photo within each cosine similarity."""
    counts = dict.fromkeys((0.95, 0.9, 0.85, 0.8), 0)
    for tr, te in folds:
        tr_i, te_i = tr[has_img[tr]], te[has_img[te]]
        best = (_unit(img[te_i]) @ _unit(np.vstack([img[tr_i], pool])).T).max(axis=1)
        for threshold in counts:
            counts[threshold] += int((best >= threshold).sum())
    return counts


def lookup_cost(n: int = 85_000, k: int = 20, repeats: int = 30) -> dict[str, float]:
    rng = np.random.default_rng(0)
    out = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for dim, batch in ((1280, 1), (1280, 32), (512, 1), (256, 1)):
            bank = _unit(rng.random((n, dim), dtype=np.float32))
            q = _unit(rng.random((batch, dim), dtype=np.float32))
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                sims = q @ bank.T
                np.argpartition(-sims, k - 1, axis=1)[:, :k]
                times.append(time.perf_counter() - t0)
            out[f"{dim} dims, batch {batch}"] = statistics.median(times) * 1000
    return out


def main() -> None:
    parser = fold_parser(__doc__, None)
    parser.add_argument("--profile", default="fast", help="the training profile whose stack is measured")
    args = parser.parse_args()
    out = args.out or ROOT / "results" / f"knn-{args.profile}.md"

    ds = load_sample(args.data)
    y = ds.products["label"].to_numpy(dtype=np.int64)
    texts = ds.products["text"].tolist()
    cfg0 = TrainConfig.build(args.profile)
    enc = ImageEncoder(name=cfg0.image_encoder)
    img, has_img, _ = enc.encode_files(image_paths(ds.products), args.cache_dir / "image", progress=False)
    io_x, io_has, _ = enc.encode_files(image_paths(ds.image_only), args.cache_dir / "image", progress=False)
    io_y = ds.image_only["label"].to_numpy(dtype=np.int64)[io_has]
    io_x = io_x[io_has]
    assert cfg0.embedder is not None
    emb = encode_cached(
        get_embedder(cfg0.embedder, None, cfg0.embed_max_chars), texts, args.cache_dir / "text"
    )
    clock = Clock()

    scores: dict[str, list[float]] = {}
    chosen: list[str] = []

    def add(name: str, value: float) -> None:
        scores.setdefault(name, []).append(value)

    for seed in args.seeds:
        result = out_of_fold(ds, TrainConfig.build(args.profile, seed=seed), args.cache_dir)
        classes = result.model.classes
        k_cls = len(classes)
        y_idx = np.searchsorted(classes, y)
        io_idx = np.searchsorted(classes, io_y)
        folds = _folds(y, 5, seed)
        dups = near_duplicates(img, has_img, io_x, folds)
        chosen.append(
            f"seed {seed}: held-out photos with a training photo at cosine >= "
            + ", ".join(f"{t}: {c}" for t, c in dups.items())
            + f" (of {int(has_img.sum())})"
        )
        knn_img = np.zeros((len(y), k_cls))
        knn_txt = np.zeros((len(y), k_cls))
        knn_imz = np.zeros((len(y), k_cls))
        for tr, te in folds:
            tr_i, te_i = tr[has_img[tr]], te[has_img[te]]
            lp, best = tuned_knn(img[tr_i], y_idx[tr_i], img[te_i], k_cls, (io_x, io_idx))
            knn_img[te_i] = lp
            lpz, best_z = tuned_knn(
                img[tr_i], y_idx[tr_i], img[te_i], k_cls, (io_x, io_idx), standardize=True
            )
            knn_imz[te_i] = lpz
            lp_t, best_t = tuned_knn(
                emb[tr], y_idx[tr], emb[te], k_cls, (np.zeros((0, emb.shape[1])), np.zeros(0, np.int64))
            )
            knn_txt[te] = lp_t
            chosen.append(
                f"seed {seed}: image k={best[0]} t={best[1]}, standardized k={best_z[0]} t={best_z[1]}, "
                f"text k={best_t[0]} t={best_t[1]}"
            )
        base = result.oof_branches  # text, embed, image
        knn_img_z = np.where(has_img[:, None], knn_img, 0.0)
        variants = {
            "default": base,
            "+ image k-NN": np.concatenate([base[:2], knn_img_z[None], base[2:]]),
            "+ image k-NN (standardized)": np.concatenate(
                [base[:2], np.where(has_img[:, None], knn_imz, 0.0)[None], base[2:]]
            ),
            "+ text k-NN": np.concatenate([base[:2], knn_txt[None], base[2:]]),
            "+ both k-NN": np.concatenate([base[:2], knn_txt[None], knn_img_z[None], base[2:]]),
        }
        for tr, te in folds:
            te_i = te[has_img[te]]
            add("image: logistic head", weighted_f1(y[te_i], classes[base[-1][te_i].argmax(1)]))
            add("image: k-NN", weighted_f1(y[te_i], classes[knn_img[te_i].argmax(1)]))
            add(
                "image: logistic + k-NN (summed log-probabilities)",
                weighted_f1(y[te_i], classes[(base[-1][te_i] + knn_img[te_i]).argmax(1)]),
            )
            add("image: k-NN (standardized)", weighted_f1(y[te_i], classes[knn_imz[te_i].argmax(1)]))
            add("text: sentence-embedding k-NN alone", weighted_f1(y[te], classes[knn_txt[te].argmax(1)]))
            for name, branches in variants.items():
                f = fit_fusion(branches[:, tr], has_img[tr], y_idx[tr])
                add(
                    f"fused: {name}",
                    weighted_f1(y[te], classes[f.proba(branches[:, te], has_img[te]).argmax(1)]),
                )
        print(f"seed {seed} done", flush=True)

    n_folds = len(scores["fused: default"])
    title = (
        f"k-NN branches, profile {args.profile}, out-of-fold on fit_model's folds (fold seeds {args.seeds}, "
        f"{n_folds} folds); {clock.stamp()}"
    )
    lines = fused_table(title, scores)
    lines += ["", "Near-duplicates and the k, t chosen per fold: " + "; ".join(chosen), ""]
    cost = lookup_cost()
    lines.append(
        "One k-NN lookup among 85,000 unit float32 rows (random), one BLAS thread: "
        + ", ".join(f"{k} {v:.1f} ms" for k, v in cost.items())
    )
    write_table(lines, out)


if __name__ == "__main__":
    main()
