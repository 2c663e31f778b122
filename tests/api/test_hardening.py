"""Regressions of the attack review (issue 8): each test fails on the code before its fix."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from prodtype.db.tables import Prediction, User
from prodtype.ml.predictor import Prediction as ModelOutput
from prodtype.serving import predictions
from prodtype.serving.predictions import CheckedSubmission
from service_support.databases import PASSWORD
from service_support.images import photo
from service_support.personal_photos import SECRETS, personal_jpeg

from .conftest import API, PRODUCT, Headers
from .test_bad_input import assert_error, post_product


def stored_files(app: FastAPI) -> list[Path]:
    root = Path(app.state.store.root)
    return sorted(p for p in root.glob("*/*") if p.is_file()) if root.is_dir() else []


# -- row 2: /metrics labels ----------------------------------------------------------------------------


def test_request_methods_a_client_invents_never_become_metric_labels(client: TestClient) -> None:
    for i in range(40):
        client.request(f"M{i:03d}{'X' * 400}", f"{API}/health")
    client.request("BREW", "/no/such/page")
    scrape = client.get("/metrics")
    methods = {
        s.labels["method"]
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
        if "method" in s.labels
    }
    assert methods <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert "XXXX" not in scrape.text and len(scrape.text) < 60_000
    other = [
        s.value
        for family in text_string_to_metric_families(scrape.text)
        for s in family.samples
        if s.name == "prodtype_http_requests_total" and s.labels.get("method") == "other"
    ]
    assert sum(other) == 41  # still counted, under one label value


# -- row 4: a designation that cleans to nothing -------------------------------------------------------


@pytest.mark.parametrize("designation", ["&nbsp;", "<b></b>", "&amp;nbsp;", "<p> </p><br/>"])
def test_a_designation_empty_after_html_cleaning_is_a_422(
    client: TestClient, auth: Callable[[str], Headers], designation: str
) -> None:
    response = post_product(client, auth("carl"), designation=designation, description="Piscine ronde")
    assert_error(response, 422, "designation has no text once HTML tags and entities are removed")


# -- row 8: dates whose UTC equivalent overflows -------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("created_after", "0001-01-01T00:00:00+01:00"), ("created_before", "9999-12-31T23:59:59-01:00")],
)
def test_dates_beyond_the_calendar_in_utc_are_a_422(
    client: TestClient, auth: Callable[[str], Headers], name: str, value: str
) -> None:
    response = client.get(f"{API}/predictions", params={name: value}, headers=auth("rita"))
    assert_error(response, 422, name, "0001-01-01 to 9999-12-31")
    fine = client.get(f"{API}/predictions", params={name: value[:19]}, headers=auth("rita"))  # naive: UTC
    assert fine.status_code == 200, fine.text


# -- row 9: photos are stored and served without their metadata ----------------------------------------


def test_uploaded_photos_lose_their_gps_position_and_keep_their_orientation(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers]
) -> None:
    original = personal_jpeg(orientation=6)
    created = post_product(client, auth("carl"), image=original, designation=PRODUCT)
    assert created.status_code == 201, created.text
    served = client.get(created.json()["image_url"], headers=auth("rita")).content
    (on_disk,) = stored_files(app)
    for data in (served, on_disk.read_bytes()):
        assert not any(secret in data for secret in SECRETS)
        img = Image.open(io.BytesIO(data))
        assert dict(img.getexif()) == {0x0112: 6} and img.size == Image.open(io.BytesIO(original)).size


def test_photos_stored_before_are_served_without_their_metadata(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers], model_answer: ModelOutput
) -> None:
    original = personal_jpeg()
    with app.state.sessions() as session:
        carl = session.scalar(select(User).where(User.username == "carl"))
        assert carl is not None
        row = predictions.record_prediction(
            session,
            app.state.store,
            CheckedSubmission(PRODUCT, "", original, "image/jpeg"),  # as the old code stored it
            model_answer,
            "test",
            carl,
        )
    served = client.get(f"{API}/predictions/{row.id}/image", headers=auth("carl")).content
    assert not any(secret in served for secret in SECRETS)


# -- row 10: authentication before the body, formats, headers, disabled accounts -----------------------


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"}], ids=["none", "forged"])
def test_an_anonymous_multipart_body_is_refused_before_it_is_parsed(
    client: TestClient, headers: Headers
) -> None:
    files = {"designation": (None, "x" * (1024 * 1024 + 100)), "description": (None, "")}
    response = client.post(f"{API}/predictions", files=files, headers=headers)
    assert_error(response, 401, "token")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF"])
def test_only_jpeg_png_and_webp_are_accepted(
    client: TestClient, auth: Callable[[str], Headers], fmt: str
) -> None:
    out = io.BytesIO()
    Image.open(io.BytesIO(photo(0))).save(out, fmt)
    response = post_product(client, auth("carl"), image=out.getvalue(), designation="Mug blanc")
    assert_error(response, 415, f"is a {fmt} file", "send a JPEG, PNG or WebP")
    assert client.get(f"{API}/predictions", headers=auth("carl")).json()["count"] == 0


def test_a_disabled_account_is_answered_like_a_wrong_password(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    disabled = client.patch(f"{API}/users/cora", json={"disabled": True}, headers=auth("admin"))
    assert disabled.status_code == 200
    right = client.post(f"{API}/auth/token", data={"username": "cora", "password": PASSWORD})
    wrong = client.post(f"{API}/auth/token", data={"username": "cora", "password": "not her password"})
    assert (right.status_code, right.json()) == (wrong.status_code, wrong.json()) == (401, wrong.json())


def test_token_responses_are_not_cached_and_api_responses_are_not_sniffed(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    token = client.post(f"{API}/auth/token", data={"username": "carl", "password": PASSWORD})
    assert token.status_code == 200
    assert token.headers["cache-control"] == "no-store"
    responses = [
        token,
        client.get(f"{API}/health"),
        client.get(f"{API}/categories", headers=auth("carl")),
        client.get(f"{API}/predictions/999", headers=auth("carl")),
        client.get(f"{API}/nothing-here"),
        client.get("/openapi.json"),
        client.get("/metrics"),
    ]
    for response in responses:
        assert response.headers.get("x-content-type-options") == "nosniff", response.url


# -- row 11: no orphan file, no NUL ---------------------------------------------------------------------


@pytest.mark.parametrize("field", ["designation", "description"])
def test_a_nul_character_is_refused_on_every_database_before_anything_is_written(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers], field: str
) -> None:
    fields: dict[str, Any] = {"designation": "Piscine ronde", "description": "avec pompe"}
    fields[field] += "\x00 fin"
    response = post_product(client, auth("carl"), image=photo(3), **fields)
    assert_error(response, 422, field, "NUL")
    assert stored_files(app) == []


def test_a_failed_insert_leaves_no_orphan_file(app: FastAPI, model_answer: ModelOutput) -> None:
    """The file is written before the row; when the insert fails (here: a creator that does not exist,
    refused by the foreign key), the file this call wrote goes too."""
    ghost = User(id=987_654, username="ghost", role="customer")
    submission = CheckedSubmission(PRODUCT, "", photo(5), "image/jpeg")
    with app.state.sessions() as session, pytest.raises(IntegrityError):
        predictions.record_prediction(session, app.state.store, submission, model_answer, "test", ghost)
    assert stored_files(app) == []
    # A file that was already there (another record uses it) stays.
    with app.state.sessions() as session:
        carl = session.scalar(select(User).where(User.username == "carl"))
        assert carl is not None
        predictions.record_prediction(session, app.state.store, submission, model_answer, "test", carl)
    with app.state.sessions() as session, pytest.raises(IntegrityError):
        predictions.record_prediction(session, app.state.store, submission, model_answer, "test", ghost)
    assert len(stored_files(app)) == 1
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 1
