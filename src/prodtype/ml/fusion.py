"""Late fusion of the branches by weighted log-linear pooling, learned on out-of-fold outputs (stacking).

Each branch gives class scores per product: the TF-IDF SVM margins, the sentence-embedding head's
log-probabilities and the image head's log-probabilities. The fused logits are

    z = sum_j w[g, j] * branch_j + b        (g = 1 when the product has an image, else 0)

with one weight per branch and image group and one bias per class, fitted by minimising the negative
log-likelihood of the out-of-fold outputs. Few parameters make it robust on small data, and fitting the
likelihood makes the probabilities calibrated (the review queue sorts by them). A product without an image
simply uses the group-0 weights, where the image branch's weight is fixed at zero.

A full logistic-regression stacker over all branch scores was measured too and scored lower on the
sample (weighted F1 0.645 vs 0.685 for the SVM alone): with 27 classes it has too many parameters.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax


def stack_branches(
    text_scores: np.ndarray, embed_logp: np.ndarray | None, image_logp: np.ndarray, has_image: np.ndarray
) -> np.ndarray:
    """(n_branches, n, n_classes): text, [embedding,] image (zero where there is no image)."""
    blocks = [text_scores]
    if embed_logp is not None:
        blocks.append(embed_logp)
    blocks.append(np.where(has_image[:, None], image_logp, 0.0))
    return np.stack(blocks)


@dataclass
class Fusion:
    weights: np.ndarray  # (2, n_branches): row 0 for products without an image, row 1 with one
    bias: np.ndarray  # (n_classes,)

    def logits(self, branches: np.ndarray, has_image: np.ndarray) -> np.ndarray:
        w = self.weights[has_image.astype(int)]  # (n, n_branches)
        return np.einsum("sn,snk->nk", w.T, branches) + self.bias

    def proba(self, branches: np.ndarray, has_image: np.ndarray) -> np.ndarray:
        return np.asarray(softmax(self.logits(branches, has_image), axis=1))


def fit_fusion(branches: np.ndarray, has_image: np.ndarray, y_idx: np.ndarray, l2: float = 1e-3) -> Fusion:
    """Weights and biases minimising the mean negative log-likelihood (plus a small L2 on the biases)."""
    s, n, k = branches.shape
    group = has_image.astype(int)
    onehot = np.zeros((n, k))
    onehot[np.arange(n), y_idx] = 1.0
    n_w = 2 * s

    def unpack(theta: np.ndarray) -> Fusion:
        w = theta[:n_w].reshape(2, s).copy()
        w[0, s - 1] = 0.0  # products without an image never use the image branch
        return Fusion(w, theta[n_w:])

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f = unpack(theta)
        z = f.logits(branches, has_image)
        logp = log_softmax(z, axis=1)
        loss = -float((logp * onehot).sum()) / n + l2 * float(f.bias @ f.bias)
        diff = (np.exp(logp) - onehot) / n  # d loss / d z
        per_row = np.einsum("nk,snk->ns", diff, branches)  # d loss / d w for each row's group
        grad_w = np.zeros((2, s))
        for g in (0, 1):
            grad_w[g] = per_row[group == g].sum(axis=0)
        grad_w[0, s - 1] = 0.0
        grad_b = diff.sum(axis=0) + 2 * l2 * f.bias
        return loss, np.concatenate([grad_w.ravel(), grad_b])

    theta0 = np.concatenate([np.full(n_w, 0.5), np.zeros(k)])
    res = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return unpack(res.x)


def expected_calibration_error(proba: np.ndarray, y_idx: np.ndarray, bins: int = 15) -> float:
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_idx
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in itertools.pairwise(edges):
        sel = (conf > lo) & (conf <= hi)
        if sel.any():
            ece += sel.mean() * abs(conf[sel].mean() - correct[sel].mean())
    return float(ece)
