"""Who may call what: a table of route × role → status, checked over every route of the app.

A route added to the app without a rule here fails ``test_every_route_has_a_rule``; a rule for a route that no
longer exists fails it too.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from service_support.databases import PASSWORD
from service_support.images import photo

from .conftest import API, Headers

ROLES = ("anonymous", "customer", "reviewer", "admin")
# The seeded account acting in each role; the predictions used below belong to the customer.
ACCOUNT = {"customer": "carl", "reviewer": "rita", "admin": "admin"}
_names = itertools.count()


@dataclass
class Call:
    """How to call a route validly, and the status each role gets."""

    expect: dict[str, int]
    body: Callable[[str], dict[str, Any]] = field(default=lambda _role: {})


def everyone(status: int) -> dict[str, int]:
    return dict.fromkeys(ROLES, status)


def signed_in(status: int) -> dict[str, int]:
    return {"anonymous": 401, "customer": status, "reviewer": status, "admin": status}


def reviewers(status: int) -> dict[str, int]:
    return {"anonymous": 401, "customer": 403, "reviewer": status, "admin": status}


def admins(status: int) -> dict[str, int]:
    return {"anonymous": 401, "customer": 403, "reviewer": 403, "admin": status}


def _login(role: str) -> dict[str, Any]:
    return {"data": {"username": ACCOUNT.get(role, "carl"), "password": PASSWORD}}


def _product(_role: str) -> dict[str, Any]:
    return {
        "files": {"designation": (None, "Lot de 6 verres à vin"), "image": ("p.jpg", photo(1), "image/jpeg")}
    }


def _bulk(_role: str) -> dict[str, Any]:
    return {"json": [{"designation": "Lot de 6 verres à vin"}, {"designation": "Piscine tubulaire"}]}


def _bulk_job(_role: str) -> dict[str, Any]:
    csv = b",designation,description,productid,imageid\n0,Lot de 6 verres \xc3\xa0 vin,,1,2\n"
    return {"files": {"csv": ("products.csv", csv, "text/csv")}}


def _new_user(_role: str) -> dict[str, Any]:
    return {"json": {"username": f"newuser{next(_names)}", "password": PASSWORD, "role": "customer"}}


RULES: dict[tuple[str, str], Call] = {
    ("GET", "/openapi.json"): Call(everyone(200)),
    ("GET", "/docs"): Call(everyone(200)),
    ("GET", "/docs/oauth2-redirect"): Call(everyone(200)),
    ("GET", "/redoc"): Call(everyone(200)),
    ("POST", f"{API}/auth/token"): Call(everyone(200), _login),
    ("POST", f"{API}/auth/logout"): Call(signed_in(204)),
    ("GET", f"{API}/health"): Call(everyone(200)),
    ("GET", "/metrics"): Call(everyone(200)),
    ("GET", f"{API}/categories"): Call(signed_in(200)),
    ("POST", f"{API}/predictions"): Call(signed_in(201), _product),
    ("POST", f"{API}/predictions/batch"): Call(signed_in(200), _bulk),
    ("GET", f"{API}/predictions"): Call(signed_in(200)),
    # Bulk jobs: a job id that does not exist (or is not the caller's) is a 404 for everyone; that the
    # owner and admins see a job and no one else does is tested in test_bulk_jobs.py.
    ("POST", f"{API}/jobs/bulk"): Call(signed_in(202), _bulk_job),
    ("GET", f"{API}/jobs/{{job_id}}"): Call(signed_in(404)),
    ("GET", f"{API}/jobs/{{job_id}}/result"): Call(signed_in(404)),
    ("GET", f"{API}/predictions/{{prediction_id}}"): Call(signed_in(200)),
    ("GET", f"{API}/predictions/{{prediction_id}}/image"): Call(signed_in(200)),
    ("GET", f"{API}/predictions/{{prediction_id}}/explanation"): Call(signed_in(200)),
    ("PATCH", f"{API}/predictions/{{prediction_id}}"): Call(
        reviewers(200), lambda _r: {"json": {"prdtypecode": 10}}
    ),
    ("POST", f"{API}/predictions/{{prediction_id}}/review"): Call(
        reviewers(200), lambda _r: {"json": {"decision": "accept"}}
    ),
    ("DELETE", f"{API}/predictions/{{prediction_id}}"): Call(admins(204)),
    ("GET", f"{API}/users/me"): Call(signed_in(200)),
    ("GET", f"{API}/users"): Call(admins(200)),
    ("POST", f"{API}/users"): Call(admins(201), _new_user),
    ("PATCH", f"{API}/users/{{username}}"): Call(admins(200), lambda _r: {"json": {"role": "reviewer"}}),
    ("POST", f"{API}/users/{{username}}/logout"): Call(admins(204)),
    ("GET", f"{API}/audit"): Call(admins(200)),
    # The learning loop (tests/loop and tests/e2e check what these do; here: who may call them).
    # No model is registered in these tests: promote answers 404, rollback 409; the retrain body is
    # invalid on purpose (422) so that no background training starts.
    ("GET", f"{API}/models"): Call(admins(200)),
    ("POST", f"{API}/models/{{version}}/promote"): Call(admins(404)),
    ("GET", f"{API}/models/{{version}}/card"): Call(admins(404)),
    ("POST", f"{API}/models/rollback"): Call(admins(409)),
    ("GET", f"{API}/models/shadow"): Call(admins(200)),
    ("PUT", f"{API}/models/{{version}}/shadow"): Call(admins(404)),
    ("DELETE", f"{API}/models/shadow"): Call(admins(200)),
    ("POST", f"{API}/retrain"): Call(admins(422), lambda _r: {"json": {"force": "not a boolean"}}),
    ("GET", f"{API}/retrain/status"): Call(admins(200)),
    ("GET", f"{API}/retrain/{{job_id}}"): Call(admins(404)),
}


def app_routes(app: FastAPI) -> set[tuple[str, str]]:
    """(method, path) of every route, those of included routers too (FastAPI keeps them nested). The web
    pages (cookie sessions, HTML answers) have their own rules, in tests/web."""
    found = set()
    for route in iter_route_contexts(app.routes):
        if getattr(route.endpoint, "__module__", "").startswith("prodtype.web."):
            continue
        for method in route.methods or ():
            if method != "HEAD" and route.path:
                found.add((method, route.path))
    return found


def test_every_route_has_a_rule(app: FastAPI) -> None:
    routes = app_routes(app)
    missing = sorted(routes - RULES.keys())
    stale = sorted(RULES.keys() - routes)
    assert not missing, f"routes without a rule in tests/api/test_roles.py RULES: {missing}"
    assert not stale, f"rules for routes that do not exist: {stale}"


@pytest.mark.parametrize("route", sorted(RULES), ids=lambda r: f"{r[0]} {r[1]}")
def test_route_by_role(
    route: tuple[str, str],
    app: FastAPI,
    client: TestClient,
    auth: Callable[[str], Headers],
    stored_prediction: Callable[[str], int],
) -> None:
    method, path = route
    call = RULES[route]
    got = {}
    for role in ROLES:
        url = path
        if "{prediction_id}" in path:  # a fresh prediction of the customer's for each call
            url = url.replace("{prediction_id}", str(stored_prediction("carl")))
        url = (
            url.replace("{username}", "cora")
            .replace("{version}", "1")
            .replace("{job_id}", "20260101000000deadbeef")
        )
        headers = auth(ACCOUNT[role]) if role in ACCOUNT else {}
        response = client.request(method, url, headers=headers, **call.body(role))
        got[role] = response.status_code
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/json", response.text
            assert response.json()["detail"], response.text
    assert got == call.expect
