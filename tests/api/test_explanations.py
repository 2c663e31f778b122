"""GET /api/v1/predictions/{id}/explanation with the real model: who may read it, bad ids, what it says, and
what it says when the prediction's model is no longer served or its photo is gone."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.ml.predictor import Prediction as ModelOutput
from prodtype.serving import predictions, users
from prodtype.serving.model_holder import ModelHolder
from prodtype.serving.predictions import CheckedSubmission
from prodtype.serving.security import create_access_token
from service_support.images import photo

from .conftest import API, PRODUCT, Headers


def url(prediction_id: object) -> str:
    return f"{API}/predictions/{prediction_id}/explanation"


def test_owner_reviewer_and_admin_read_it_another_customer_does_not(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Callable[[str], int]
) -> None:
    mine = stored_prediction("carl")
    bodies = []
    for username in ("carl", "rita", "admin"):
        response = client.get(url(mine), headers=auth(username))
        assert response.status_code == 200, response.text
        bodies.append(response.json())
    assert bodies[0] == bodies[1] == bodies[2]  # the same product explains the same way, whoever asks
    other = client.get(url(mine), headers=auth("cora"))
    assert other.status_code == 404 and "no prediction with id" in other.json()["detail"]
    assert client.get(url(mine)).status_code == 401


@pytest.mark.parametrize(("bad", "status"), [("0", 422), ("abc", 422), (str(2**31), 422), ("999999", 404)])
def test_bad_ids(client: TestClient, auth: Callable[[str], Headers], bad: str, status: int) -> None:
    response = client.get(url(bad), headers=auth("admin"))
    assert response.status_code == status, response.text
    assert response.json()["detail"]


def test_it_explains_the_stored_prediction(
    client: TestClient,
    auth: Callable[[str], Headers],
    predict: Callable[..., dict[str, Any]],
) -> None:
    made = predict("carl", PRODUCT, "Piscine hors sol <b>facile</b> à monter &amp; démonter", photo(2))
    body = client.get(url(made["id"]), headers=auth("carl")).json()
    assert body["same_model"] is True and body["notes"] == []
    assert body["model_version"] == body["prediction_model_version"] == made["model_version"]
    assert body["predicted"]["prdtypecode"] == made["prdtypecode"]
    assert body["runner_up"]["prdtypecode"] == made["top_k"][1]["prdtypecode"]
    assert body["predicted"]["probability"] == pytest.approx(made["confidence"], abs=1e-6)
    # exact: the branches and the bias add up to the log-odds of the two types
    assert [b["name"] for b in body["branches"]] == ["text", "embedding", "image"]
    total = sum(b["contribution"] for b in body["branches"]) + body["bias"]
    assert total == pytest.approx(body["log_odds"], abs=1e-9)
    ratio = body["predicted"]["probability"] / body["runner_up"]["probability"]
    assert math.log(ratio) == pytest.approx(body["log_odds"], abs=1e-6)
    assert body["photo"]["used"] is True
    image = body["branches"][-1]
    assert body["photo"]["disagrees"] == (image["points_to"]["prdtypecode"] != made["prdtypecode"])
    # the words, highlighted in the cleaned text
    assert "".join(p["text"] for p in body["title"]) == PRODUCT
    assert "".join(p["text"] for p in body["description"]) == "Piscine hors sol facile à monter & démonter"
    top = body["words"][body["toward_predicted"][0]]
    assert top["contribution"] > 0 and top["text"].lower() in {"piscine", "pompe", "filtration"}
    marked = [p for p in body["title"] + body["description"] if p["toward"] is not None]
    assert top["text"] in {p["text"] for p in marked if p["toward"] == "predicted" and p["level"] == 3}
    assert len(body["ngrams"]) == 20 and body["ngrams"][0]["words"]


def test_explanations_are_stable(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Callable[[str], int]
) -> None:
    made = stored_prediction("carl")
    first = client.get(url(made), headers=auth("carl")).json()
    assert client.get(url(made), headers=auth("carl")).json() == first


def _record(app: FastAPI, answer: ModelOutput, version: str, image: bytes | None) -> int:
    submission = CheckedSubmission(PRODUCT, "", image, "image/jpeg" if image else None)
    with app.state.sessions() as session:
        row = predictions.record_prediction(
            session, app.state.store, submission, answer, version, users.get_user(session, "carl")
        )
        return row.id


def test_a_prediction_of_a_model_no_longer_served_is_explained_by_the_current_one(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers], model_answer: ModelOutput
) -> None:
    old = _record(app, model_answer, "20200101-000000-0ldm0de1", None)
    response = client.get(url(old), headers=auth("carl"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["same_model"] is False and body["prediction_model_version"] == "20200101-000000-0ldm0de1"
    assert body["model_version"] == app.state.model_holder.version
    assert "20200101-000000-0ldm0de1" in body["notes"][0] and "no longer served" in body["notes"][0]


def test_a_photo_gone_from_the_store_is_said(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers], model_answer: ModelOutput
) -> None:
    image = photo(5)
    made = _record(app, model_answer, app.state.model_holder.version, image)
    with app.state.sessions() as session:
        digest = predictions.get_prediction(session, made, users.get_user(session, "admin")).image_sha256
    app.state.store.discard(digest)
    body = client.get(url(made), headers=auth("carl")).json()
    assert body["photo"] == {"used": False, "disagrees": False, "points_to": None}
    assert any("missing from the image store" in note for note in body["notes"])


def test_no_model_is_a_503(settings: Settings) -> None:
    app = create_app(settings, model_holder=ModelHolder())
    with TestClient(app, raise_server_exceptions=False) as client:
        with app.state.sessions() as session:
            version = users.get_user(session, "carl").token_version
        token = create_access_token("carl", app.state.jwt_secret, timedelta(minutes=5), version)
        response = client.get(url(1), headers={"Authorization": f"Bearer {token.token}"})
    assert response.status_code == 503 and "no model is loaded" in response.json()["detail"]
