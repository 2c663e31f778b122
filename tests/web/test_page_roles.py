"""Who may open which page: a table of page × role → status, checked over every page of the app.

A page added without a rule here fails ``test_every_page_has_a_rule`` (the API's table is in
tests/api/test_roles.py). Pages answer strangers with a redirect to the login page, not a 401.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from prodtype.loop.retrain_jobs import retrain_lock
from prodtype.web.session import NONCE_COOKIE, SESSION_COOKIE
from service_support.databases import PASSWORD, SqliteBackend
from service_support.images import photo

from .conftest import assert_security_headers, csrf_of, error_on, log_in, submit

ROLES = ("anonymous", "customer", "reviewer", "admin")
ACCOUNT = {"customer": "carl", "reviewer": "rita", "admin": "admin"}
Body = Callable[[str, str], dict[str, Any]]  # (role, csrf token) -> request arguments


def _form(**fields: str) -> Body:
    return lambda _role, token: {"data": {**fields, "csrf_token": token}}


def _login(role: str, token: str) -> dict[str, Any]:
    return {"data": {"username": ACCOUNT.get(role, "nobody"), "password": PASSWORD, "csrf_token": token}}


def _product(_role: str, token: str) -> dict[str, Any]:
    return {"data": {"designation": "Lot de 6 verres à vin", "csrf_token": token}}


BULK_CSV = ",designation,description,productid,imageid\n0,Lot de 6 verres à vin,,1,2\n".encode()


def _bulk(_role: str, token: str) -> dict[str, Any]:
    return {"data": {"csrf_token": token}, "files": {"csv": ("products.csv", BULK_CSV, "text/csv")}}


def _no_body(_role: str, _token: str) -> dict[str, Any]:
    return {}


def signed_in(status: int, stranger: int = 303) -> dict[str, int]:
    return {"anonymous": stranger, "customer": status, "reviewer": status, "admin": status}


def reviewers(status: int) -> dict[str, int]:
    return {"anonymous": 303, "customer": 403, "reviewer": status, "admin": status}


def admins(status: int) -> dict[str, int]:
    return {"anonymous": 303, "customer": 403, "reviewer": 403, "admin": status}


# Ids in the admin pages' paths: an existing account; a version and a job that do not exist (404).
PATH_VALUES = {"{username}": "carl", "{version}": "1", "{job_id}": "20261202000000deadbeef"}


PAGE_RULES: dict[tuple[str, str], tuple[dict[str, int], Body]] = {
    ("GET", "/"): (signed_in(303), _no_body),
    ("GET", "/login"): (signed_in(200, 200), _no_body),
    ("GET", "/language"): (signed_in(303, 303), _no_body),
    ("POST", "/login"): (signed_in(303, 401), _login),
    ("POST", "/logout"): (signed_in(303, 303), _form()),
    ("GET", "/predict"): (signed_in(200), _no_body),
    ("POST", "/predict"): (signed_in(303), _product),
    ("GET", "/predictions"): (signed_in(200), _no_body),
    ("GET", "/predictions/{prediction_id}"): (signed_in(200), _no_body),
    ("GET", "/predictions/{prediction_id}/image"): (signed_in(200, 401), _no_body),
    ("GET", "/predictions/{prediction_id}/explanation"): (signed_in(200), _no_body),
    # bulk jobs: {job_id} is one that does not exist (the owner-only rule is tested in test_bulk_page.py)
    ("GET", "/bulk"): (signed_in(200), _no_body),
    ("POST", "/bulk"): (signed_in(303), _bulk),
    ("GET", "/bulk/{job_id}"): (signed_in(404), _no_body),
    ("GET", "/bulk/{job_id}/status"): (signed_in(404), _no_body),
    ("GET", "/bulk/{job_id}/result"): (signed_in(404), _no_body),
    ("GET", "/review"): (reviewers(200), _no_body),
    ("POST", "/review/{prediction_id}"): (reviewers(303), _form(action="accept")),
    ("GET", "/monitoring"): (reviewers(200), _no_body),
    ("GET", "/accounts"): (admins(200), _no_body),
    ("POST", "/accounts"): (
        admins(303),
        _form(username="newcomer", password="a long password", role="customer"),
    ),
    ("POST", "/accounts/{username}"): (admins(200), _form(action="enable")),
    ("GET", "/models"): (admins(200), _no_body),
    ("POST", "/models/{version}/promote"): (admins(404), _form(reason="better")),
    ("POST", "/models/rollback"): (admins(409), _form(reason="worse")),
    ("POST", "/models/{version}/shadow"): (admins(404), _form(reason="try it")),
    ("POST", "/models/shadow/stop"): (admins(200), _form()),
    ("GET", "/retrain"): (admins(200), _no_body),
    # run while the test holds the retrain lock: the admin's retrain is refused as already running
    ("POST", "/retrain"): (admins(409), _form()),
    ("GET", "/retrain/jobs/{job_id}"): (admins(404), _no_body),
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
        for name, value in PATH_VALUES.items():
            url = url.replace(name, value)
        if "{prediction_id}" in path:  # a fresh prediction of the customer's for each call
            location = submit(customer, "Verre à vin", image=photo(2))[1]
            url = path.replace("{prediction_id}", location.rsplit("/", 1)[1])
        token = csrf_of(browser.get("/login"))
        with retrain_lock(app.state.settings, "test") if path == "/retrain" else nullcontext():
            response = browser.request(method, url, **body(role, token))
        got[role] = response.status_code
        assert_security_headers(response, (method, url, role))
    assert got == expect


PAGE_GARBAGE: list[dict[str, Any]] = [
    {"params": {"page": "NaN", "done": "1e99"}},
    {"params": {"page": "-1", "done": "-5"}},
    # The forms below carry the page's valid CSRF token, so that the garbage reaches the handlers.
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
SIGNED_IN_PAGE = [200] * 7 + [303]  # the garbage is ignored; a garbage session cookie is no session
NOT_FOUND_PAGE = [404] * 7 + [303]
ADMIN_FORM = [403, 403, 422, 422, 422, 400, 403, 303]
# What each page answers, as the admin, to each garbage above, for an existing prediction id, and (for
# pages with an id) for ids that cannot exist: "abc", one beyond the database's integers, 5000 digits.
# 403: the form has no valid CSRF token; 400: the body cannot be parsed; 422: a field is wrong (a title of
# NUL characters included); 303 after a form: done, or with a garbage session, the login page.
PAGE_GARBAGE_STATUS: dict[tuple[str, str], tuple[list[int], list[int] | None]] = {
    ("GET", "/"): ([303] * 8, None),
    ("GET", "/login"): ([200] * 8, None),
    ("GET", "/language"): ([303] * 8, None),
    ("GET", "/predict"): (SIGNED_IN_PAGE, None),
    ("GET", "/predictions"): (SIGNED_IN_PAGE, None),
    ("GET", "/review"): (SIGNED_IN_PAGE, None),
    ("GET", "/predictions/{prediction_id}"): (SIGNED_IN_PAGE, NOT_FOUND_PAGE),
    ("GET", "/predictions/{prediction_id}/image"): ([200] * 7 + [401], [404] * 7 + [401]),
    ("GET", "/predictions/{prediction_id}/explanation"): (SIGNED_IN_PAGE, NOT_FOUND_PAGE),
    ("POST", "/login"): ([403, 403, 422, 422, 422, 400, 403, 403], None),
    ("POST", "/logout"): ([403, 403, 303, 303, 303, 400, 403, 403], None),
    ("POST", "/predict"): ([403, 403, 422, 422, 422, 400, 403, 303], None),
    ("POST", "/review/{prediction_id}"): (
        [403, 403, 422, 422, 422, 400, 403, 303],
        [403, 403, 404, 404, 404, 400, 403, 303],
    ),
    ("GET", "/monitoring"): (SIGNED_IN_PAGE, None),
    # no CSV part in any garbage: 422 once the CSRF token is valid
    ("POST", "/bulk"): ([403, 403, 422, 422, 422, 400, 403, 303], None),
    ("GET", "/bulk"): (SIGNED_IN_PAGE, None),
    ("GET", "/bulk/{job_id}"): (NOT_FOUND_PAGE, None),
    ("GET", "/bulk/{job_id}/status"): (NOT_FOUND_PAGE, None),
    ("GET", "/bulk/{job_id}/result"): (NOT_FOUND_PAGE, None),
    ("GET", "/accounts"): (SIGNED_IN_PAGE, None),
    ("GET", "/models"): (SIGNED_IN_PAGE, None),
    ("GET", "/retrain"): (SIGNED_IN_PAGE, None),
    ("GET", "/retrain/jobs/{job_id}"): (NOT_FOUND_PAGE, None),
    # the admin's forms: 422 for a missing or wrong field (a form without a reason included); a retrain
    # (no field to get wrong) is refused as already running: the test holds the lock
    ("POST", "/accounts"): (ADMIN_FORM, None),
    ("POST", "/accounts/{username}"): (ADMIN_FORM, None),
    ("POST", "/models/{version}/promote"): (ADMIN_FORM, None),
    ("POST", "/models/rollback"): (ADMIN_FORM, None),
    # no version is registered: 404 once the CSRF token is valid; stopping no shadow is fine (200)
    ("POST", "/models/{version}/shadow"): ([403, 403, 404, 404, 404, 400, 403, 303], None),
    ("POST", "/models/shadow/stop"): ([403, 403, 200, 200, 200, 400, 403, 303], None),
    ("POST", "/retrain"): ([403, 403, 409, 409, 409, 400, 403, 303], None),
}


def test_garbage_on_every_page_gets_the_answer_that_says_what_was_wrong(app: FastAPI) -> None:
    assert set(PAGE_GARBAGE_STATUS) == page_routes(app)
    browser = TestClient(app, follow_redirects=False, raise_server_exceptions=False)
    got: dict[tuple[str, str, str], list[int]] = {}
    for method, path in sorted(page_routes(app)):
        ids = ["new", "abc", "99999999999999999999999", "9" * 5000] if "{prediction_id}" in path else ["-"]
        for prediction_id in ids:
            statuses = []
            for garbage in PAGE_GARBAGE:
                if SESSION_COOKIE not in browser.cookies:  # a garbage post may have logged out
                    log_in(browser, "admin")
                if prediction_id == "new":  # a fresh pending prediction with a photo for every request
                    prediction_id_now = submit(browser, "Verre à vin", image=photo(2))[1].rsplit("/", 1)[1]
                else:
                    prediction_id_now = prediction_id
                url = path.replace("{prediction_id}", prediction_id_now)
                for name, value in PATH_VALUES.items():
                    url = url.replace(name, value)
                request = {k: dict(v) if isinstance(v, dict) else v for k, v in garbage.items()}
                if "data" in request:
                    request["data"]["csrf_token"] = csrf_of(browser.get("/login"))
                with retrain_lock(app.state.settings, "test") if path == "/retrain" else nullcontext():
                    response = browser.request(method, url, **request)
                statuses.append(response.status_code)
                assert_security_headers(response, (method, url[:80], garbage))
                if response.status_code in (400, 403, 404, 422) and "text/html" in response.headers.get(
                    "content-type", ""
                ):
                    assert error_on(response.text), (method, url[:80], garbage)  # says what was wrong
            got[(method, path, prediction_id[:5])] = statuses
    expected = {}
    for (method, path), (existing, missing) in PAGE_GARBAGE_STATUS.items():
        if "{prediction_id}" in path:
            for prediction_id in ("new", "abc", "99999"):
                expected[(method, path, prediction_id)] = existing if prediction_id == "new" else missing
        else:
            expected[(method, path, "-")] = existing
    assert got == expected
