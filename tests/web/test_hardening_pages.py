"""The pages' side of the attack review (issue 8): numbers in URLs and forms, titles that clean to nothing,
login throttling on the form, and a logout that revokes the session's token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from prodtype.serving.security import create_access_token
from prodtype.web.session import SESSION_COOKIE
from service_support.databases import PASSWORD

from .conftest import csrf_of, error_on, log_in, submit

NOT_ASCII_DIGITS = ["²", "①", "٣", "１"]  # str.isdigit() says yes to each; int() refuses the first two


@pytest.mark.parametrize("number", NOT_ASCII_DIGITS)
def test_numbers_written_with_other_digits_are_not_a_500(client: TestClient, number: str) -> None:
    log_in(client, "carl")
    pid = int(submit(client, "Piscine tubulaire ronde")[1].rsplit("/", 1)[1])
    assert client.get(f"/predictions/{number}").status_code == 404
    assert client.get(f"/predictions/{number}/image").status_code == 404
    assert client.get("/predictions", params={"page": number}).status_code == 200
    log_in(client, "rita")
    assert client.get("/review", params={"done": number, "page": number}).status_code == 200
    token = csrf_of(client.get("/review"))
    form = {"csrf_token": token, "action": "correct", "prdtypecode": number, "page": number}
    response = client.post(f"/review/{pid}", data=form)
    assert response.status_code == 422 and "choose the correct product type" in error_on(response.text)
    response = client.post(f"/review/{number}", data={**form, "action": "accept"})
    assert response.status_code == 404


@pytest.mark.parametrize("designation", ["&nbsp;", "<b></b>"])
def test_a_title_that_cleans_to_nothing_is_explained(client: TestClient, designation: str) -> None:
    log_in(client, "carl")
    status, page = submit(client, designation, "Piscine ronde avec pompe")
    assert status == 422 and "designation has no text once HTML tags" in error_on(page)


def test_logging_out_revokes_the_sessions_token(app: FastAPI, client: TestClient) -> None:
    log_in(client, "carl")
    stolen = client.cookies[SESSION_COOKIE]
    api_token = create_access_token("carl", app.state.jwt_secret, timedelta(minutes=5)).token
    assert client.post("/logout", data={"csrf_token": csrf_of(client.get("/predict"))}).status_code == 303
    client.cookies.set(SESSION_COOKIE, stolen)  # a copy of the cookie taken before the logout
    assert client.get("/predict").headers["location"] == "/login"
    me = client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {api_token}"})
    assert me.status_code == 401 and "revoked" in me.json()["detail"]
    client.cookies.clear()
    log_in(client, "carl")  # logging in again works
    assert client.get("/predict").status_code == 200


@pytest.fixture
def strict_client(settings: Settings, web_model_holder: ModelHolder) -> Iterator[TestClient]:
    strict = settings.model_copy(update={"login_limit_per_username": "3/minute;10/hour"})
    with TestClient(create_app(strict, model_holder=web_model_holder), follow_redirects=False) as client:
        yield client


def test_the_login_form_is_throttled_too(strict_client: TestClient) -> None:
    def attempt(password: str) -> tuple[int, str, str | None]:
        token = csrf_of(strict_client.get("/login"))
        data = {"username": "carl", "password": password, "csrf_token": token}
        response = strict_client.post("/login", data=data)
        return response.status_code, response.text, response.headers.get("retry-after")

    for _ in range(3):
        assert attempt("wrong password")[0] == 401
    status, page, retry_after = attempt(PASSWORD)  # the right one, too late
    assert status == 429 and "too many failed logins" in error_on(page)
    assert retry_after is not None and 1 <= int(retry_after) <= 60


def test_a_strangers_form_is_not_read_before_the_login_page(client: TestClient) -> None:
    big = {"designation": "x" * (1024 * 1024 + 100), "csrf_token": "x"}
    for path in ("/predict", "/review/1"):
        response = client.post(path, files={k: (None, v) for k, v in big.items()})
        assert (response.status_code, response.headers["location"]) == (303, "/login"), path
    client.cookies.set(SESSION_COOKIE, "forged.token.value")
    response = client.post("/predict", files={k: (None, v) for k, v in big.items()})
    assert (response.status_code, response.headers["location"]) == (303, "/login")
