"""Rows for service tests that exercise the database logic around predictions (review, list, delete).

The values are what a real model answers; the create path itself, with the real model, is tested in
tests/serving/test_create_prediction.py and tests/api.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from prodtype.db.tables import Prediction, User
from prodtype.serving.storage import ImageStore


def user(session: Session, name: str) -> User:
    found = session.scalar(select(User).where(User.username == name))
    assert found is not None, name
    return found


def add_prediction(
    session: Session,
    creator: User,
    code: int = 2583,
    confidence: float = 0.5,
    image: bytes | None = None,
    store: ImageStore | None = None,
    created_at: datetime | None = None,
) -> Prediction:
    row = Prediction(
        designation="Piscine tubulaire ronde 3,05 x 0,76 m",
        description="",
        predicted_code=code,
        confidence=confidence,
        top_k=[{"prdtypecode": code, "category": "piscine", "probability": confidence}],
        model_version="test-rows",
        created_by_id=creator.id,
    )
    if created_at is not None:
        row.created_at = created_at
    if image is not None:
        assert store is not None
        row.image_sha256 = store.put(image)
        row.image_content_type = "image/jpeg"
    session.add(row)
    session.commit()
    return row
