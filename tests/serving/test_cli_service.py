"""``prodtype users …`` on a real database (the serve/run commands are tested over HTTP in tests/api)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from prodtype.cli import service as cli_service
from prodtype.config import get_settings
from prodtype.db.tables import User
from prodtype.serving import users


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[typer.Typer]:
    monkeypatch.setenv("PRODTYPE_DATABASE_URL", database_url)
    monkeypatch.setenv("PRODTYPE_STORAGE_DIR", str(tmp_path / "storage"))
    get_settings.cache_clear()
    app = typer.Typer()
    cli_service.register(app)
    yield app
    get_settings.cache_clear()


def run(
    app: typer.Typer, *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env=env, input=stdin)
    return result.exit_code, result.output


def test_users_create_with_a_prompted_password(cli: typer.Typer, session: Session) -> None:
    code, out = run(
        cli, "users", "create", "nina", "--role", "reviewer", stdin="nina's password\nnina's password\n"
    )
    assert code == 0, out
    assert "created nina (reviewer)" in out
    assert "nina's password" not in out
    assert users.authenticate(session, "nina", "nina's password").role == "reviewer"


def test_users_create_from_the_environment_and_refusals(cli: typer.Typer) -> None:
    env = {"PRODTYPE_NEW_PASSWORD": "from the environment"}
    assert run(cli, "users", "create", "omar", env=env)[0] == 0
    code, out = run(cli, "users", "create", "omar", env=env)
    assert code == 1 and "already exists" in out
    code, out = run(cli, "users", "create", "paul", env={"PRODTYPE_NEW_PASSWORD": "short"})
    assert code == 1 and "too short" in out
    code, out = run(cli, "users", "create", "paul", "--role", "boss", env=env)
    assert code == 2 and "boss" in out


def test_users_list_set_role_disable(cli: typer.Typer, session: Session) -> None:
    code, out = run(cli, "users", "list")
    assert code == 0
    for name in ("admin", "carl", "cora", "rita"):
        assert name in out
    assert run(cli, "users", "set-role", "carl", "reviewer")[1].strip() == "carl is now reviewer"
    assert run(cli, "users", "disable", "carl")[1].strip() == "carl is disabled"
    carl = session.scalar(select(User).where(User.username == "carl"))
    assert carl is not None and carl.disabled and carl.role == "reviewer"
    assert run(cli, "users", "disable", "carl", "--enable")[1].strip() == "carl is enabled"
    code, out = run(cli, "users", "disable", "admin")
    assert code == 1 and "last active admin" in out
    code, out = run(cli, "users", "set-role", "ghost", "admin")
    assert code == 1 and "no user named 'ghost'" in out


def test_run_without_a_model_or_data_says_what_to_set(
    cli: typer.Typer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PRODTYPE_MODEL_PATH", raising=False)
    monkeypatch.delenv("PRODTYPE_DATA_DIR", raising=False)
    get_settings.cache_clear()
    code, out = run(cli, "run")
    assert code != 0
    assert "PRODTYPE_MODEL_PATH" in out and "PRODTYPE_DATA_DIR" in out
