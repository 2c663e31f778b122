"""Which review order buys the most accuracy per review: least-confident first (the queue today), random,
smallest margin, class-balanced uncertainty and a diversity order, over several seeds.

For each seed, with the evaluation set fixed for all seeds (a stratified 20 % of the sample, never trained
on and never submitted):

1. the rest of the sample is split into a pool of unseen products (``--pool``, stratified draw per seed)
   and the base data; a base model is trained on the base data (``--profile fast``, the default);
2. every pool product is submitted through the predictions service (check, predict with the loaded bundle,
   record) into a real SQLite database, as customers' products reach the review queue;
3. for each order, the first ``--budget`` pending predictions in that order are reviewed through the reviews
   service (accepted when the model was right, corrected to the true type when wrong); the reviewed
   products are exported by the loop's feedback export, combined with the base data as the loop's retrain
   does, and a model is trained on base + feedback; its weighted F1 is measured on the evaluation set; the
   reviews are then undone for the next order (same pool, same base model, same database);
4. the differences are paired: every order of a seed starts from the same base model and pool.

Orders:

- ``least-confident``: the queue's order (``list_predictions(..., sort="confidence")``, what the review page
  shows), lowest top-1 probability first;
- ``random``: a random permutation (seeded);
- ``margin``: smallest difference between the top-1 and top-2 probabilities first;
- ``class-balanced``: round robin over the predicted types, least confident first within each type;
- ``diverse``: k-means of the pool's sentence embeddings into ``budget`` clusters, the least confident
  product of each cluster, least confident first.

Prints the table (mean and sd of weighted F1 over seeds, paired difference to least-confident with its sd)
and writes it to ``benchmarks/results/review_order.md`` (per-seed figures in ``review_order.json``). The
rule: an order beats least-confident when its mean paired difference is above 0 and above twice the sd of
its paired differences.

    python benchmarks/bench_review_order.py [--seeds 0 1 2 3 4] [--pool 600] [--budget 150]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import f1_score
from sqlalchemy import update

from prodtype.catalog import load_catalog
from prodtype.data.challenge import Dataset, image_paths, load_dataset
from prodtype.db import migrate
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.db.tables import Prediction, Role, Status, User
from prodtype.loop.evalset import stratified_eval_index
from prodtype.loop.feedback import combine, export_feedback, load_feedback
from prodtype.ml.bundle import save_bundle
from prodtype.ml.embeddings import encode_cached, get_embedder
from prodtype.ml.image import ImageEncoder
from prodtype.ml.model import FusedModel
from prodtype.ml.train import TrainConfig, fit_model
from prodtype.serving import predictions, reviews, users
from prodtype.serving.model_holder import load_model
from prodtype.serving.predictions import PredictionFilter
from prodtype.serving.storage import ImageStore

ROOT = Path(__file__).resolve().parent
DEFAULT_ORDER = "least-confident"


# -- the orders: each takes the pending predictions and returns their ids, first to review first ---------


def _margin(row: Prediction) -> float:
    probs = [*sorted((float(c["probability"]) for c in row.top_k), reverse=True), 0.0, 0.0]
    return probs[0] - probs[1]


def order_random(rows: Sequence[Prediction], seed: int, **_: Any) -> list[int]:
    ids = [r.id for r in rows]
    return [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]


def order_margin(rows: Sequence[Prediction], **_: Any) -> list[int]:
    return [r.id for r in sorted(rows, key=lambda r: (_margin(r), r.id))]


def order_class_balanced(rows: Sequence[Prediction], **_: Any) -> list[int]:
    by_type: dict[int, list[Prediction]] = {}
    for r in sorted(rows, key=lambda r: (r.confidence, r.id)):
        by_type.setdefault(r.predicted_code, []).append(r)
    out: list[int] = []
    depth = 0
    while len(out) < len(rows):
        layer = [group[depth] for group in by_type.values() if len(group) > depth]
        out.extend(r.id for r in sorted(layer, key=lambda r: (r.confidence, r.id)))
        depth += 1
    return out


def order_diverse(
    rows: Sequence[Prediction], seed: int, budget: int, embeddings: dict[int, np.ndarray], **_: Any
) -> list[int]:
    x = np.stack([embeddings[r.id] for r in rows])
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-9)
    labels = KMeans(n_clusters=min(budget, len(rows)), n_init=1, random_state=seed).fit_predict(x)
    best: dict[int, Prediction] = {}
    for r, cluster in zip(rows, labels, strict=True):
        if cluster not in best or (r.confidence, r.id) < (best[cluster].confidence, best[cluster].id):
            best[cluster] = r
    first = sorted(best.values(), key=lambda r: (r.confidence, r.id))
    chosen = {r.id for r in first}
    rest = [r for r in sorted(rows, key=lambda r: (r.confidence, r.id)) if r.id not in chosen]
    return [r.id for r in first + rest]


ORDERS: dict[str, Callable[..., list[int]] | None] = {
    DEFAULT_ORDER: None,  # the service's own queue order
    "random": order_random,
    "margin": order_margin,
    "class-balanced": order_class_balanced,
    "diverse": order_diverse,
}


# -- data ------------------------------------------------------------------------------------------------


def subset(ds: Dataset, index: Sequence[int], with_image_only: bool = True) -> Dataset:
    return Dataset(
        products=ds.products.loc[list(index)],
        image_only=ds.image_only if with_image_only else ds.image_only.iloc[0:0],
        fingerprint=f"{ds.fingerprint}:{len(index)}:{hash(tuple(index))}",
        sources=dict(ds.sources),
    )


def draw_pool(labels: pd.Series, size: int, seed: int) -> list[int]:
    """A stratified draw of exactly ``size`` products (topped up or trimmed at random)."""
    chosen = stratified_eval_index(labels, size / len(labels), seed=seed)
    rng = np.random.default_rng(seed)
    if len(chosen) > size:
        chosen = sorted(int(i) for i in rng.choice(chosen, size=size, replace=False))
    elif len(chosen) < size:
        rest = np.array(sorted(set(labels.index) - set(chosen)))
        chosen += [int(i) for i in rng.choice(rest, size=size - len(chosen), replace=False)]
    return sorted(chosen)


class Features:
    """Cached image features and sentence embeddings of the sample (the feature store), for evaluation."""

    def __init__(self, cfg: TrainConfig, cache: Path) -> None:
        self.cfg = cfg
        self.image_cache, self.text_cache = cache / "image", cache / "text"
        self.encoder = ImageEncoder(name=cfg.image_encoder)
        self.embedder = get_embedder(cfg.embedder, None, cfg.embed_max_chars) if cfg.embedder else None

    def warm(self, ds: Dataset) -> None:
        self.encoder.encode_files(image_paths(ds.products) + image_paths(ds.image_only), self.image_cache)
        self.embeddings(ds.products["text"].tolist())

    def embeddings(self, texts: list[str]) -> np.ndarray | None:
        return encode_cached(self.embedder, texts, self.text_cache) if self.embedder else None

    def weighted_f1(self, model: FusedModel, ds: Dataset) -> float:
        texts = ds.products["text"].tolist()
        feats, has_img, _ = self.encoder.encode_files(image_paths(ds.products), self.image_cache)
        proba = model.predict_proba(texts, self.embeddings(texts), feats, has_img)
        pred = model.classes[proba.argmax(axis=1)]
        y = ds.products["label"].to_numpy(dtype=np.int64)
        return float(f1_score(y, pred, average="weighted", zero_division=0))


# -- one seed ---------------------------------------------------------------------------------------------


def run_seed(
    seed: int,
    ds: Dataset,
    eval_ds: Dataset,
    rest: pd.Series,
    args: argparse.Namespace,
    feats: Features,
    work: Path,
    log: Callable[[str], None],
) -> dict[str, Any]:
    cfg = feats.cfg
    pool_idx = draw_pool(rest, args.pool, seed)
    base_ds = subset(ds, sorted(set(rest.index) - set(pool_idx)))
    t0 = time.perf_counter()
    trained = fit_model(
        base_ds, cfg, image_cache_dir=feats.image_cache, text_cache_dir=feats.text_cache, progress=False
    )
    fitted = trained.model  # evaluated in memory with the cached features; served from its bundle
    bundle = save_bundle(fitted, work / "base", catalog=load_catalog(), config=cfg, report=trained.report)
    base_model = load_model(bundle)
    seconds: dict[str, float] = {"base_training": time.perf_counter() - t0}
    result: dict[str, Any] = {"seed": seed, "base": len(base_ds), "pool": len(pool_idx)}
    result["f1"] = {"base (no reviews)": feats.weighted_f1(fitted, eval_ds)}
    base_f1 = result["f1"]["base (no reviews)"]
    log(f"seed {seed}: base model on {len(base_ds)} products, weighted F1 {base_f1:.4f}")

    engine = make_engine(f"sqlite:///{work / 'prodtype.db'}")
    migrate.upgrade(engine)
    sessions = make_sessionmaker(engine)
    store = ImageStore(work / "images")
    catalog = load_catalog()
    with sessions() as s:
        customer = users.create_user(s, "customer", "bench-password-1", Role.CUSTOMER)
        reviewer = users.create_user(s, "reviewer", "bench-password-1", Role.REVIEWER)
        customer_id, reviewer_id = customer.id, reviewer.id

    truth: dict[int, int] = {}
    embeddings: dict[int, np.ndarray] = {}
    pool = ds.products.loc[pool_idx]
    pool_emb = feats.embeddings(pool["text"].tolist())
    t0 = time.perf_counter()
    with sessions() as s:
        customer = s.get(User, customer_id)
        assert customer is not None
        for i, row in enumerate(pool.itertuples()):
            path = row.image_path
            image = Path(path).read_bytes() if isinstance(path, str) and path else None
            sub = predictions.check_submission(
                predictions.Submission(
                    row.designation, row.description, image, "image/jpeg" if image else None
                ),
                10 * 1024 * 1024,
            )
            pred = predictions.create_prediction(s, store, base_model, sub, customer)
            truth[pred.id] = int(row.label)
            if pool_emb is not None:
                embeddings[pred.id] = pool_emb[i]
    seconds["submit_pool"] = time.perf_counter() - t0
    live = sum(p.predicted_code == truth[p.id] for p in _pending(sessions, reviewer_id, len(truth))) / len(
        truth
    )
    result["live_accuracy_base"] = live
    eval_texts = set(eval_ds.products["text"])

    seconds["retrain"] = 0.0
    for name, order in ORDERS.items():
        if name not in args.orders:
            continue
        rows = _pending(sessions, reviewer_id, len(truth))
        if order is None:
            ids = [r.id for r in _pending(sessions, reviewer_id, args.budget)]
        else:
            ids = order(rows, seed=seed, budget=args.budget, embeddings=embeddings)[: args.budget]
        corrected = 0
        with sessions() as s:
            rev = s.get(User, reviewer_id)
            assert rev is not None
            by_id = {r.id: r for r in rows}
            for pid in ids:
                right = by_id[pid].predicted_code == truth[pid]
                corrected += not right
                reviews.review_prediction(s, catalog, pid, rev, "accept", None if right else truth[pid])
            exported = export_feedback(s, store, work / f"feedback-{name}")
        feedback = load_feedback(exported.out_dir)
        data, n_feedback = combine(base_ds, feedback, exclude_texts=eval_texts)
        t0 = time.perf_counter()
        model = fit_model(
            data, cfg, image_cache_dir=feats.image_cache, text_cache_dir=feats.text_cache, progress=False
        ).model
        seconds["retrain"] += time.perf_counter() - t0
        f1 = feats.weighted_f1(model, eval_ds)
        result["f1"][name] = f1
        result.setdefault("errors_found", {})[name] = corrected
        log(
            f"seed {seed}: {name:16s} weighted F1 {f1:.4f} ({n_feedback} feedback rows, {corrected} of "
            f"{len(ids)} reviews corrected a wrong type)"
        )
        with sessions() as s:  # undo the reviews: the next order starts from the same queue
            s.execute(
                update(Prediction)
                .values(status=Status.PENDING.value, final_code=None, reviewed_by_id=None, reviewed_at=None)
                .execution_options(synchronize_session=False)
            )
            s.commit()
    engine.dispose()
    result["seconds"] = {k: round(v, 1) for k, v in seconds.items()}
    return result


def _pending(sessions: Any, reviewer_id: int, limit: int) -> list[Prediction]:
    """The review queue as the page shows it: pending, lowest confidence first (the service's order)."""
    with sessions() as s:
        rev = s.get(User, reviewer_id)
        rows, _ = predictions.list_predictions(
            s, rev, PredictionFilter(status=Status.PENDING), "confidence", 0, limit
        )
        s.expunge_all()
        return list(rows)


# -- the table ---------------------------------------------------------------------------------------------


def table(results: list[dict[str, Any]], header: str) -> str:
    names = list(results[0]["f1"])
    lines = [
        header,
        "",
        "| order | weighted F1 (mean ± sd over seeds) | per seed | Δ vs least-confident, paired (mean ± sd) "
        "| wrong types found in the budget (mean) | beats least-confident? |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        values = [r["f1"][name] for r in results]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        per_seed = " / ".join(f"{v:.4f}" for v in values)
        found = [r.get("errors_found", {}).get(name) for r in results]
        found_text = f"{statistics.mean(found):.1f}" if None not in found else ""
        if name == DEFAULT_ORDER or DEFAULT_ORDER not in results[0]["f1"]:
            delta, verdict = "", "(the default)" if name == DEFAULT_ORDER else ""
        else:
            diffs = [r["f1"][name] - r["f1"][DEFAULT_ORDER] for r in results]
            mean_d = statistics.mean(diffs)
            sd_d = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
            delta = f"{mean_d:+.4f} ± {sd_d:.4f}"
            wins = mean_d > 0 and mean_d > 2 * sd_d
            loses = mean_d < 0 and -mean_d > 2 * sd_d
            verdict = "**yes**" if wins else ("no, worse" if loses else "no (within the noise)")
            if name.startswith("base"):
                verdict = ""
        lines.append(
            f"| {name} | {statistics.mean(values):.4f} ± {sd:.4f} | {per_seed} | {delta} | {found_text} "
            f"| {verdict} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=ROOT.parent.parent / "shared" / "data" / "rakuten")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--pool", type=int, default=600)
    parser.add_argument("--budget", type=int, default=150)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--orders", nargs="+", default=list(ORDERS), choices=list(ORDERS))
    parser.add_argument("--cache-dir", type=Path, default=ROOT.parent / ".cache" / "bench-review-order")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "review_order.md")
    args = parser.parse_args()

    started = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.0f} s] {message}", flush=True)

    d = args.data
    ds = load_dataset(d / "X_train.csv", d / "Y_train.csv", d / "image_train", d / "image_only_train.csv")
    cfg = TrainConfig.build(args.profile)
    feats = Features(cfg, args.cache_dir)
    feats.warm(ds)
    log(f"features cached under {args.cache_dir}")
    labels = ds.products["label"].astype(int)
    eval_idx = stratified_eval_index(labels, args.eval_fraction, seed=12345)
    eval_ds = subset(ds, eval_idx, with_image_only=False)
    rest = labels.drop(index=eval_idx)
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix=f"bench-review-order-{seed}-") as tmp:
            results.append(run_seed(seed, ds, eval_ds, rest, args, feats, Path(tmp), log))
    load = os.getloadavg()
    header = (
        f"Review order, measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC: {len(ds)} products; evaluation "
        f"set {len(eval_ds)} (fixed, stratified); per seed a pool of {args.pool} unseen products submitted "
        f"through the service, {args.budget} reviewed, base model on the other {results[0]['base']}; "
        f"profile {args.profile}; seeds {args.seeds}; {platform.node() or 'host'}, {os.cpu_count()} CPUs, "
        f"load {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (1/5/15 min); "
        f"{time.perf_counter() - started:.0f} s in all. Rule: an order beats least-confident when its mean "
        "paired difference is > 0 and > 2 × the sd of its paired differences."
    )
    text = table(results, header)
    print(text)
    for r in results:
        print(
            f"seed {r['seed']}: live accuracy of the base model on the pool {r['live_accuracy_base']:.4f}; "
            f"seconds {r['seconds']}"
        )
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
