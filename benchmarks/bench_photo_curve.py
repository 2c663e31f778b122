"""The photo branch's learning curve: how its weighted F1 grows with the number of labelled training photos.

The served photo branch (the default encoder's features, the model's logistic head with its C), fitted on a
random fraction of each fold's training photos (the other folds' products that have a photo, plus the
image-only photos) and scored on the held-out fold's products that have a photo. Folds: StratifiedKFold(5)
of all products with the fold seeds of ``bench_accuracy.py``; each fraction below 1 is drawn ``--repeats``
times per fold (its own random subset each time, seeded by fold seed, fold and draw), the whole set once,
so the last row is the photo branch of ``bench_image_heads.py``'s first row.

It answers whether the photo branch is limited by its head or by the sample's size: the table gives the
gain per doubling of the photos, and a least-squares line F1 = a + b log2(photos) through every fit,
extrapolated to the number of photos a weighted F1 of 0.50 would need (an extrapolation, said as such).

    python benchmarks/bench_photo_curve.py [--fractions 0.25 0.5 0.75 1] [--repeats 3] [--seeds 0 1]

On the full data (``--data`` its folder) every fit is on up to 68,000 photos: ``--seeds 0 --repeats 1
--fractions 0.02 0.1 0.5 1`` keeps it to 20 fits and shows whether the line bends beyond the sample's size.
"""

from __future__ import annotations

import statistics

import numpy as np
from sample_folds import ROOT, Clock, fold_parser, load_sample, table, weighted_f1, write_table

from prodtype.data.challenge import image_paths
from prodtype.ml.heads import fit_logistic
from prodtype.ml.image import ImageEncoder
from prodtype.ml.train import TrainConfig, _folds

TARGET = 0.50


def line_fit(n: list[int], f1: list[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``f1 = a + b * log2(n)``."""
    b, a = np.polyfit(np.log2(np.asarray(n, dtype=float)), np.asarray(f1), 1)
    return float(a), float(b)


def draws(n_train: int, fraction: float, repeats: int, key: tuple[int, int]) -> list[np.ndarray]:
    """The training rows of each fit at ``fraction`` of ``n_train`` rows: ``repeats`` random subsets, each
    seeded by ``key`` (fold seed, fold) and its draw, in row order; below 1 only, the whole set once."""
    if fraction >= 1:
        return [np.arange(n_train)]
    size = round(fraction * n_train)
    return [np.sort(np.random.default_rng([*key, d]).permutation(n_train)[:size]) for d in range(repeats)]


def photos_for(target: float, a: float, b: float) -> float:
    """The number of photos at which the line ``a + b log2(photos)`` reaches ``target``."""
    return float(2 ** ((target - a) / b))


def main() -> None:
    parser = fold_parser(__doc__, ROOT / "results" / "photo_curve.md")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--repeats", type=int, default=3, help="draws per fold of each fraction below 1")
    args = parser.parse_args()
    if any(not 0 < f <= 1 for f in args.fractions):
        parser.error(f"--fractions {args.fractions}: expected fractions in (0, 1]")
    if args.repeats < 1 or len(set(args.fractions)) < 2:
        parser.error("expected --repeats of at least 1 and two different --fractions at least (for a line)")
    ds = load_sample(args.data)
    y = ds.products["label"].to_numpy(dtype=np.int64)
    y_io = ds.image_only["label"].to_numpy(dtype=np.int64)
    classes = np.unique(np.concatenate([y, y_io]))
    config, n = TrainConfig(), len(y)
    clock = Clock()
    encoder = ImageEncoder(name=config.image_encoder)
    feats, has, _ = encoder.encode_files(
        image_paths(ds.products) + image_paths(ds.image_only), args.cache_dir / "image", progress=False
    )
    x, has_x = feats[:n], has[:n]
    x_io, y_io_kept = feats[n:][has[n:]], y_io[has[n:]]

    scores: dict[float, list[float]] = {f: [] for f in sorted(args.fractions)}
    sizes: dict[float, list[int]] = {f: [] for f in scores}
    for seed in args.seeds:
        for k, (tr, te) in enumerate(_folds(y, 5, seed)):
            tr, te = tr[has_x[tr]], te[has_x[te]]
            x_tr, y_tr = np.vstack([x[tr], x_io]), np.concatenate([y[tr], y_io_kept])
            for frac in scores:
                for pick in draws(len(y_tr), frac, args.repeats, (seed, k)):
                    head = fit_logistic(x_tr[pick], y_tr[pick], classes, config.image_c, seed)
                    scores[frac].append(weighted_f1(y[te], classes[head.scores(x[te]).argmax(1)]))
                    sizes[frac].append(len(pick))
        print(f"fold seed {seed} done", flush=True)

    a, b = line_fit([s for f in scores for s in sizes[f]], [v for f in scores for v in scores[f]])
    upper = [f for f in scores if f >= 0.5]
    a_up, b_up = line_fit([s for f in upper for s in sizes[f]], [v for f in upper for v in scores[f]])
    rows, previous = [], None
    for frac, values in scores.items():
        photos, mean = statistics.mean(sizes[frac]), statistics.mean(values)
        se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
        step = ""
        if previous is not None:
            step = f"{(mean - previous[1]) / np.log2(photos / previous[0]):+.4f}"
        rows.append(
            f"| {frac:g} | {photos:.0f} | {len(values)} | {mean:.4f} ± {statistics.stdev(values):.4f} "
            f"| {se:.4f} | {step} |"
        )
        previous = (photos, mean)
    title = (
        f"Photo branch alone ({encoder.version}, logistic C={config.image_c}) against the number of labelled "
        f"training photos; products with a photo scored; fold seeds {args.seeds}; {clock.stamp()}"
    )
    columns = [
        "fraction of the training photos",
        "training photos (mean)",
        "fits",
        "weighted F1 (mean ± sd)",
        "standard error",
        "gain per doubling since the row above",
    ]
    full = ds.products["image_path"].notna().sum()
    notes = [
        "",
        f"Line through every fit: F1 = {a:.4f} + {b:.4f} log2(photos), i.e. {b:+.4f} per doubling; "
        f"through the fractions >= 0.5 only: {b_up:+.4f} per doubling.",
        f"Extrapolated (not measured): F1 {TARGET:.2f} at about {photos_for(TARGET, a, b):.0f} training "
        f"photos by the first line, {photos_for(TARGET, a_up, b_up):.0f} by the second (a fold's training "
        f"set has {statistics.mean(sizes[max(scores)]):.0f} at fraction {max(scores):g}; the sample has "
        f"{full} products with a photo in all).",
    ]
    write_table(table(title, columns, rows) + notes, args.out)


if __name__ == "__main__":
    main()
