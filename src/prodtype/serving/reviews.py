"""Reviewing predictions: accept (optionally with a corrected type), reject, or correct the type.

A review is one conditional UPDATE (``WHERE status = 'pending'``): when two reviewers act on the same
prediction at once, the database lets exactly one of them through and the other gets a conflict.
"""

from __future__ import annotations

import enum
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from prodtype.catalog import Catalog
from prodtype.db.tables import Prediction, Status, User, utcnow
from prodtype.serving import audit
from prodtype.serving.errors import ConflictError, InvalidInputError, NotFoundError


class Decision(enum.StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


def check_code(catalog: Catalog, code: int) -> int:
    if code not in catalog:
        raise InvalidInputError(
            f"unknown product type code {code}; expected one of the {len(catalog)} codes listed by "
            "GET /api/v1/categories"
        )
    return code


def review_prediction(
    session: Session,
    catalog: Catalog,
    prediction_id: int,
    reviewer: User,
    decision: Decision | str,
    prdtypecode: int | None = None,
) -> Prediction:
    """Accept (final type = ``prdtypecode`` or the predicted one) or reject a pending prediction."""
    try:
        decision = Decision(decision)
    except ValueError:
        raise InvalidInputError(f"unknown decision {decision!r}; expected 'accept' or 'reject'") from None
    if decision is Decision.REJECT and prdtypecode is not None:
        raise InvalidInputError("a rejected prediction takes no prdtypecode; send it only with 'accept'")
    if prdtypecode is not None:
        check_code(catalog, prdtypecode)
    status = Status.ACCEPTED if decision is Decision.ACCEPT else Status.REJECTED
    final: Any = None
    if decision is Decision.ACCEPT:
        final = prdtypecode if prdtypecode is not None else Prediction.predicted_code
    stmt = (
        update(Prediction)
        .where(Prediction.id == prediction_id, Prediction.status == Status.PENDING.value)
        .values(status=status.value, final_code=final, reviewed_by_id=reviewer.id, reviewed_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], session.execute(stmt))
    if result.rowcount != 1:
        session.rollback()
        _raise_missing_or_reviewed(session, prediction_id)
    row = _reload(session, prediction_id)
    audit.record(
        session,
        f"prediction.{status.value}",
        "prediction",
        prediction_id,
        reviewer,
        {"decision": decision.value, "predicted_code": row.predicted_code, "final_code": row.final_code},
    )
    session.commit()
    return row


def correct_prediction(
    session: Session, catalog: Catalog, prediction_id: int, reviewer: User, prdtypecode: int
) -> Prediction:
    """Set the product's true type: the prediction becomes accepted with that type, whatever its status."""
    check_code(catalog, prdtypecode)
    # Lock the row (not the joined users) so that concurrent corrections apply one after the other.
    query = select(Prediction).where(Prediction.id == prediction_id).with_for_update(of=Prediction)
    row = session.scalar(query)
    if row is None:
        raise NotFoundError(f"no prediction with id {prediction_id}")
    before = {"status": row.status, "final_code": row.final_code}
    row.final_code = prdtypecode
    row.status = Status.ACCEPTED.value
    row.reviewed_by_id = reviewer.id
    row.reviewed_at = utcnow()
    audit.record(
        session,
        "prediction.corrected",
        "prediction",
        prediction_id,
        reviewer,
        {"before": before, "final_code": prdtypecode, "predicted_code": row.predicted_code},
    )
    session.commit()
    return _reload(session, prediction_id)


def _reload(session: Session, prediction_id: int) -> Prediction:
    row = session.get(Prediction, prediction_id, populate_existing=True)
    assert row is not None
    return row


def _raise_missing_or_reviewed(session: Session, prediction_id: int) -> None:
    row = session.scalar(select(Prediction).where(Prediction.id == prediction_id))
    if row is None:
        raise NotFoundError(f"no prediction with id {prediction_id}")
    who = row.reviewed_by.username if row.reviewed_by is not None else "someone"
    when = row.reviewed_at.isoformat() if row.reviewed_at is not None else "earlier"
    raise ConflictError(
        f"prediction {prediction_id} was already reviewed: {row.status} by {who} at {when}; "
        f"use PATCH /api/v1/predictions/{prediction_id} to change its type"
    )
