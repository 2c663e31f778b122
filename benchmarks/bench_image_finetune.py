"""The photo branch alone with the last layers of EfficientNet-Lite0 fine-tuned (`make install-dev`).

The served photo head is a logistic regression on the frozen network's pooled features. Fine-tuning the
network itself is what usually lifts a photo classifier past such a linear probe, but a whole fine-tune
needs torch at training time (it is export-only here) and far more than the 5-minute training budget. This
benchmark measures the cheap end of it: the feature maps before the last layers are computed once (the
float network, from the packaged weights, the served 224-pixel view), and only the last layers are
trained on them, starting from the ImageNet weights:

- ``head``: the 1x1 head convolution (320 -> 1280, its batch norm as a fixed affine map), ReLU6, mean
  pooling and a new linear layer, on the 7x7x320 maps;
- ``block``: the last inverted-residual block as well, on the 7x7x192 maps before it.

AdamW (learning rate 3e-4 for the pretrained layers, 3e-3 for the new one, one-cycle schedule, weight
decay 0.05), batches of 64, label smoothing 0.1, dropout 0.3 and random horizontal flips of the maps.
Each is trained on the other folds' photos plus the image-only photos and scored on the held-out fold's
products that have a photo; folds StratifiedKFold(5) of all products, as in ``bench_accuracy.py``. The
reference, in the same run on the same folds, is the model's photo head (logistic regression, C=0.02 on
standardised features) on the same float network's pooled features. Δ is paired per fold, mean ± standard
error; ``s/fit`` is one fit's time on this machine (a model needs six: five out-of-fold, one final).

    python benchmarks/bench_image_finetune.py [--seeds 0 1] [--modes head block] [--epochs 15] [--out FILE]
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import numpy as np
from bench_image_resolution import pixels
from sample_folds import ROOT, Clock, fold_parser, load_sample, photos, score_rows, table, write_table
from sklearn.metrics import f1_score

from prodtype.ml.heads import fit_logistic
from prodtype.ml.train import TrainConfig, _folds

sys.path.insert(0, str(ROOT.parent / "scripts"))
import torch
from export_image_encoder import build_feature_model


def feature_maps(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The maps before the last block (N x 192 x 7 x 7) and after it (N x 320 x 7 x 7), of ``x`` (N x 3 x 224
    x 224, normalised): with the head of :class:`LastLayers`, ``extract_features`` split in two."""
    h = net._swish(net._bn0(net._conv_stem(x)))
    for block in list(net._blocks)[:-1]:
        h = block(h)
    return h, net._blocks[-1](h)


class LastLayers(torch.nn.Module):
    """The network's last layers, copied with their ImageNet weights (``block``: from the last block on;
    otherwise from the head convolution), then ReLU6, mean pooling and a new linear layer of ``n_classes``."""

    def __init__(self, net: torch.nn.Module, n_classes: int, block: bool) -> None:
        super().__init__()
        self.block = copy.deepcopy(net._blocks[-1]) if block else None
        self.conv = copy.deepcopy(net._conv_head)
        self.bn = copy.deepcopy(net._bn1)
        self.drop = torch.nn.Dropout(0.3)
        self.fc = torch.nn.Linear(self.conv.out_channels, n_classes)

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        if self.block is not None:
            x = self.block(x)
        return torch.nn.functional.relu6(self.bn(self.conv(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.pooled(x)))

    def train(self, mode: bool = True) -> LastLayers:
        super().train(mode)
        self.bn.eval()  # the batch norms keep their ImageNet statistics: a fixed affine map
        if self.block is not None:
            self.block.eval()
        return self


def fine_tune(
    net: torch.nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    block: bool,
    epochs: int,
    seed: int,
) -> LastLayers:
    torch.manual_seed(seed)
    model = LastLayers(net, n_classes, block).train()
    body = [p for name, p in model.named_parameters() if not name.startswith("fc.")]
    opt = torch.optim.AdamW(
        [{"params": body, "lr": 3e-4}, {"params": model.fc.parameters(), "lr": 3e-3}], weight_decay=0.05
    )
    batches = (len(y) + 63) // 64
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[3e-4, 3e-3], total_steps=epochs * batches)
    for _ in range(epochs):
        perm = torch.randperm(len(y))
        for b in range(batches):
            i = perm[b * 64 : (b + 1) * 64]
            xb = x[i]
            xb = torch.where((torch.rand(len(i)) < 0.5)[:, None, None, None], xb.flip(3), xb)
            loss = torch.nn.functional.cross_entropy(model(xb), y[i], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


def main() -> None:
    parser = fold_parser(__doc__, ROOT / "results" / "image_finetune.md")
    parser.add_argument("--modes", nargs="+", choices=("head", "block"), default=["head", "block"])
    parser.add_argument("--epochs", type=int, default=15)
    args = parser.parse_args()
    ph = photos(load_sample(args.data))
    y, y_io, classes, kept, row = ph.y, ph.y_io, ph.classes, ph.kept, ph.row
    n = len(y)
    net = build_feature_model().net  # type: ignore[attr-defined]
    clock = Clock()
    before, after = [], []
    with torch.no_grad():
        for b in range(0, len(kept), 32):
            x = np.stack([pixels(str(ph.paths[i]), 224, 0.875) for i in kept[b : b + 32]]).transpose(
                0, 3, 1, 2
            )
            pre, post = feature_maps(net, torch.from_numpy(np.ascontiguousarray(x)))
            before.append(pre)
            after.append(post)
        maps = {"block": torch.cat(before), "head": torch.cat(after)}
        pooled = net._swish(net._bn1(net._conv_head(maps["head"]))).mean((2, 3)).numpy()
    print(f"feature maps of {len(kept)} photos: {clock.elapsed():.0f} s", flush=True)
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[int(y[i]) if i < n else int(y_io[i - n])] for i in kept])
    io_rows = np.array([row[i] for i in kept if i >= n])
    has = np.array([i in row for i in range(n)])
    ref_name = "logistic head on the frozen float network's features (reference)"
    scores: dict[str, list[float]] = {ref_name: []}
    seconds: dict[str, list[float]] = {ref_name: []}
    for seed in args.seeds:
        for tr, te in _folds(y, 5, seed):
            tr, te = tr[has[tr]], te[has[te]]
            tr_rows = np.concatenate([[row[i] for i in tr], io_rows]).astype(int)
            te_rows = np.array([row[i] for i in te])
            t = time.perf_counter()
            head = fit_logistic(
                pooled[tr_rows], labels[tr_rows], np.arange(len(classes)), TrainConfig().image_c, seed
            )
            seconds[ref_name].append(time.perf_counter() - t)
            scores[ref_name].append(
                f1_score(labels[te_rows], head.scores(pooled[te_rows]).argmax(1), average="weighted")
            )
            for mode in args.modes:
                layers = "last block + head convolution" if mode == "block" else "head convolution"
                name = f"fine-tuned: {layers}, {args.epochs} epochs"
                t = time.perf_counter()
                model = fine_tune(
                    net,
                    maps[mode][tr_rows],
                    torch.from_numpy(labels[tr_rows]),
                    len(classes),
                    mode == "block",
                    args.epochs,
                    seed,
                )
                seconds.setdefault(name, []).append(time.perf_counter() - t)
                with torch.no_grad():
                    pred = model(maps[mode][te_rows]).argmax(1).numpy()
                scores.setdefault(name, []).append(f1_score(labels[te_rows], pred, average="weighted"))
            print(
                "fold " + " ".join(f"{v[-1]:.4f}" for v in scores.values()) + f"  {clock.elapsed():.0f} s",
                flush=True,
            )
    ref = scores[ref_name]
    title = (
        f"Photo branch alone (float EfficientNet-Lite0, 224 px), products with a photo ({int(has.sum())}), "
        f"+{len(io_rows)} image-only photos in training; fold seeds {args.seeds}, {len(ref)} folds; "
        f"{clock.stamp(f'{torch.get_num_threads()} torch threads')}"
    )
    columns = ["photo head", "weighted F1 (mean ± sd)", "Δ vs reference, paired (mean ± se)", "s/fit"]
    rows = score_rows(scores, ref, extra={n: f"{statistics.mean(v):.1f}" for n, v in seconds.items()})
    write_table(table(title, columns, rows), args.out)


if __name__ == "__main__":
    main()
