"""The review queue page on both databases: lowest confidence first; accept, correct, reject; conflicts."""

from __future__ import annotations

import re
from html import unescape

from fastapi.testclient import TestClient
from sqlalchemy import select

from prodtype.catalog import load_catalog
from prodtype.db.engine import make_engine, make_sessionmaker
from prodtype.db.tables import Prediction

from .conftest import csrf_of, error_on, log_in, submit

CATALOG = load_catalog()


def _review(client: TestClient, prediction_id: int, **form: str) -> tuple[int, str]:
    token = csrf_of(client.get("/review"))
    response = client.post(f"/review/{prediction_id}", data={"csrf_token": token, **form})
    return response.status_code, response.headers.get("location") or response.text


def test_the_review_queue_accepts_corrects_and_rejects(client: TestClient, database_url: str) -> None:
    log_in(client, "carl")
    titles = ("Piscine tubulaire", "Jeu PS4", "Lot de livres")
    ids = [int(submit(client, title)[1].rsplit("/", 1)[1]) for title in titles]
    log_in(client, "rita")
    assert client.get("/").headers["location"] == "/review"
    page = client.get("/review").text
    assert re.search(r'id="pending-count">3<', page)
    item = r'<article class="card review-item[^"]*" id="prediction-(\d+)"'
    shown = [int(i) for i in re.findall(item, page)]
    stored = _stored(database_url)
    assert shown == sorted(ids, key=lambda i: (stored[i][0], i))  # lowest confidence first

    low, mid, high = shown
    other = next(c.code for c in CATALOG.categories if c.code != stored[mid][1])
    assert _review(client, low, action="reject")[1] == f"/review?done={low}&page=1"
    status, location = _review(client, mid, action="correct", prdtypecode=str(other))
    assert status == 303
    notice = f"Prediction #{mid} corrected: {CATALOG.name(other)} ({other})."
    assert notice in unescape(client.get(location).text)
    assert _review(client, high, action="accept")[0] == 303
    assert "Nothing to review." in client.get("/review").text

    # Acting on what was already reviewed, or with a bad type, says why on the page.
    status, page = _review(client, low, action="accept")
    assert status == 409 and f"prediction {low} was already reviewed: rejected by rita" in error_on(page)
    status, page = _review(client, mid, action="correct", prdtypecode="")
    assert status == 422 and "choose the correct product type" in error_on(page)
    status, page = _review(client, mid, action="correct", prdtypecode="12345")
    assert status == 422 and "unknown product type code 12345" in error_on(page)
    status, page = _review(client, 999_999, action="reject")
    assert status == 404 and "no prediction with id 999999" in error_on(page)

    log_in(client, "carl")
    mine = client.get(f"/predictions/{mid}").text
    assert 'id="status">accepted<' in mine and "reviewed by rita" in mine
    assert f"final type <strong>{CATALOG.name(other)}</strong> ({other})" in unescape(mine)


def _stored(url: str) -> dict[int, tuple[float, int]]:
    """Each prediction's confidence and predicted code, read from the database."""
    engine = make_engine(url)
    try:
        with make_sessionmaker(engine)() as session:
            return {p.id: (p.confidence, p.predicted_code) for p in session.scalars(select(Prediction))}
    finally:
        engine.dispose()
