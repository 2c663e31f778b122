"""What the service did, by day: predictions made, reviews and the share accepted unchanged (the live
accuracy), the predicted class mix, the backlog; and the class mix of the training labels."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prodtype.data.challenge import DataError, find_challenge_files, read_labels
from prodtype.db.tables import Prediction, Status


@dataclass(frozen=True)
class Day:
    day: str  # YYYY-MM-DD (UTC)
    predictions: int
    reviewed: int  # accepted (unchanged or corrected) that day
    unchanged: int

    @property
    def accuracy(self) -> float | None:
        return self.unchanged / self.reviewed if self.reviewed else None


@dataclass(frozen=True)
class Activity:
    days: list[Day]
    predicted_counts: dict[int, int]  # over the window
    awaiting_review: int
    rejected: int


def _day(value: object) -> str:
    return str(value)[:10]


def activity(session: Session, days: int = 30, now: datetime | None = None) -> Activity:
    """The last ``days`` days (UTC), each one listed even when nothing happened."""
    now = now or datetime.now(UTC)
    start = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    made_day = func.date(Prediction.created_at)
    made: dict[object, int] = dict(
        session.execute(
            select(made_day, func.count()).where(Prediction.created_at >= start).group_by(made_day)
        ).all()
    )
    review_day = func.date(Prediction.reviewed_at)
    unchanged = func.sum((Prediction.final_code == Prediction.predicted_code).cast(Prediction.id.type))
    reviewed = {
        _day(d): (int(n), int(u or 0))
        for d, n, u in session.execute(
            select(review_day, func.count(), unchanged)
            .where(
                Prediction.status == Status.ACCEPTED.value,
                Prediction.final_code.is_not(None),
                Prediction.reviewed_at >= start,
            )
            .group_by(review_day)
        ).all()
    }
    made_by_day = {_day(d): int(n) for d, n in made.items()}
    series = []
    for i in range(days):
        key = (start + timedelta(days=i)).strftime("%Y-%m-%d")
        n, u = reviewed.get(key, (0, 0))
        series.append(Day(key, made_by_day.get(key, 0), n, u))
    mix = {
        int(code): int(n)
        for code, n in session.execute(
            select(Prediction.predicted_code, func.count())
            .where(Prediction.created_at >= start)
            .group_by(Prediction.predicted_code)
        ).all()
    }
    counts = dict(session.execute(select(Prediction.status, func.count()).group_by(Prediction.status)).all())
    return Activity(
        series, mix, int(counts.get(Status.PENDING.value, 0)), int(counts.get(Status.REJECTED.value, 0))
    )


def training_mix(data_dir: Path | None) -> dict[int, int]:
    """How many training products each product type has (empty without the challenge's files)."""
    if data_dir is None:
        return {}
    try:
        path = find_challenge_files(data_dir).y
    except DataError:
        return {}
    if path is None:
        return {}
    return dict(_label_counts(Path(path), Path(path).stat().st_mtime_ns))


@lru_cache(maxsize=4)
def _label_counts(path: Path, _mtime: int) -> tuple[tuple[int, int], ...]:
    counts = read_labels(path).value_counts()
    return tuple(sorted((int(str(k)), int(v)) for k, v in counts.items()))
