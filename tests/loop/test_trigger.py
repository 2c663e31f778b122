"""The retraining trigger: new reviewed products since the last training, or a falling live accuracy."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from loop.records import review, submit
from prodtype.loop_config import LoopSettings
from prodtype.services.trigger import trigger_status


def rules(**kw: object) -> LoopSettings:
    return LoopSettings(_env_file=None, **kw)  # type: ignore[arg-type, call-arg]


def test_enough_new_reviews_fire(sessions: sessionmaker[Session]) -> None:
    loop = rules(retrain_min_new_reviews=3, live_accuracy_min_reviews=100)
    with sessions() as s:
        for i in range(2):
            review(s, submit(s, f"Produit {i}", 10), "accept")
        review(s, submit(s, "Rebut", 10), "reject")  # not a training product
        submit(s, "En attente", 10)
        status = trigger_status(s, loop, since=None)
        assert (status.should_retrain, status.new_reviewed_products, status.awaiting_review) == (False, 2, 1)
        assert status.rejected_total == 1 and status.live_accuracy == 1.0
        review(s, submit(s, "Produit 3", 10), "accept")
        status = trigger_status(s, loop, since=None)
        assert status.should_retrain and "3 new reviewed products" in status.reasons[0]
        watermark = datetime.now(UTC)
        assert trigger_status(s, loop, since=watermark).new_reviewed_products == 0


def test_low_live_accuracy_fires_only_over_enough_reviews(sessions: sessionmaker[Session]) -> None:
    loop = rules(
        retrain_min_new_reviews=1000,
        live_accuracy_threshold=0.7,
        live_accuracy_min_reviews=4,
        live_accuracy_window=4,
    )
    with sessions() as s:
        for i in range(3):
            review(s, submit(s, f"Produit {i}", 10), "accept", 2583)  # corrected: the model was wrong
        status = trigger_status(s, loop, since=None)
        assert status.live_accuracy == 0.0 and not status.should_retrain  # 3 reviews: too few to judge
        review(s, submit(s, "Produit 3", 10), "accept", 2583)
        status = trigger_status(s, loop, since=None)
        assert status.should_retrain and "live accuracy 0.000 over the last 4 reviews" in status.reasons[0]
        for i in range(4):  # the window holds the 4 most recent reviews only
            review(s, submit(s, f"Bon {i}", 10), "accept")
        status = trigger_status(s, loop, since=None)
        assert status.live_accuracy == 1.0 and not status.should_retrain
