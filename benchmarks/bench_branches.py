"""More text models in the stack, measured beside the model's own branches on the accuracy benchmark's folds.

For each fold seed, :func:`prodtype.ml.train.fit_model` on the whole sample gives the out-of-fold outputs of
its branches (TF-IDF SVM, sentence-embedding head, photo head) on StratifiedKFold(5, seed), the folds of
``bench_accuracy.py``. Each candidate is computed out-of-fold on the same folds, fitted on the training rows
only, with settings fixed beforehand (nothing tuned on the held-out folds), and the fusion is refitted nested
(fitted on the other folds, scored on the held-out one), so every Δ is paired against the same stack:

- **+ Complement naive Bayes** on the model's TF-IDF features (alpha 0.3) as a fourth branch: a generative
  model whose errors differ from the SVM's;
- **SVM with balanced class weights** instead of the SVM (rare types weigh as much as common ones);
- **+ both**: the balanced SVM as a fourth branch beside the plain one;
- **unlabelled texts in the vocabulary**: the TF-IDF fitted on the sample's texts plus the unlabelled test
  texts (``X_test_sample.csv``; never their labels, which the challenge does not give) instead of the
  labelled texts alone, and the SVM refitted on it.

    python benchmarks/bench_branches.py [--seeds 0 1] [--cache-dir .cache/bench-features] [--out FILE]
"""

from __future__ import annotations

import numpy as np
from sample_folds import (
    ROOT,
    Clock,
    fold_parser,
    fused_table,
    load_sample,
    out_of_fold,
    unlabelled_texts,
    weighted_f1,
    write_table,
)
from sklearn.naive_bayes import ComplementNB
from sklearn.svm import LinearSVC
from threadpoolctl import threadpool_limits

from prodtype.ml.fusion import fit_fusion
from prodtype.ml.text import TfidfFeatures
from prodtype.ml.train import TrainConfig, _folds

NB_ALPHA = 0.3


def _svm_scores(
    x_tr, y_tr, x_te, classes: np.ndarray, c: float, seed: int, weights: str | None
) -> np.ndarray:  # type: ignore[no-untyped-def]
    model = LinearSVC(C=c, random_state=seed, class_weight=weights).fit(x_tr, y_tr)
    out = np.full((x_te.shape[0], len(classes)), -30.0)
    out[:, np.searchsorted(classes, model.classes_)] = model.decision_function(x_te)
    return out


def _nb_logp(x_tr, y_tr, x_te, classes: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    model = ComplementNB(alpha=NB_ALPHA).fit(x_tr, y_tr)
    out = np.full((x_te.shape[0], len(classes)), -30.0)
    out[:, np.searchsorted(classes, model.classes_)] = model.predict_log_proba(x_te)
    return out


def main() -> None:
    args = fold_parser(__doc__, ROOT / "results" / "branches.md").parse_args()
    d = args.data
    ds = load_sample(d)
    y = ds.products["label"].to_numpy(dtype=np.int64)
    texts = ds.products["text"].tolist()
    unlabelled = unlabelled_texts(d)
    cfg = TrainConfig()
    x_text = TfidfFeatures(cfg.tfidf).fit(texts).transform(texts)
    x_wide = TfidfFeatures(cfg.tfidf).fit(texts + unlabelled).transform(texts)

    scores: dict[str, list[float]] = {}
    clock = Clock()
    for seed in args.seeds:
        result = out_of_fold(ds, TrainConfig(seed=seed), args.cache_dir)
        base, has_img = result.oof_branches, result.has_image
        classes = result.model.classes
        y_idx = np.searchsorted(classes, y)
        folds = _folds(y, 5, seed)
        nb, balanced, wide = (np.zeros((len(y), len(classes))) for _ in range(3))
        with threadpool_limits(1):
            for tr, te in folds:
                nb[te] = _nb_logp(x_text[tr], y[tr], x_text[te], classes)
                balanced[te] = _svm_scores(
                    x_text[tr], y[tr], x_text[te], classes, cfg.svm_c, seed, "balanced"
                )
                wide[te] = _svm_scores(x_wide[tr], y[tr], x_wide[te], classes, cfg.svm_c, seed, None)
        variants = {
            "default": base,
            "+ Complement naive Bayes": np.concatenate([base[:2], nb[None], base[2:]]),
            "SVM with balanced class weights": np.concatenate([balanced[None], base[1:]]),
            "+ balanced SVM beside the SVM": np.concatenate([base[:2], balanced[None], base[2:]]),
            "unlabelled texts in the vocabulary": np.concatenate([wide[None], base[1:]]),
        }
        for tr, te in folds:
            scores.setdefault("text: SVM alone", []).append(
                weighted_f1(y[te], classes[base[0][te].argmax(1)])
            )
            scores.setdefault("text: naive Bayes alone", []).append(
                weighted_f1(y[te], classes[nb[te].argmax(1)])
            )
            scores.setdefault("text: balanced SVM alone", []).append(
                weighted_f1(y[te], classes[balanced[te].argmax(1)])
            )
            scores.setdefault("text: SVM, vocabulary with unlabelled texts", []).append(
                weighted_f1(y[te], classes[wide[te].argmax(1)])
            )
            for name, branches in variants.items():
                f = fit_fusion(branches[:, tr], has_img[tr], y_idx[tr])
                pred = classes[f.proba(branches[:, te], has_img[te]).argmax(1)]
                scores.setdefault(f"fused: {name}", []).append(weighted_f1(y[te], pred))
        print(f"seed {seed} done", flush=True)

    ref = scores["fused: default"]
    title = (
        f"Text branches beside the default stack, out of fold (seeds {args.seeds}, {len(ref)} folds; "
        f"{len(unlabelled)} unlabelled texts); {clock.stamp()}"
    )
    lines = fused_table(title, scores)
    write_table(lines, args.out)


if __name__ == "__main__":
    main()
