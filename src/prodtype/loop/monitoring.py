"""Daily monitoring: live accuracy, the mix of predicted classes against training, the review backlog.

The class mix is compared with the base training labels by the population stability index (PSI; above
0.25 is usually read as a real shift) and the total variation distance (half the L1 distance of the shares).
A JSON report and a bar chart (PNG) are written under ``<storage>/loop/monitoring`` unless told otherwise.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from prodtype.data.challenge import find_challenge_files, read_labels
from prodtype.db.tables import Prediction, Status
from prodtype.loop.retrain import LoopContext
from prodtype.loop.trigger import count_by_status, live_accuracy

EPS = 1e-4


def shares(counts: dict[int, int], codes: list[int]) -> dict[int, float]:
    total = sum(counts.values())
    return {c: (counts.get(c, 0) / total if total else 0.0) for c in codes}


def psi(expected: dict[int, float], actual: dict[int, float]) -> float:
    total = 0.0
    for code in expected:
        e, a = max(expected[code], EPS), max(actual.get(code, 0.0), EPS)
        total += (a - e) * math.log(a / e)
    return total


def total_variation(expected: dict[int, float], actual: dict[int, float]) -> float:
    return 0.5 * sum(abs(expected[c] - actual.get(c, 0.0)) for c in expected)


def training_counts(ctx: LoopContext) -> dict[int, int]:
    if ctx.settings.data_dir is None:
        return {}
    labels = read_labels(find_challenge_files(ctx.settings.data_dir).y)
    counts = labels.value_counts()
    return {int(str(k)): int(v) for k, v in counts.items()}


def _plot(path: Path, codes: list[int], train: dict[int, float], live: dict[int, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4))
    x = range(len(codes))
    ax.bar([i - 0.2 for i in x], [train[c] for c in codes], width=0.4, label="training labels")
    ax.bar([i + 0.2 for i in x], [live.get(c, 0.0) for c in codes], width=0.4, label="predicted (window)")
    ax.set_xticks(list(x), [str(c) for c in codes], rotation=90)
    ax.set_ylabel("share")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def monitor(ctx: LoopContext, days: float = 1.0, out_dir: Path | None = None) -> dict[str, Any]:
    now = datetime.now(UTC)
    since = now - timedelta(days=days)
    with ctx.sessions()() as session:
        rows = session.execute(
            select(Prediction.predicted_code, func.count())
            .where(Prediction.created_at >= since)
            .group_by(Prediction.predicted_code)
        ).all()
        predicted = {int(code): int(n) for code, n in rows}
        accuracy, n_reviews = live_accuracy(session, since, ctx.loop.live_accuracy_window)
        awaiting = count_by_status(session, Status.PENDING)
    train_counts = training_counts(ctx)
    codes = sorted(set(train_counts) | set(predicted))
    train_shares = shares(train_counts, codes)
    live_shares = shares(predicted, codes)
    n_pred = sum(predicted.values())
    report: dict[str, Any] = {
        "at": now.isoformat(timespec="seconds"),
        "window_days": days,
        "predictions": n_pred,
        "live_accuracy": None if accuracy is None else round(accuracy, 4),
        "live_accuracy_reviews": n_reviews,
        "live_accuracy_threshold": ctx.loop.live_accuracy_threshold,
        "live_accuracy_alert": bool(
            accuracy is not None
            and n_reviews >= ctx.loop.live_accuracy_min_reviews
            and accuracy < ctx.loop.live_accuracy_threshold
        ),
        "awaiting_review": awaiting,
        "class_shift_psi": round(psi(train_shares, live_shares), 4) if n_pred and train_counts else None,
        "class_shift_tvd": round(total_variation(train_shares, live_shares), 4)
        if n_pred and train_counts
        else None,
        "predicted_counts": {str(c): predicted.get(c, 0) for c in codes},
        "training_shares": {str(c): round(train_shares[c], 4) for c in codes},
    }
    out_dir = out_dir or ctx.work_dir / "monitoring"
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = now.strftime("%Y%m%dT%H%M%S")
    (out_dir / f"monitoring-{stem}.json").write_text(json.dumps(report, indent=2))
    if codes:
        _plot(
            out_dir / f"class-mix-{stem}.png",
            codes,
            train_shares,
            live_shares,
            f"predicted classes over {days:g} day(s) ({n_pred} predictions) vs training labels",
        )
        report["plot"] = str(out_dir / f"class-mix-{stem}.png")
    return report
