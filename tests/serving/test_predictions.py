"""Prediction records: visibility, filters, sorting, pagination, deletion and the images it may remove."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from prodtype.catalog import load_catalog
from prodtype.db.tables import AuditEvent, Status
from prodtype.serving import predictions, reviews
from prodtype.serving.errors import (
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)
from prodtype.serving.predictions import PredictionFilter, Submission
from prodtype.serving.storage import ImageStore, LocalImageStore
from service_support import images
from service_support.records import add_prediction, user

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return LocalImageStore(tmp_path / "images")


@pytest.fixture
def rows(session: Session) -> dict[str, int]:
    carl, cora = user(session, "carl"), user(session, "cora")
    made = {
        "carl-low": add_prediction(session, carl, 10, 0.20, created_at=T0),
        "carl-high": add_prediction(session, carl, 2583, 0.90, created_at=T0 + timedelta(days=1)),
        "cora-mid": add_prediction(session, cora, 10, 0.55, created_at=T0 + timedelta(days=2)),
        "cora-low": add_prediction(session, cora, 1280, 0.10, created_at=T0 + timedelta(days=3)),
    }
    reviews.review_prediction(session, load_catalog(), made["cora-mid"].id, user(session, "rita"), "accept")
    return {k: v.id for k, v in made.items()}


def names(found: object, rows: dict[str, int]) -> list[str]:
    by_id = {v: k for k, v in rows.items()}
    return [by_id[r.id] for r in found]  # type: ignore[attr-defined]


def test_customers_see_only_their_own(session: Session, rows: dict[str, int]) -> None:
    found, count = predictions.list_predictions(session, user(session, "carl"))
    assert (names(found, rows), count) == (["carl-low", "carl-high"], 2)
    with pytest.raises(NotFoundError):
        predictions.get_prediction(session, rows["cora-low"], user(session, "carl"))
    assert predictions.get_prediction(session, rows["cora-low"], user(session, "rita")).id == rows["cora-low"]


def test_default_order_is_lowest_confidence_first(session: Session, rows: dict[str, int]) -> None:
    found, count = predictions.list_predictions(session, user(session, "rita"))
    assert count == 4
    assert names(found, rows) == ["cora-low", "carl-low", "cora-mid", "carl-high"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (PredictionFilter(status=Status.PENDING), ["cora-low", "carl-low", "carl-high"]),
        (PredictionFilter(status=Status.ACCEPTED), ["cora-mid"]),
        (PredictionFilter(predicted_code=10), ["carl-low", "cora-mid"]),
        (PredictionFilter(confidence_below=0.5), ["cora-low", "carl-low"]),
        (PredictionFilter(created_by="cora"), ["cora-low", "cora-mid"]),
        (PredictionFilter(created_by="nobody"), []),
        (PredictionFilter(created_after=T0 + timedelta(days=1)), ["cora-low", "cora-mid", "carl-high"]),
        (PredictionFilter(created_before=T0 + timedelta(days=1)), ["carl-low"]),
        (
            PredictionFilter(
                status=Status.PENDING, predicted_code=10, confidence_below=0.3, created_by="carl"
            ),
            ["carl-low"],
        ),
    ],
)
def test_filters(
    session: Session, rows: dict[str, int], filters: PredictionFilter, expected: list[str]
) -> None:
    found, count = predictions.list_predictions(session, user(session, "admin"), filters)
    assert names(found, rows) == expected
    assert count == len(expected)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("-confidence", ["carl-high", "cora-mid", "carl-low", "cora-low"]),
        ("created_at", ["carl-low", "carl-high", "cora-mid", "cora-low"]),
        ("-created_at", ["cora-low", "cora-mid", "carl-high", "carl-low"]),
    ],
)
def test_sorting(
    session: Session, rows: dict[str, int], sort: predictions.SortKey, expected: list[str]
) -> None:
    found, _ = predictions.list_predictions(session, user(session, "admin"), sort=sort)
    assert names(found, rows) == expected


def test_pagination_counts_all_matches(session: Session, rows: dict[str, int]) -> None:
    page1, count1 = predictions.list_predictions(session, user(session, "admin"), offset=0, limit=3)
    page2, count2 = predictions.list_predictions(session, user(session, "admin"), offset=3, limit=3)
    assert count1 == count2 == 4
    assert len(page1) == 3 and len(page2) == 1
    assert not {r.id for r in page1} & {r.id for r in page2}


def test_inverted_date_range_is_refused(session: Session, rows: dict[str, int]) -> None:
    with pytest.raises(InvalidInputError, match="must be earlier"):
        predictions.list_predictions(
            session, user(session, "admin"), PredictionFilter(created_after=T0, created_before=T0)
        )


def test_delete_keeps_an_image_another_record_uses(session: Session, store: ImageStore) -> None:
    carl, admin = user(session, "carl"), user(session, "admin")
    photo = images.photo()
    first = add_prediction(session, carl, image=photo, store=store)
    second = add_prediction(session, carl, image=photo, store=store)
    digest = first.image_sha256
    assert digest is not None and digest == second.image_sha256
    predictions.delete_prediction(session, store, first.id, admin)
    assert store.exists(digest)
    predictions.delete_prediction(session, store, second.id, admin)
    assert not store.exists(digest)
    events = session.scalars(select(AuditEvent).where(AuditEvent.action == "prediction.deleted")).all()
    assert [e.entity_id for e in events] == [str(first.id), str(second.id)]
    assert events[0].actor == "admin" and events[0].details["image_sha256"] == digest
    with pytest.raises(NotFoundError):
        predictions.delete_prediction(session, store, first.id, admin)


def test_reviewing_never_touches_the_image(session: Session, store: ImageStore) -> None:
    p = add_prediction(session, user(session, "carl"), image=images.photo(), store=store)
    assert p.image_sha256 is not None
    catalog = load_catalog()
    reviews.review_prediction(session, catalog, p.id, user(session, "rita"), "accept", 1280)
    reviews.correct_prediction(session, catalog, p.id, user(session, "rita"), 2583)
    assert store.read(p.image_sha256) == images.photo()
    data, content_type = predictions.get_image(session, store, p.id, user(session, "carl"))
    assert (data, content_type) == (images.photo(), "image/jpeg")


LIMIT = 100_000


@pytest.mark.parametrize(
    ("submission", "error", "message"),
    [
        (Submission(""), InvalidInputError, "designation is required"),
        (Submission("   \n\t"), InvalidInputError, "designation is required"),
        (Submission("x" * 1001), InvalidInputError, "at most 1000"),
        (Submission("ok", "d" * 50_001), InvalidInputError, "description is 50001 characters"),
        (Submission("ok", image=b""), InvalidInputError, "empty"),
        (Submission("ok", image=images.not_an_image()), InvalidInputError, "not an image"),
        (Submission("ok", image=images.oversized_jpeg(LIMIT + 1)), PayloadTooLargeError, "limit is 100000"),
        (
            Submission("ok", image=images.photo(), image_content_type="text/csv"),
            UnsupportedMediaTypeError,
            "text/csv",
        ),
    ],
    ids=[
        "empty",
        "blank",
        "long-title",
        "long-description",
        "empty-image",
        "not-image",
        "too-big",
        "text-type",
    ],
)
def test_check_submission_refuses(submission: Submission, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        predictions.check_submission(submission, LIMIT)


def test_check_submission_strips_and_sniffs() -> None:
    checked = predictions.check_submission(
        Submission("  Mug  ", " blanc ", images.photo(), "application/octet-stream"), LIMIT
    )
    assert (checked.designation, checked.description, checked.image_type) == ("Mug", "blanc", "image/jpeg")
