"""The monitoring figures come from the window asked for: predictions made and reviews done within it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from loop.records import review, submit
from prodtype.loop.monitoring import monitor
from prodtype.loop.retrain import LoopContext
from service_support.databases import both_databases

pytestmark = both_databases


def backdate(session: Session, rows: list, days: float) -> None:  # type: ignore[type-arg]
    when = datetime.now(UTC) - timedelta(days=days)
    for row in rows:
        row.created_at = when
        if row.reviewed_at is not None:
            row.reviewed_at = when
    session.commit()


def test_only_the_window_is_counted(
    ctx: LoopContext, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with sessions() as s:
        # Three days ago: a prediction of 1280 reviewed as wrong, and one still pending.
        old = [review(s, submit(s, "Ancien jouet", 1280), "accept", 10), submit(s, "Ancien en attente", 1280)]
        backdate(s, old, days=3)
        # Today: two 2583 (one accepted as is, one corrected), one 10 accepted, one 2462 pending.
        review(s, submit(s, "Piscine tubulaire", 2583), "accept")
        review(s, submit(s, "Piscine hors sol", 2583), "accept", 2582)
        review(s, submit(s, "Figurine", 10), "accept")
        submit(s, "Jeu PS4", 2462)

    report = monitor(ctx, days=1, out_dir=tmp_path)
    assert report["predictions"] == 4
    counts = {code: n for code, n in report["predicted_counts"].items() if n}
    assert counts == {"2583": 2, "10": 1, "2462": 1}
    assert (report["live_accuracy"], report["live_accuracy_reviews"]) == (pytest.approx(2 / 3, abs=1e-4), 3)
    assert report["awaiting_review"] == 2  # the backlog is the whole backlog, whatever its age
    saved = json.loads(next(tmp_path.glob("monitoring-*.json")).read_text())
    assert saved["predicted_counts"] == report["predicted_counts"]

    wider = monitor(ctx, days=7, out_dir=tmp_path / "week")
    assert wider["predictions"] == 6 and wider["predicted_counts"]["1280"] == 2
    assert (wider["live_accuracy"], wider["live_accuracy_reviews"]) == (pytest.approx(0.5), 4)
