"""The photo branch alone at other input sizes and poolings of EfficientNet-Lite0 (`make install-dev`).

The served encoder sees the photo at 224 pixels (the 7/8 centre crop of the photo padded to a square) and
averages its last feature map. Networks trained at 224 often describe a photo better a little larger (the
objects then have the apparent size they had in training crops), and other poolings than the mean keep
other information. This benchmark computes the float network's features (torch, from the packaged weights,
as ``scripts/export_image_encoder.py`` builds it) at 224, 256, 288 and 320 pixels, with the whole photo at
288 too, pooled by mean, generalised mean (p=3) and mean with max concatenated, plus 224 and 288 means
concatenated. Each set of features gets the model's photo head (logistic regression, C=0.02 on standardised
features), fitted on the other folds' photos plus the image-only photos and scored on the held-out fold's
products that have a photo; folds StratifiedKFold(5) of all products, fold seeds 0 and 1, as in
``bench_accuracy.py``. Δ is paired per fold against the 224-pixel mean (the float network of the served
size), mean ± standard error. ``ms/photo`` is the network's time per photo in torch (batches of 32, the
process's threads), to compare sizes, not the served onnxruntime cost.

    python benchmarks/bench_image_resolution.py [--seeds 0 1] [--out FILE]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from PIL import Image
from sample_folds import ROOT, Clock, fold_parser, load_sample, photos, score_rows, table, write_table
from sklearn.metrics import f1_score

from prodtype.ml.heads import fit_logistic
from prodtype.ml.train import TrainConfig, _folds

sys.path.insert(0, str(ROOT.parent / "scripts"))
import torch
from export_image_encoder import build_feature_model

SIZES = ((224, 0.875), (256, 0.875), (288, 0.875), (320, 0.875), (288, 1.0))


def pixels(path: str, size: int, crop: float) -> np.ndarray:
    """The photo padded to a white square, its centre ``crop`` resized to ``size`` (bicubic), (x-127)/128."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    side = max(w, h)
    square = Image.new("RGB", (side, side), (255, 255, 255))
    square.paste(img, ((side - w) // 2, (side - h) // 2))
    c = side * crop
    o = (side - c) / 2
    out = square.resize((size, size), Image.Resampling.BICUBIC, box=(o, o, o + c, o + c))
    return (np.asarray(out, dtype=np.float32) - 127.0) / 128.0


def main() -> None:
    args = fold_parser(__doc__, ROOT / "results" / "image_resolution.md").parse_args()
    ph = photos(load_sample(args.data))
    y, y_io, classes, paths, kept, row = ph.y, ph.y_io, ph.classes, ph.paths, ph.kept, ph.row
    n = len(y)
    net = build_feature_model().net  # type: ignore[attr-defined]
    clock = Clock()
    feats: dict[str, np.ndarray] = {}
    ms: dict[str, float] = {}
    for size, crop in SIZES:
        mean, gem, peak = [], [], []
        took = 0.0
        for b in range(0, len(kept), 32):
            x = np.stack([pixels(str(paths[i]), size, crop) for i in kept[b : b + 32]]).transpose(0, 3, 1, 2)
            t = time.perf_counter()
            with torch.no_grad():
                fm = net.extract_features(torch.from_numpy(np.ascontiguousarray(x)))
            took += time.perf_counter() - t
            mean.append(fm.mean((2, 3)).numpy())
            peak.append(fm.amax((2, 3)).numpy())
            gem.append(fm.clamp(min=1e-6).pow(3).mean((2, 3)).pow(1 / 3).numpy())
        key = f"{size} px" + (", whole photo" if crop == 1.0 else "")
        feats[f"{key}: mean"] = np.vstack(mean)
        feats[f"{key}: generalised mean p=3"] = np.vstack(gem)
        feats[f"{key}: mean + max"] = np.hstack([np.vstack(mean), np.vstack(peak)])
        for pooling in ("mean", "generalised mean p=3", "mean + max"):
            ms[f"{key}: {pooling}"] = 1000 * took / len(kept)
        print(f"{key}: {1000 * took / len(kept):.1f} ms/photo", flush=True)
    feats["224 + 288 px means concatenated"] = np.hstack([feats["224 px: mean"], feats["288 px: mean"]])
    ms["224 + 288 px means concatenated"] = ms["224 px: mean"] + ms["288 px: mean"]

    io_rows = np.array([row[i] for i in kept if i >= n])
    y_io_kept = np.array([y_io[i - n] for i in kept if i >= n])
    has = np.array([i in row for i in range(n)])
    scores: dict[str, list[float]] = {}
    image_c = TrainConfig().image_c
    for seed in args.seeds:
        for tr, te in _folds(y, 5, seed):
            tr, te = tr[has[tr]], te[has[te]]
            tr_rows, te_rows = [row[i] for i in tr], [row[i] for i in te]
            for name, x in feats.items():
                x_tr = np.vstack([x[tr_rows], x[io_rows]])
                head = fit_logistic(x_tr, np.concatenate([y[tr], y_io_kept]), classes, image_c, seed)
                pred = classes[head.scores(x[te_rows]).argmax(1)]
                scores.setdefault(name, []).append(f1_score(y[te], pred, average="weighted"))
    ref = scores["224 px: mean"]
    title = (
        f"Photo branch alone (float EfficientNet-Lite0), products with a photo ({int(has.sum())}), "
        f"+{len(io_rows)} image-only photos in training; fold seeds {args.seeds}, {len(ref)} folds; "
        f"{clock.stamp(f'{torch.get_num_threads()} torch threads')}"
    )
    columns = [
        "input, pooling",
        "weighted F1 (mean ± sd)",
        "Δ vs 224 px mean, paired (mean ± se)",
        "ms/photo",
    ]
    rows = score_rows(scores, ref, extra={name: f"{ms[name]:.0f}" for name in scores})
    write_table(table(title, columns, rows), args.out)


if __name__ == "__main__":
    main()
