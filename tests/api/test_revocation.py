"""Tokens can be revoked: a password change, a disable, "log out everywhere" (API, CLI) and the web logout
make every token issued before stop working at once; checking costs no extra database query."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event
from typer.testing import CliRunner

from prodtype.cli import service as cli_service
from prodtype.config import get_settings
from service_support.databases import PASSWORD

from .conftest import API, Headers


def log_in(client: TestClient, username: str, password: str = PASSWORD) -> Headers:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def works(client: TestClient, headers: Headers) -> bool:
    status = client.get(f"{API}/users/me", headers=headers).status_code
    assert status in (200, 401)
    return status == 200


def assert_revoked(client: TestClient, headers: Headers) -> None:
    response = client.get(f"{API}/users/me", headers=headers)
    assert response.status_code == 401 and "revoked" in response.json()["detail"], response.text


def test_a_password_change_revokes_the_old_tokens(client: TestClient, auth: Callable[[str], Headers]) -> None:
    first, second = log_in(client, "carl"), log_in(client, "carl")
    cora = log_in(client, "cora")
    new_password = {"password": "a brand new password"}
    changed = client.patch(f"{API}/users/carl", json=new_password, headers=auth("admin"))
    assert changed.status_code == 200
    assert_revoked(client, first)
    assert_revoked(client, second)
    assert works(client, cora)  # other accounts are untouched
    assert works(client, log_in(client, "carl", "a brand new password"))


def test_a_disabled_then_enabled_account_does_not_get_its_old_tokens_back(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    old = log_in(client, "carl")
    for disabled in (True, False):
        response = client.patch(f"{API}/users/carl", json={"disabled": disabled}, headers=auth("admin"))
        assert response.status_code == 200
    assert_revoked(client, old)
    assert works(client, log_in(client, "carl"))


def test_log_out_everywhere_and_an_admin_logging_a_user_out(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    phone, laptop = log_in(client, "carl"), log_in(client, "carl")
    assert client.post(f"{API}/auth/logout", headers=phone).status_code == 204
    assert_revoked(client, phone)
    assert_revoked(client, laptop)
    assert client.post(f"{API}/auth/logout", headers=phone).status_code == 401

    cora = log_in(client, "cora")
    assert client.post(f"{API}/users/cora/logout", headers=auth("rita")).status_code == 403
    assert works(client, cora)
    assert client.post(f"{API}/users/cora/logout", headers=auth("admin")).status_code == 204
    assert_revoked(client, cora)
    assert client.post(f"{API}/users/nobody/logout", headers=auth("admin")).status_code == 404
    audit = client.get(f"{API}/audit", params={"entity_id": "cora"}, headers=auth("admin")).json()
    assert audit["data"][0]["action"] == "user.tokens_revoked" and audit["data"][0]["actor"] == "admin"


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("PRODTYPE_DATABASE_URL", database_url)
    monkeypatch.setenv("PRODTYPE_STORAGE_DIR", str(tmp_path / "cli-storage"))
    get_settings.cache_clear()
    app = typer.Typer()
    cli_service.register(app)
    yield app
    get_settings.cache_clear()


def test_log_out_everywhere_from_the_command_line(client: TestClient, cli: typer.Typer) -> None:
    token = log_in(client, "carl")
    result = CliRunner().invoke(cli, ["users", "logout", "carl"])
    assert result.exit_code == 0 and "carl is logged out everywhere" in result.output, result.output
    assert_revoked(client, token)
    result = CliRunner().invoke(cli, ["users", "logout", "nobody"])
    assert result.exit_code == 1 and "no user named 'nobody'" in result.output


def test_the_revocation_check_reads_the_user_row_already_loaded(app: FastAPI, client: TestClient) -> None:
    """One query per authenticated request, as before revocation existed: the version is a column of the
    user row that authentication loads anyway."""
    token = log_in(client, "carl")
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", count)
    try:
        assert works(client, token)
    finally:
        event.remove(app.state.engine, "before_cursor_execute", count)
    assert len(statements) == 1 and "FROM users" in statements[0], statements
