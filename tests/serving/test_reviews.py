"""Reviews and corrections: the rules, the audit trail, and one winner when two reviewers race."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from prodtype.catalog import load_catalog
from prodtype.db.engine import make_sessionmaker
from prodtype.db.tables import AuditEvent, Prediction
from prodtype.serving import reviews
from prodtype.serving.errors import ConflictError, InvalidInputError, NotFoundError
from service_support.records import add_prediction, user

CATALOG = load_catalog()


def test_accept_keeps_the_predicted_code_and_records_who_and_when(session: Session) -> None:
    p = add_prediction(session, user(session, "carl"), code=1280)
    row = reviews.review_prediction(session, CATALOG, p.id, user(session, "rita"), "accept")
    assert (row.status, row.final_code) == ("accepted", 1280)
    assert row.reviewed_by is not None and row.reviewed_by.username == "rita"
    assert row.reviewed_at is not None and row.reviewed_at >= row.created_at
    event = session.scalars(select(AuditEvent).where(AuditEvent.entity == "prediction")).all()[-1]
    assert (event.action, event.actor, event.entity_id) == ("prediction.accepted", "rita", str(p.id))
    assert event.details == {"decision": "accept", "predicted_code": 1280, "final_code": 1280}


def test_accept_with_a_corrected_code(session: Session) -> None:
    p = add_prediction(session, user(session, "carl"), code=1280)
    row = reviews.review_prediction(session, CATALOG, p.id, user(session, "rita"), "accept", 2583)
    assert (row.status, row.predicted_code, row.final_code) == ("accepted", 1280, 2583)


def test_reject(session: Session) -> None:
    p = add_prediction(session, user(session, "carl"))
    row = reviews.review_prediction(session, CATALOG, p.id, user(session, "rita"), "reject")
    assert (row.status, row.final_code) == ("rejected", None)


@pytest.mark.parametrize(
    ("decision", "code", "message"),
    [
        ("accept", 1234, "unknown product type code 1234"),
        ("reject", 2583, "takes no prdtypecode"),
        ("maybe", None, "unknown decision 'maybe'"),
    ],
)
def test_bad_reviews_are_refused(session: Session, decision: str, code: int | None, message: str) -> None:
    p = add_prediction(session, user(session, "carl"))
    with pytest.raises(InvalidInputError, match=message):
        reviews.review_prediction(session, CATALOG, p.id, user(session, "rita"), decision, code)
    assert session.get_one(Prediction, p.id, populate_existing=True).status == "pending"


def test_second_review_is_a_conflict_that_names_the_first(session: Session) -> None:
    p = add_prediction(session, user(session, "carl"))
    reviews.review_prediction(session, CATALOG, p.id, user(session, "rita"), "reject")
    with pytest.raises(ConflictError, match="already reviewed: rejected by rita"):
        reviews.review_prediction(session, CATALOG, p.id, user(session, "admin"), "accept")


def test_review_of_an_unknown_prediction(session: Session) -> None:
    with pytest.raises(NotFoundError, match="no prediction with id 999"):
        reviews.review_prediction(session, CATALOG, 999, user(session, "rita"), "accept")
    with pytest.raises(NotFoundError, match="no prediction with id 999"):
        reviews.correct_prediction(session, CATALOG, 999, user(session, "rita"), 2583)


def test_correct_sets_the_type_whatever_the_status(session: Session) -> None:
    p = add_prediction(session, user(session, "carl"), code=1280)
    reviews.review_prediction(session, CATALOG, p.id, user(session, "rita"), "reject")
    row = reviews.correct_prediction(session, CATALOG, p.id, user(session, "admin"), 2583)
    assert (row.status, row.final_code) == ("accepted", 2583)
    assert row.reviewed_by is not None and row.reviewed_by.username == "admin"
    event = session.scalars(select(AuditEvent).where(AuditEvent.entity == "prediction")).all()[-1]
    assert event.action == "prediction.corrected"
    assert event.details["before"] == {"status": "rejected", "final_code": None}
    with pytest.raises(InvalidInputError, match="unknown product type code 7"):
        reviews.correct_prediction(session, CATALOG, p.id, user(session, "admin"), 7)


def test_concurrent_reviews_have_one_winner(engine: Engine) -> None:
    factory = make_sessionmaker(engine)
    with factory() as setup:
        pid = add_prediction(setup, user(setup, "carl")).id
    outcomes: list[str] = []
    barrier = threading.Barrier(2)

    def review(name: str, decision: str) -> None:
        with factory() as s:
            reviewer = user(s, name)
            barrier.wait()
            try:
                reviews.review_prediction(s, CATALOG, pid, reviewer, decision)
                outcomes.append("ok")
            except ConflictError:
                outcomes.append("conflict")

    threads = [
        threading.Thread(target=review, args=("rita", "accept")),
        threading.Thread(target=review, args=("admin", "reject")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict", "ok"]
    with factory() as s:
        events = s.scalars(
            select(AuditEvent).where(AuditEvent.entity == "prediction", AuditEvent.entity_id == str(pid))
        ).all()
        assert len(events) == 1  # only the winner's review was recorded
