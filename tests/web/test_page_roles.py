"""Who may open which page: a table of page × role → status, checked over every page of the app.

A page added without a rule here fails ``test_every_page_has_a_rule`` (the API's table is in
tests/api/test_roles.py). Pages answer strangers with a redirect to the login page, not a 401.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from prodtype.web.session import NONCE_COOKIE, SESSION_COOKIE
from service_support.databases import PASSWORD, SqliteBackend
from service_support.images import photo

from .conftest import csrf_of, log_in, submit

ROLES = ("anonymous", "customer", "reviewer", "admin")
ACCOUNT = {"customer": "carl", "reviewer": "rita", "admin": "admin"}
Body = Callable[[str, str], dict[str, Any]]  # (role, csrf token) -> request arguments


def _form(**fields: str) -> Body:
    return lambda _role, token: {"data": {**fields, "csrf_token": token}}


def _login(role: str, token: str) -> dict[str, Any]:
    return {"data": {"username": ACCOUNT.get(role, "nobody"), "password": PASSWORD, "csrf_token": token}}


def _product(_role: str, token: str) -> dict[str, Any]:
    return {"data": {"designation": "Lot de 6 verres à vin", "csrf_token": token}}


def _no_body(_role: str, _token: str) -> dict[str, Any]:
    return {}


def signed_in(status: int, stranger: int = 303) -> dict[str, int]:
    return {"anonymous": stranger, "customer": status, "reviewer": status, "admin": status}


def reviewers(status: int) -> dict[str, int]:
    return {"anonymous": 303, "customer": 403, "reviewer": status, "admin": status}


PAGE_RULES: dict[tuple[str, str], tuple[dict[str, int], Body]] = {
    ("GET", "/"): (signed_in(303), _no_body),
    ("GET", "/login"): (signed_in(200, 200), _no_body),
    ("POST", "/login"): (signed_in(303, 401), _login),
    ("POST", "/logout"): (signed_in(303, 303), _form()),
    ("GET", "/predict"): (signed_in(200), _no_body),
    ("POST", "/predict"): (signed_in(303), _product),
    ("GET", "/predictions"): (signed_in(200), _no_body),
    ("GET", "/predictions/{prediction_id}"): (signed_in(200), _no_body),
    ("GET", "/predictions/{prediction_id}/image"): (signed_in(200, 401), _no_body),
    ("GET", "/review"): (reviewers(200), _no_body),
    ("POST", "/review/{prediction_id}"): (reviewers(303), _form(action="accept")),
}


@pytest.fixture
def backend(sqlite_backend: SqliteBackend) -> SqliteBackend:
    return sqlite_backend


def page_routes(app: FastAPI) -> set[tuple[str, str]]:
    found = set()
    for route in iter_route_contexts(app.routes):
        if getattr(route.endpoint, "__module__", "").startswith("prodtype.web."):
            found.update((method, route.path) for method in route.methods or () if method != "HEAD")
    return found


def test_every_page_has_a_rule(app: FastAPI) -> None:
    pages = page_routes(app)
    assert not sorted(pages - PAGE_RULES.keys()), "pages without a rule in PAGE_RULES"
    assert not sorted(PAGE_RULES.keys() - pages), "rules for pages that do not exist"


@pytest.mark.parametrize("page", sorted(PAGE_RULES), ids=lambda r: f"{r[0]} {r[1]}")
def test_page_by_role(page: tuple[str, str], app: FastAPI) -> None:
    method, path = page
    expect, body = PAGE_RULES[page]
    customer = TestClient(app, follow_redirects=False)
    log_in(customer, "carl")
    got = {}
    for role in ROLES:
        browser = TestClient(app, follow_redirects=False)
        if role in ACCOUNT:
            log_in(browser, ACCOUNT[role])
        url = path
        if "{prediction_id}" in path:  # a fresh prediction of the customer's for each call
            location = submit(customer, "Verre à vin", image=photo(2))[1]
            url = path.replace("{prediction_id}", location.rsplit("/", 1)[1])
        token = csrf_of(browser.get("/login"))
        got[role] = browser.request(method, url, **body(role, token)).status_code
    assert got == expect


PAGE_GARBAGE: list[dict[str, Any]] = [
    {"params": {"page": "NaN", "done": "1e99"}},
    {"params": {"page": "-1", "done": "-5"}},
    {"data": {"designation": "\x00" * 10, "prdtypecode": "NaN", "action": "x" * 5000, "page": "1e9"}},
    {"data": {"action": "correct", "prdtypecode": "99999999999999999999999"}},
    {
        "params": {"page": "9" * 5000, "done": "9" * 5000},
        "data": {"action": "correct", "prdtypecode": "9" * 5000},
    },
    {"content": b"\xff\xfe not a form", "headers": {"content-type": "multipart/form-data; boundary=zz"}},
    {"json": {"designation": 3, "username": ["x"]}},
    {"headers": {"cookie": f"{SESSION_COOKIE}=garbage; {NONCE_COOKIE}={'x' * 43}"}},
]


def test_garbage_on_every_page_is_never_a_500(app: FastAPI) -> None:
    browser = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    log_in(browser, "admin")
    pid = submit(browser, "Verre à vin")[1].rsplit("/", 1)[1]
    for method, path in sorted(page_routes(app)):
        for prediction_id in (pid, "abc", "99999999999999999999999", "9" * 5000):
            url = path.replace("{prediction_id}", prediction_id)
            for garbage in PAGE_GARBAGE:
                response = browser.request(method, url, **garbage)
                assert response.status_code < 500, (method, url, garbage, response.text[:500])
            log_in(browser, "admin")  # in case a garbage post logged out
