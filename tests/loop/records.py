"""Reviewed predictions made directly in the database (the API path is covered by tests/e2e)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from prodtype.catalog import load_catalog
from prodtype.db.tables import Prediction, User
from prodtype.serving import reviews
from prodtype.serving.storage import ImageStore


def user(session: Session, name: str) -> User:
    found = session.scalar(select(User).where(User.username == name))
    assert found is not None, name
    return found


def submit(
    session: Session,
    designation: str,
    predicted: int,
    *,
    description: str = "",
    image: bytes | None = None,
    store: ImageStore | None = None,
) -> Prediction:
    row = Prediction(
        designation=designation,
        description=description,
        predicted_code=predicted,
        confidence=0.5,
        top_k=[{"prdtypecode": predicted, "category": "x", "probability": 0.5}],
        model_version="test",
        created_by_id=user(session, "carl").id,
    )
    if image is not None:
        assert store is not None
        row.image_sha256 = store.put(image)
        row.image_content_type = "image/jpeg"
    session.add(row)
    session.commit()
    return row


def review(session: Session, row: Prediction, decision: str, code: int | None = None) -> Prediction:
    return reviews.review_prediction(session, load_catalog(), row.id, user(session, "rita"), decision, code)
