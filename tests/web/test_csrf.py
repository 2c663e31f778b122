"""The CSRF token is bound to the browser's nonce AND to the login session it was issued in.

A token copied from another session is refused even with the right nonce cookie: someone who can plant a
nonce cookie (a sibling subdomain, say) and read a token issued to their own session still cannot post
forms in someone else's session. (Tokens from another browser, i.e. another nonce, are refused in
test_pages.py.) No model is needed: the token is checked before anything is predicted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from prodtype.web.session import NONCE_COOKIE, SESSION_COOKIE
from service_support.databases import PASSWORD, SqliteBackend

from .conftest import csrf_of, error_on, log_in


@pytest.fixture
def backend(sqlite_backend: SqliteBackend) -> SqliteBackend:
    return sqlite_backend


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings, model_holder=ModelHolder())


@pytest.fixture
def browser(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, follow_redirects=False) as client:
        yield client


def test_a_token_from_an_earlier_session_of_the_same_browser_is_refused(browser: TestClient) -> None:
    log_in(browser, "carl")
    nonce = browser.cookies.get(NONCE_COOKIE)
    carls_token = csrf_of(browser.get("/predict"))
    log_in(browser, "cora")
    # Precondition: the same browser nonce, another session; the page now carries another token.
    assert browser.cookies.get(NONCE_COOKIE) == nonce
    coras_token = csrf_of(browser.get("/predict"))
    assert coras_token != carls_token

    refused = browser.post("/logout", data={"csrf_token": carls_token})
    assert refused.status_code == 403 and "did not come from this site" in error_on(refused.text)
    assert browser.get("/predict").status_code == 200  # still logged in

    done = browser.post("/logout", data={"csrf_token": coras_token})
    assert (done.status_code, done.headers["location"]) == (303, "/login")


def test_a_token_issued_before_login_is_refused_after_it(browser: TestClient) -> None:
    anonymous = csrf_of(browser.get("/login"))
    log_in(browser, "carl")
    refused = browser.post("/logout", data={"csrf_token": anonymous})
    assert refused.status_code == 403
    assert browser.get("/predict").status_code == 200


def test_a_token_issued_in_a_session_is_refused_once_it_ended(browser: TestClient) -> None:
    log_in(browser, "carl")
    in_session = csrf_of(browser.get("/predict"))
    assert browser.post("/logout", data={"csrf_token": in_session}).status_code == 303
    assert SESSION_COOKIE not in browser.cookies
    response = browser.post(
        "/login", data={"username": "carl", "password": PASSWORD, "csrf_token": in_session}
    )
    assert response.status_code == 403 and SESSION_COOKIE not in response.headers.get("set-cookie", "")
