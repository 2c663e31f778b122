"""The retraining trigger: new reviewed products since the last training, or a falling live accuracy."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from loop.records import review, submit
from prodtype.config import LoopSettings
from prodtype.loop.feedback import export_feedback
from prodtype.loop.trigger import trigger_status
from prodtype.serving.storage import LocalImageStore
from service_support.databases import both_databases

pytestmark = both_databases


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


def test_a_review_at_the_watermark_was_exported_and_is_not_new(
    sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    """The export takes reviews up to and including its cutoff; the trigger counts those after it. A review
    stamped exactly at the cutoff is trained on once, never counted again nor left out."""
    loop = rules(retrain_min_new_reviews=1, live_accuracy_min_reviews=100)
    with sessions() as s:
        before = review(s, submit(s, "Produit déjà exporté", 10), "accept")
        at_cutoff = review(s, submit(s, "Produit exporté à la limite", 10), "accept")
        cutoff = at_cutoff.reviewed_at
        assert cutoff is not None and before.reviewed_at is not None and before.reviewed_at < cutoff
        exported = export_feedback(s, LocalImageStore(tmp_path / "images"), tmp_path / "fb", until=cutoff)
        assert exported.rows == 2
        status = trigger_status(s, loop, since=datetime.fromisoformat(cutoff.isoformat()))
        assert (status.new_reviewed_products, status.should_retrain) == (0, False)
        assert status.live_accuracy is None  # nothing reviewed since the last training
        review(s, submit(s, "Produit revu ensuite", 10), "accept", 2583)
        status = trigger_status(s, loop, since=cutoff)
        assert (status.new_reviewed_products, status.should_retrain) == (1, True)
        assert (status.live_accuracy, status.live_accuracy_reviews) == (0.0, 1)
        store = LocalImageStore(tmp_path / "images")
        assert export_feedback(s, store, tmp_path / "fb2", until=cutoff).rows == 2
