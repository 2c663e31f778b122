"""Logging in, accounts over the API, categories and health."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.catalog import load_catalog
from prodtype.config import Settings
from prodtype.db import migrate
from prodtype.serving.model_holder import ModelHolder
from service_support.databases import PASSWORD

from .conftest import API, Headers


def login(client: TestClient, username: str, password: str = PASSWORD) -> Headers:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    return {"Authorization": f"Bearer {body['access_token']}"}


def test_login_then_use_the_token(client: TestClient) -> None:
    me = client.get(f"{API}/users/me", headers=login(client, "rita"))
    assert me.status_code == 200
    assert me.json()["username"] == "rita" and me.json()["role"] == "reviewer"
    assert "password" not in me.text and "hash" not in me.text


def test_admin_manages_accounts(client: TestClient, auth: Callable[[str], Headers]) -> None:
    admin = auth("admin")
    created = client.post(
        f"{API}/users",
        json={"username": "nina", "password": "nina's long password", "role": "reviewer"},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "reviewer" and not created.json()["disabled"]
    nina = login(client, "nina", "nina's long password")
    assert client.get(f"{API}/predictions", headers=nina).status_code == 200

    duplicate = client.post(f"{API}/users", json={"username": "nina", "password": PASSWORD}, headers=admin)
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]

    listed = client.get(f"{API}/users", headers=admin).json()
    assert listed["count"] == 5
    assert [u["username"] for u in listed["data"]] == ["admin", "carl", "cora", "nina", "rita"]

    # A role change applies to tokens already issued: roles are read from the database on each request.
    demoted = client.patch(f"{API}/users/nina", json={"role": "customer"}, headers=admin)
    assert demoted.status_code == 200 and demoted.json()["role"] == "customer"
    assert (
        client.post(f"{API}/predictions/1/review", json={"decision": "accept"}, headers=nina).status_code
        == 403
    )

    disabled = client.patch(f"{API}/users/nina", json={"disabled": True}, headers=admin)
    assert disabled.json()["disabled"] is True
    assert client.get(f"{API}/users/me", headers=nina).status_code == 401
    refused = client.post(f"{API}/auth/token", data={"username": "nina", "password": "nina's long password"})
    assert refused.status_code == 401 and "disabled" in refused.json()["detail"]

    changed = client.patch(
        f"{API}/users/nina", json={"disabled": False, "password": "another long password"}, headers=admin
    )
    assert changed.status_code == 200
    login(client, "nina", "another long password")

    audit = client.get(f"{API}/audit", params={"entity": "user", "entity_id": "nina"}, headers=admin).json()
    actions = [e["action"] for e in audit["data"]]
    assert actions == ["user.updated", "auth.login_failed", "user.updated", "user.updated", "user.created"]
    assert all(e["actor"] == "admin" for e in audit["data"] if e["action"] != "auth.login_failed")
    failed = audit["data"][1]
    assert failed["actor"] is None and failed["details"]["reason"] == "account disabled"
    assert "another long password" not in str(audit)


def test_account_rules_over_the_api(client: TestClient, auth: Callable[[str], Headers]) -> None:
    admin = auth("admin")
    for body, status, phrase in [
        ({"username": "x", "password": PASSWORD}, 422, "username"),
        ({"username": "okname", "password": "short"}, 422, "password"),
        ({"username": "okname", "password": PASSWORD, "role": "root"}, 422, "role"),
        ({"username": "bad name!", "password": PASSWORD}, 422, "not allowed"),
    ]:
        response = client.post(f"{API}/users", json=body, headers=admin)
        assert response.status_code == status and phrase in response.json()["detail"], response.text
    last_admin = client.patch(f"{API}/users/admin", json={"role": "customer"}, headers=admin)
    assert last_admin.status_code == 409 and "last active admin" in last_admin.json()["detail"]
    missing = client.patch(f"{API}/users/ghost", json={"role": "customer"}, headers=admin)
    assert missing.status_code == 404


def test_categories(client: TestClient, auth: Callable[[str], Headers]) -> None:
    body = client.get(f"{API}/categories", headers=auth("carl")).json()
    catalog = load_catalog()
    assert body["count"] == len(catalog) == 27
    assert [c["prdtypecode"] for c in body["data"]] == catalog.codes
    assert all(c["name"] for c in body["data"])


def test_health(app: FastAPI, client: TestClient, model_holder: ModelHolder) -> None:
    body = client.get(f"{API}/health").json()
    assert body["status"] == "ok" and body["database"] is True
    assert body["model_loaded"] is True and body["model_version"] == model_holder.version


def test_health_without_a_model_is_degraded(settings: object, client: TestClient, app: FastAPI) -> None:
    app.state.model_holder = ModelHolder()
    response = client.get(f"{API}/health")
    assert response.status_code == 503
    assert response.json()["status"] == "degraded" and response.json()["model_loaded"] is False


def test_the_app_migrates_a_blank_database_on_start(
    settings: Settings, blank_database_url: str, model_holder: ModelHolder
) -> None:
    app = create_app(
        settings.model_copy(update={"database_url": blank_database_url}), model_holder=model_holder
    )
    assert migrate.current_revision(app.state.engine) is None
    with TestClient(app) as client:
        assert client.get(f"{API}/health").json()["database"] is True
        assert migrate.current_revision(app.state.engine) == migrate.head_revision()
