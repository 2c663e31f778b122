"""API tests: the real app on a fresh database (SQLite and PostgreSQL) with the real model bundle that
tests/conftest.py trains once per session, shared by every test through one ModelHolder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.db.tables import User
from prodtype.ml.predictor import Prediction as ModelOutput
from prodtype.serving import predictions, users
from prodtype.serving.model_holder import ModelHolder, load_model
from prodtype.serving.predictions import CheckedSubmission
from prodtype.serving.security import create_access_token
from service_support.databases import (  # noqa: F401 (fixtures)
    backend,
    blank_database_url,
    database_url,
    postgres_backend,
    settings,
    sqlite_backend,
)
from service_support.images import photo

API = "/api/v1"
Headers = dict[str, str]


@pytest.fixture(scope="session")
def model_holder(trained_bundle: Path) -> ModelHolder:
    return ModelHolder(load_model(trained_bundle))


@pytest.fixture
def app(settings: Settings, model_holder: ModelHolder) -> FastAPI:  # noqa: F811 (the imported fixture)
    return create_app(settings, model_holder=model_holder)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture
def auth(app: FastAPI) -> Callable[[str], Headers]:
    """Bearer headers for a seeded user, as a fresh login would give them (tokens are minted directly, with
    the user's current token version; logging in is tested on its own)."""

    def headers(username: str, lifetime: timedelta = timedelta(minutes=5)) -> Headers:
        with app.state.sessions() as session:
            user = session.scalar(select(User).where(User.username == username))
            version = user.token_version if user is not None else 0  # a name that does not exist: any
        token = create_access_token(username, app.state.jwt_secret, lifetime, version)
        return {"Authorization": f"Bearer {token.token}"}

    return headers


@pytest.fixture
def predict(client: TestClient, auth: Callable[[str], Headers]) -> Callable[..., dict[str, Any]]:
    """Submit a product as ``username`` and return the created prediction (asserting the 201)."""

    def submit(
        username: str = "carl",
        designation: str = "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe de filtration",
        description: str = "",
        image: bytes | None = None,
    ) -> dict[str, Any]:
        files: dict[str, Any] = {"designation": (None, designation), "description": (None, description)}
        if image is not None:
            files["image"] = ("photo.jpg", image, "image/jpeg")
        response = client.post(f"{API}/predictions", files=files, headers=auth(username))
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    return submit


PRODUCT = "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe de filtration"


@pytest.fixture(scope="session")
def model_answer(model_holder: ModelHolder) -> ModelOutput:
    """What the real model answers for one product with its photo, computed once per session."""
    return model_holder.get().predict(PRODUCT, "", photo(2))


@pytest.fixture
def stored_prediction(app: FastAPI, model_answer: ModelOutput) -> Callable[[str], int]:
    """Record a prediction (the real model's answer, computed once) as ``username``; returns its id.

    For tests that need a prediction to act on (review, roles, bad input) without running inference again;
    submitting through the API is tested in test_predictions.py."""

    def make(username: str = "carl") -> int:
        submission = CheckedSubmission(PRODUCT, "", photo(2), "image/jpeg")
        with app.state.sessions() as session:
            user = users.get_user(session, username)
            row = predictions.record_prediction(
                session, app.state.store, submission, model_answer, app.state.model_holder.version, user
            )
            return row.id

    return make
