"""The figures operators' alerts need, computed from the database: live accuracy of the served model,
drift of the predicted class mix (PSI against the mix it was trained on), the review backlog, and how the
latest retrain ended.

They come from the database rather than from counters in the process, so they count every prediction and
review whichever path made it (API, bulk, web pages, another worker, another host) and survive restarts.
:class:`CachedFigures` recomputes them at most every ``PRODTYPE_METRICS_REFRESH_SECONDS``, so a scrape
costs a handful of indexed queries at most that often (see :mod:`prodtype.loop.alert_metrics`).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prodtype.db.tables import Prediction, Status
from prodtype.loop.monitoring import psi, shares
from prodtype.loop.retrain_outcomes import RetrainOutcomes, read_outcomes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AlertFigures:
    model_version: str | None
    live_accuracy: float | None  # accepted unchanged / accepted, last `window` reviews of the served model
    live_accuracy_reviews: int
    class_mix_psi: float | None  # None without predictions in the window or without training counts
    class_mix_predictions: int
    review_backlog: int
    review_backlog_oldest_seconds: float | None
    retrain: RetrainOutcomes


def served_live_accuracy(session: Session, model_version: str, window: int) -> tuple[float | None, int]:
    """Share accepted unchanged among the last ``window`` accepted (or corrected) reviews of predictions
    made by ``model_version``; rejected products are unusable submissions, not model errors."""
    recent = (
        select(Prediction.predicted_code, Prediction.final_code)
        .where(
            Prediction.model_version == model_version,
            Prediction.status == Status.ACCEPTED.value,
            Prediction.final_code.is_not(None),
        )
        .order_by(Prediction.reviewed_at.desc(), Prediction.id.desc())
        .limit(window)
    )
    rows = session.execute(recent).all()
    if not rows:
        return None, 0
    return sum(1 for predicted, final in rows if predicted == final) / len(rows), len(rows)


def predicted_mix(session: Session, since: datetime) -> dict[int, int]:
    rows = session.execute(
        select(Prediction.predicted_code, func.count())
        .where(Prediction.created_at >= since)
        .group_by(Prediction.predicted_code)
    ).all()
    return {int(code): int(n) for code, n in rows}


def class_mix_psi(training: dict[int, int], predicted: dict[int, int]) -> float | None:
    """PSI of the predicted class shares against the training shares, over the classes of both."""
    if not training or not predicted:
        return None
    codes = sorted(set(training) | set(predicted))
    return psi(shares(training, codes), shares(predicted, codes))


def review_backlog(session: Session, now: datetime) -> tuple[int, float | None]:
    """Pending predictions and the age of the oldest one, in seconds."""
    count, oldest = session.execute(
        select(func.count(), func.min(Prediction.created_at)).where(Prediction.status == Status.PENDING.value)
    ).one()
    if isinstance(oldest, str):  # in case a driver gives the aggregate back untyped
        oldest = datetime.fromisoformat(oldest)
    if oldest is not None and oldest.tzinfo is None:  # stored as UTC
        oldest = oldest.replace(tzinfo=UTC)
    age = None if oldest is None else max((now - oldest).total_seconds(), 0.0)
    return int(count or 0), age


def training_class_counts(bundle_dir: Path | None) -> dict[int, int]:
    """The class counts the bundle was trained on (its ``training_report.json``), or {} when unknown."""
    if bundle_dir is None:
        return {}
    try:
        report = json.loads((Path(bundle_dir) / "training_report.json").read_text())
        return {int(code): int(n) for code, n in (report.get("class_counts") or {}).items()}
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("no training class counts in %s: %s", bundle_dir, exc)
        return {}


def compute_figures(
    session: Session,
    *,
    model_version: str | None,
    training_counts: dict[int, int],
    live_accuracy_window: int,
    class_mix_window: timedelta,
    now: datetime | None = None,
) -> AlertFigures:
    now = now or datetime.now(UTC)
    accuracy, n_reviews = (
        served_live_accuracy(session, model_version, live_accuracy_window)
        if model_version is not None
        else (None, 0)
    )
    predicted = predicted_mix(session, now - class_mix_window)
    backlog, oldest = review_backlog(session, now)
    return AlertFigures(
        model_version=model_version,
        live_accuracy=accuracy,
        live_accuracy_reviews=n_reviews,
        class_mix_psi=class_mix_psi(training_counts, predicted),
        class_mix_predictions=sum(predicted.values()),
        review_backlog=backlog,
        review_backlog_oldest_seconds=oldest,
        retrain=read_outcomes(session),
    )


class CachedFigures:
    """``compute()`` at most every ``max_age`` seconds; concurrent scrapes share one computation. When the
    computation fails (the database is down), the error is kept so the scrape can say so."""

    def __init__(self, compute: Callable[[], AlertFigures], max_age: float) -> None:
        self._compute = compute
        self._max_age = max_age
        self._lock = threading.Lock()
        self._value: AlertFigures | None = None
        self._at = -float("inf")
        self.error: str | None = None

    def get(self) -> AlertFigures | None:
        with self._lock:
            if time.monotonic() - self._at >= self._max_age:
                try:
                    self._value, self.error = self._compute(), None
                except Exception as exc:  # reported as prodtype_alert_figures_ok 0, never a failed scrape
                    log.warning("could not compute the alert figures: %s", exc)
                    self._value, self.error = None, f"{type(exc).__name__}: {exc}"
                self._at = time.monotonic()
            return self._value
