"""Web page tests: the real app (pages, API and services) on a fresh database with the real model bundle
that tests/conftest.py trains once per session."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder, load_model
from service_support.databases import (  # noqa: F401 (fixtures)
    PASSWORD,
    backend,
    database_url,
    postgres_backend,
    settings,
    sqlite_backend,
)

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
# Written out here, not imported: a weakened policy in the code must not weaken the test with it.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@pytest.fixture(scope="session")
def web_model_holder(trained_bundle: Path) -> ModelHolder:
    predictor = load_model(trained_bundle)
    predictor.warm_up()  # type: ignore[attr-defined] (the bundle predictor has it; the protocol does not)
    return ModelHolder(predictor)


@pytest.fixture
def app(settings: Settings, web_model_holder: ModelHolder) -> FastAPI:  # noqa: F811 (the imported fixture)
    return create_app(settings, model_holder=web_model_holder)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def csrf_of(response: httpx.Response) -> str:
    """The CSRF token of the (first) form on a page."""
    match = CSRF.search(response.text)
    assert match, f"no CSRF token on the page:\n{response.text[:2000]}"
    return match.group(1)


def log_in(client: TestClient, username: str, password: str = PASSWORD) -> None:
    token = csrf_of(client.get("/login"))
    response = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    assert response.status_code == 303, response.text


def error_on(page: str) -> str:
    match = re.search(r'<div class="alert error" role="alert" id="error">(.*?)</div>', page, re.S)
    assert match, f"no error message on the page:\n{page[:3000]}"
    return unescape(match.group(1))


def submit(
    client: TestClient, designation: str, description: str = "", image: bytes | None = None, **extra: str
) -> tuple[int, str]:
    """POST the form as the page would; the status and where it redirects (or the page)."""
    data = {
        "designation": designation,
        "description": description,
        "csrf_token": csrf_of(client.get("/predict")),
    }
    data |= extra
    files = {"image": ("photo.jpg", image, "image/jpeg")} if image is not None else {"image": ("", b"", "")}
    response = client.post("/predict", data=data, files=files)
    return response.status_code, response.headers.get("location") or response.text


def assert_security_headers(response: httpx.Response, where: object = "") -> None:
    """Pages and redirects carry the page policy and the other security headers; photos a policy that
    allows nothing; the bodiless 401/404 of the photo route carry nothing to protect, nor the JSON 400
    answered to a body that cannot be parsed as a form."""
    headers = response.headers
    kind = headers.get("content-type", "")
    if kind.startswith("image/"):
        assert headers.get("content-security-policy") == "default-src 'none'", where
        assert headers.get("x-content-type-options") == "nosniff", where
    elif kind.startswith("text/html") or response.is_redirect:
        assert headers.get("content-security-policy") == PAGE_POLICY, where
        assert headers.get("x-frame-options") == "DENY", where
        assert headers.get("x-content-type-options") == "nosniff", where
        assert headers.get("referrer-policy") == "same-origin", where
        assert headers.get("cache-control") == "no-store", where
    elif kind.startswith("application/json"):
        # a body no browser sends (unparsable): the API's 400; or a page's JSON for its script, never cached
        if response.headers.get("cache-control") != "no-store":
            assert response.status_code == 400 and response.json()["detail"], where
    else:
        assert response.status_code in (401, 404) and not response.content, (
            where,
            response.status_code,
            kind,
        )
