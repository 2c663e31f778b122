"""The figures the alerting rules need, at /metrics, computed from the database: live accuracy of the served
model, class-mix drift (PSI), review backlog, retrain outcomes. On SQLite and PostgreSQL, through the API's
own paths (single and bulk predictions, reviews, corrections)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.db.engine import make_engine
from prodtype.db.tables import Prediction
from prodtype.loop.alert_figures import CachedFigures
from prodtype.loop.retrain_outcomes import record_outcome, recorded
from prodtype.serving import users
from prodtype.serving.model_holder import ModelHolder

from .conftest import API, Headers
from .test_metrics import scrape, value

PRODUCTS = [
    "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe",
    "Jeu PS4 FIFA 21 edition standard",
    "Lot de 4 coussins decoratifs en lin",
    "Figurine Funko Pop Star Wars Dark Vador",
    "Livre de cuisine italienne pour debutants",
    "Tondeuse a gazon electrique 1200 W",
]


def refreshed_every(settings: Settings, seconds: float) -> Settings:
    """The settings with PRODTYPE_METRICS_REFRESH_SECONDS set to ``seconds``."""
    loop = settings.loop.model_copy(update={"metrics_refresh_seconds": seconds})
    return settings.model_copy(update={"loop": loop})


@pytest.fixture
def app(settings: Settings, model_holder: ModelHolder) -> FastAPI:
    # every scrape reads the database
    return create_app(refreshed_every(settings, 0), model_holder=model_holder)


def psi(expected: dict[int, float], actual: dict[int, float]) -> float:
    """The population stability index, written out again here (0.0001 floor for empty shares)."""
    out = 0.0
    for code in expected:
        e, a = max(expected[code], 1e-4), max(actual.get(code, 0.0), 1e-4)
        out += (a - e) * math.log(a / e)
    return out


def test_live_accuracy_backlog_and_class_mix_follow_predictions_and_reviews(
    client: TestClient,
    app: FastAPI,
    predict: Callable[..., dict[str, Any]],
    auth: Callable[[str], Headers],
    trained_bundle: Path,
) -> None:
    samples = scrape(client)
    assert value(samples, "prodtype_alert_figures_ok") == 1
    assert value(samples, "prodtype_review_backlog") == 0
    assert value(samples, "prodtype_live_accuracy_reviews") == 0
    for absent in ("prodtype_live_accuracy", "prodtype_class_mix_psi", "prodtype_retrain_last_failed"):
        assert not [key for key in samples if key[0] == absent], absent  # no value yet: no alert
    assert (
        value(samples, "prodtype_live_accuracy_threshold") == app.state.settings.loop.live_accuracy_threshold
    )

    single = [predict("carl", p) for p in PRODUCTS[:4]]
    bulk = client.post(
        f"{API}/predictions/batch", json=[{"designation": p} for p in PRODUCTS[4:]], headers=auth("carl")
    )
    assert bulk.status_code == 200, bulk.text
    made = single + [item["prediction"] for item in bulk.json()["data"]]
    assert len(made) == 6

    reviewer = auth("rita")
    # accepted unchanged: 0, 1, 2; corrected: 3 (by review) and 4 (by PATCH); rejected: 5 (not a model error)
    for item in made[:3]:
        ok = client.post(
            f"{API}/predictions/{item['id']}/review", json={"decision": "accept"}, headers=reviewer
        )
        assert ok.status_code == 200, ok.text
    other = next(c for c in (10, 2583, 1280) if c != made[3]["prdtypecode"])
    corrected = client.post(
        f"{API}/predictions/{made[3]['id']}/review",
        json={"decision": "accept", "prdtypecode": other},
        headers=reviewer,
    )
    assert corrected.status_code == 200, corrected.text
    other = next(c for c in (10, 2583, 1280) if c != made[4]["prdtypecode"])
    patched = client.patch(
        f"{API}/predictions/{made[4]['id']}", json={"prdtypecode": other}, headers=reviewer
    )
    assert patched.status_code == 200, patched.text
    rejected = client.post(
        f"{API}/predictions/{made[5]['id']}/review", json={"decision": "reject"}, headers=reviewer
    )
    assert rejected.status_code == 200, rejected.text
    pending = predict("cora", "Chaussettes en laine taille unique")

    # A corrected prediction of another model version does not count against the served one.
    with app.state.sessions() as session:
        old = Prediction(
            designation="ancienne",
            predicted_code=10,
            confidence=0.5,
            top_k=[],
            model_version="some-older-model",
            status="accepted",
            final_code=2583,
            reviewed_at=datetime.now(UTC),
            created_by_id=users.get_user(session, "carl").id,
            created_at=datetime.now(UTC) - timedelta(days=3),  # and outside the class-mix window
        )
        session.add(old)
        session.commit()

    samples = scrape(client)
    assert value(samples, "prodtype_live_accuracy_reviews") == 5
    assert value(samples, "prodtype_live_accuracy") == pytest.approx(3 / 5)
    assert value(samples, "prodtype_review_backlog") == 1
    age = value(samples, "prodtype_review_backlog_oldest_age_seconds")
    pending_at = datetime.fromisoformat(pending["created_at"])
    assert 0 <= age <= (datetime.now(UTC) - pending_at).total_seconds() + 1

    # PSI of the 7 predictions of the window against the bundle's training class counts.
    counts = {
        int(c): n
        for c, n in json.loads((trained_bundle / "training_report.json").read_text())["class_counts"].items()
    }
    predicted: dict[int, int] = {}
    for item in [*made, pending]:
        predicted[item["prdtypecode"]] = predicted.get(item["prdtypecode"], 0) + 1
    codes = sorted(set(counts) | set(predicted))
    train_shares = {c: counts.get(c, 0) / sum(counts.values()) for c in codes}
    live_shares = {c: predicted.get(c, 0) / 7 for c in codes}
    assert value(samples, "prodtype_class_mix_predictions") == 7
    assert value(samples, "prodtype_class_mix_psi") == pytest.approx(psi(train_shares, live_shares), rel=1e-9)
    assert (
        value(samples, "prodtype_class_mix_psi") > 0.25
    )  # 7 predictions over a few types: far from training


def test_retrain_outcomes_are_read_from_the_audit_log(client: TestClient, app: FastAPI) -> None:
    sessions: sessionmaker[Any] = app.state.sessions
    with pytest.raises(ValueError), recorded(lambda: sessions, "run-a"):
        raise ValueError("no data")
    samples = scrape(client)
    assert value(samples, "prodtype_retrain_runs_total", outcome="failed") == 1
    assert value(samples, "prodtype_retrain_runs_total", outcome="succeeded") == 0
    assert value(samples, "prodtype_retrain_last_failed") == 1
    failed_at = value(samples, "prodtype_retrain_last_timestamp_seconds", outcome="failed")
    assert abs(failed_at - datetime.now(UTC).timestamp()) < 60

    with recorded(lambda: sessions, "run-b", final=False):
        pass  # a step that is not the last one: nothing recorded
    with recorded(lambda: sessions, "run-c") as outcome:
        outcome.final = False  # the trigger did not fire: nothing trained, nothing recorded
    assert value(scrape(client), "prodtype_retrain_last_failed") == 1
    with recorded(lambda: sessions, "run-d"):
        pass
    samples = scrape(client)
    assert value(samples, "prodtype_retrain_last_failed") == 0
    assert value(samples, "prodtype_retrain_runs_total", outcome="succeeded") == 1
    record_outcome(sessions, "run-e", False, {"error": "killed"})
    assert value(scrape(client), "prodtype_retrain_last_failed") == 1


def test_an_unreachable_database_is_reported_and_the_scrape_still_answers(
    client: TestClient, app: FastAPI, tmp_path: Path
) -> None:
    assert value(scrape(client), "prodtype_alert_figures_ok") == 1
    engine = make_engine(f"sqlite:///{tmp_path / 'missing-folder' / 'nothing.db'}")
    app.state.sessions = sessionmaker(engine)
    samples = scrape(client)  # asserts the 200
    assert value(samples, "prodtype_alert_figures_ok") == 0
    assert value(samples, "prodtype_model_loaded") == 1
    assert not [key for key in samples if key[0] == "prodtype_review_backlog"]
    engine.dispose()


def test_figures_are_cached_for_the_refresh_interval() -> None:
    calls: list[float] = []

    def compute() -> Any:
        calls.append(1.0)
        return len(calls)

    cached = CachedFigures(compute, max_age=3600)
    assert [cached.get(), cached.get(), cached.get()] == [1, 1, 1]
    fresh = CachedFigures(compute, max_age=0)
    assert [fresh.get(), fresh.get()] == [2, 3]


@pytest.fixture
def slow_app(settings: Settings, model_holder: ModelHolder) -> Iterator[TestClient]:
    with TestClient(create_app(refreshed_every(settings, 3600), model_holder=model_holder)) as client:
        yield client


def test_a_scrape_within_the_interval_does_not_query_again(slow_app: TestClient) -> None:
    app: Any = slow_app.app
    assert value(scrape(slow_app), "prodtype_review_backlog") == 0
    with app.state.sessions() as session:
        session.add(
            Prediction(
                designation="x",
                predicted_code=10,
                confidence=0.5,
                top_k=[],
                model_version="v",
                created_by_id=users.get_user(session, "carl").id,
            )
        )
        session.commit()
    assert value(scrape(slow_app), "prodtype_review_backlog") == 0  # the cached figure
    app.state.alert_figures.cache = CachedFigures(app.state.alert_figures._compute, 0)
    assert value(scrape(slow_app), "prodtype_review_backlog") == 1
