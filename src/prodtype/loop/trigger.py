"""When to retrain: enough new reviewed products, or a live accuracy that fell below the threshold.

- New reviewed products: accepted predictions (unchanged or corrected: the ones a retrain can learn from)
  reviewed after the newest review that the last training run exported (its watermark).
- Live accuracy: among the most recent ``window`` accepted predictions reviewed since the last training,
  the share the reviewers accepted unchanged (final type = predicted type). Rejected products are not
  counted: they are unusable submissions, not model errors. It triggers only over at least
  ``live_accuracy_min_reviews`` reviews, so that three early corrections do not start a retrain.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prodtype.config import LoopSettings
from prodtype.db.tables import Prediction, Status


class TriggerStatus(BaseModel):
    """The trigger's figures and its decision (the API's ``GET /retrain/status`` is built from this)."""

    model_config = ConfigDict(frozen=True)

    should_retrain: bool
    reasons: list[str]
    new_reviewed_products: int = Field(description="Accepted reviews since the last training's watermark")
    min_new_reviews: int
    live_accuracy: float | None = Field(description="Share accepted unchanged among the recent reviews")
    live_accuracy_reviews: int
    live_accuracy_threshold: float
    live_accuracy_window: int
    live_accuracy_min_reviews: int
    last_training_reviewed_until: str | None
    awaiting_review: int
    rejected_total: int

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def _accepted_since(since: datetime | None) -> Any:
    stmt = select(Prediction).where(
        Prediction.status == Status.ACCEPTED.value, Prediction.final_code.is_not(None)
    )
    if since is not None:
        stmt = stmt.where(Prediction.reviewed_at > since)
    return stmt


def count_by_status(session: Session, status: Status) -> int:
    stmt = select(func.count()).select_from(Prediction).where(Prediction.status == status.value)
    return int(session.scalar(stmt) or 0)


def live_accuracy(session: Session, since: datetime | None, window: int) -> tuple[float | None, int]:
    """Share accepted unchanged among the last ``window`` accepted reviews after ``since``; their count."""
    recent = (
        _accepted_since(since)
        .with_only_columns(Prediction.predicted_code, Prediction.final_code)
        .order_by(Prediction.reviewed_at.desc(), Prediction.id.desc())
        .limit(window)
    )
    rows = session.execute(recent).all()
    if not rows:
        return None, 0
    unchanged = sum(1 for predicted, final in rows if predicted == final)
    return unchanged / len(rows), len(rows)


def trigger_status(session: Session, loop: LoopSettings, since: datetime | None) -> TriggerStatus:
    """The figures behind the decision; ``since`` is the last training's watermark (None: never trained)."""
    count_stmt = _accepted_since(since).with_only_columns(func.count()).order_by(None)
    new_reviews = int(session.scalar(count_stmt) or 0)
    accuracy, n_acc = live_accuracy(session, since, loop.live_accuracy_window)
    reasons: list[str] = []
    if new_reviews >= loop.retrain_min_new_reviews:
        reasons.append(
            f"{new_reviews} new reviewed products since the last training "
            f"(threshold {loop.retrain_min_new_reviews})"
        )
    if (
        accuracy is not None
        and n_acc >= loop.live_accuracy_min_reviews
        and accuracy < loop.live_accuracy_threshold
    ):
        reasons.append(
            f"live accuracy {accuracy:.3f} over the last {n_acc} reviews is below "
            f"{loop.live_accuracy_threshold}"
        )
    return TriggerStatus(
        should_retrain=bool(reasons),
        reasons=reasons,
        new_reviewed_products=new_reviews,
        min_new_reviews=loop.retrain_min_new_reviews,
        live_accuracy=None if accuracy is None else round(accuracy, 4),
        live_accuracy_reviews=n_acc,
        live_accuracy_threshold=loop.live_accuracy_threshold,
        live_accuracy_window=loop.live_accuracy_window,
        live_accuracy_min_reviews=loop.live_accuracy_min_reviews,
        last_training_reviewed_until=since.isoformat() if since is not None else None,
        awaiting_review=count_by_status(session, Status.PENDING),
        rejected_total=count_by_status(session, Status.REJECTED),
    )
