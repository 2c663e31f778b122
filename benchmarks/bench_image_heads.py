"""The photo branch alone: which head, and what the int8 encoder costs, on the accuracy benchmark's folds.

For each image encoder (the int8 EfficientNet-Lite0 served by default, and the float network it was
quantised from) and each head (the model's logistic regression, C=0.02 on standardised features; linear
discriminant analysis with a Ledoit-Wolf shrunk covariance), fitted on the other folds' photos plus the
image-only photos, scored on the held-out fold's products that have a photo. Folds: StratifiedKFold(5) of
all products with fold seeds 0 and 1, as in ``bench_accuracy.py``. Δ is paired per fold against the
served configuration (int8, logistic), mean ± standard error.

    python benchmarks/bench_image_heads.py [--seeds 0 1] [--cache-dir .cache/bench-features] [--out FILE]
"""

from __future__ import annotations

import numpy as np
from sample_folds import ROOT, Clock, fold_parser, load_sample, score_rows, table, write_table
from sklearn.metrics import f1_score

from prodtype.data.challenge import image_paths
from prodtype.ml.heads import fit_lda, fit_logistic
from prodtype.ml.image import ImageEncoder
from prodtype.ml.train import TrainConfig, _folds


def main() -> None:
    args = fold_parser(__doc__, ROOT / "results" / "image_heads.md").parse_args()
    ds = load_sample(args.data)
    y = ds.products["label"].to_numpy(dtype=np.int64)
    y_io = ds.image_only["label"].to_numpy(dtype=np.int64)
    classes = np.unique(np.concatenate([y, y_io]))
    n, image_c = len(y), TrainConfig().image_c
    clock = Clock()
    scores: dict[str, list[float]] = {}
    for name in ("lite0-int8", "lite0"):
        encoder = ImageEncoder(name=name)
        paths = image_paths(ds.products) + image_paths(ds.image_only)
        feats, has, _ = encoder.encode_files(paths, args.cache_dir / "image", progress=False)
        x, has_x = feats[:n], has[:n]
        x_io, y_io_kept = feats[n:][has[n:]], y_io[has[n:]]
        for seed in args.seeds:
            for tr, te in _folds(y, 5, seed):
                tr, te = tr[has_x[tr]], te[has_x[te]]
                x_tr, y_tr = np.vstack([x[tr], x_io]), np.concatenate([y[tr], y_io_kept])
                for head_name, head in (
                    ("logistic C=0.02", fit_logistic(x_tr, y_tr, classes, image_c, seed)),
                    ("LDA, Ledoit-Wolf", fit_lda(x_tr, y_tr, classes)),
                ):
                    pred = classes[head.scores(x[te]).argmax(1)]
                    key = f"{encoder.version}: {head_name}"
                    scores.setdefault(key, []).append(f1_score(y[te], pred, average="weighted"))
        print(f"{name} done", flush=True)

    ref = next(iter(scores.values()))
    title = (
        f"Photo branch alone, products with a photo ({int((ds.products['image_path'].notna()).sum())}), "
        f"+{len(y_io)} image-only photos in training; fold seeds {args.seeds}, {len(ref)} folds; "
        f"{clock.stamp()}"
    )
    columns = ["encoder: head", "weighted F1 (mean ± sd)", "Δ vs the first row, paired (mean ± se)"]
    write_table(table(title, columns, score_rows(scores, ref)), args.out)


if __name__ == "__main__":
    main()
