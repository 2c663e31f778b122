"""More views of each training photo for the photo head (augmentation in feature space), and at test time.

The served int8 encoder computes the features of each photo in five views: the served one (the 7/8 centre
crop of the photo padded to a white square), its mirror image, the whole square, a tighter crop (0.7), and
the mirrored whole square. The model's photo head (logistic regression on standardised features, C=0.02
unless named) is fitted on the training photos' served view only (the reference), or on several views of
each (each view a row with the photo's label), and scored on the held-out photos' served view, or on the
mean of the five views' log-probabilities (test-time augmentation). Folds as in ``bench_accuracy.py``:
StratifiedKFold(5) of all products, fold seeds 0 and 1, the image-only photos in every training set; Δ
paired per fold against the reference, mean ± standard error.

    python benchmarks/bench_image_views.py [--seeds 0 1] [--out FILE]
"""

from __future__ import annotations

import dataclasses

import numpy as np
from PIL import Image
from sample_folds import ROOT, Clock, fold_parser, load_sample, photos, score_rows, table, write_table
from sklearn.metrics import f1_score

from prodtype.ml.heads import fit_logistic
from prodtype.ml.image import ImageEncoder, preprocess
from prodtype.ml.train import TrainConfig, _folds

TRAIN_SETS = {
    "served view (reference)": ("served",),
    "served + mirror": ("served", "mirror"),
    "served + whole + tight": ("served", "whole", "tight"),
    "all five views": ("served", "mirror", "whole", "tight", "mirror whole"),
}


def main() -> None:
    args = fold_parser(__doc__, ROOT / "results" / "image_views.md").parse_args()
    encoder = ImageEncoder()
    spec = encoder.spec
    views = {
        "served": (False, spec.crop_fraction),
        "mirror": (True, spec.crop_fraction),
        "whole": (False, 1.0),
        "tight": (False, 0.7),
        "mirror whole": (True, 1.0),
    }
    ph = photos(load_sample(args.data))
    y, y_io, classes, paths, kept, row = ph.y, ph.y_io, ph.classes, ph.paths, ph.kept, ph.row
    n = len(y)
    clock = Clock()
    parts: dict[str, list[np.ndarray]] = {v: [] for v in views}
    for b in range(0, len(kept), 32):
        opened = [Image.open(str(paths[i])).convert("RGB") for i in kept[b : b + 32]]
        for view, (mirror, crop) in views.items():
            view_spec = dataclasses.replace(spec, crop_fraction=crop)
            batch = [
                preprocess(p.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if mirror else p, view_spec)
                for p in opened
            ]
            parts[view].append(encoder.encode_preprocessed(np.stack(batch)))
    feats = {v: np.vstack(p) for v, p in parts.items()}
    io_rows = [row[i] for i in kept if i >= n]
    y_io_kept = np.array([y_io[i - n] for i in kept if i >= n])
    has = np.array([i in row for i in range(n)])
    image_c = TrainConfig().image_c
    runs = [(name, vs, image_c) for name, vs in TRAIN_SETS.items()]
    runs += [(f"all five views, C={c}", TRAIN_SETS["all five views"], c) for c in (0.01, 0.05)]
    scores: dict[str, list[float]] = {}
    for seed in args.seeds:
        for tr, te in _folds(y, 5, seed):
            tr, te = tr[has[tr]], te[has[te]]
            tr_rows = [row[i] for i in tr] + io_rows
            te_rows = [row[i] for i in te]
            y_tr = np.concatenate([y[tr], y_io_kept])
            for name, used, c in runs:
                x_tr = np.vstack([feats[v][tr_rows] for v in used])
                head = fit_logistic(x_tr, np.tile(y_tr, len(used)), classes, c, seed)
                pred = classes[head.scores(feats["served"][te_rows]).argmax(1)]
                scores.setdefault(name, []).append(f1_score(y[te], pred, average="weighted"))
                if name == "all five views":
                    mean = sum(head.log_proba(feats[v][te_rows]) for v in views)
                    scores.setdefault("all five views, five-view test-time average", []).append(
                        f1_score(y[te], classes[np.asarray(mean).argmax(1)], average="weighted")
                    )
    ref = scores["served view (reference)"]
    title = (
        f"Photo head on more views of each photo ({encoder.version}), products with a photo "
        f"({int(has.sum())}), +{len(io_rows)} image-only photos in training; fold seeds {args.seeds}, "
        f"{len(ref)} folds; {clock.stamp()}"
    )
    columns = ["photo head trained on", "weighted F1 (mean ± sd)", "Δ vs the served view, paired (mean ± se)"]
    write_table(table(title, columns, score_rows(scores, ref)), args.out)


if __name__ == "__main__":
    main()
