"""Settings that guard the service: production refuses to start without a strong token-signing secret."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from pydantic import ValidationError

from prodtype.config import Settings

STRONG = secrets.token_urlsafe(48)


def settings(tmp_path: Path, **values: object) -> Settings:
    return Settings(_env_file=None, storage_dir=tmp_path / "storage", **values)  # type: ignore[call-arg, arg-type]


@pytest.mark.parametrize(
    "secret",
    [None, "", "changeme", "CHANGETHIS", "password", "x" * 31],
    ids=["unset", "empty", "placeholder", "placeholder-upper", "password", "31-characters"],
)
def test_production_refuses_a_missing_placeholder_or_short_secret(tmp_path: Path, secret: str | None) -> None:
    with pytest.raises(
        ValidationError, match="PRODTYPE_JWT_SECRET must be set to a random string of at least 32"
    ):
        settings(tmp_path, environment="production", jwt_secret=secret)
    assert not (tmp_path / "storage").exists()  # nothing was generated in its place


def test_production_accepts_a_strong_secret_and_never_generates_one(tmp_path: Path) -> None:
    prod = settings(tmp_path, environment="production", jwt_secret=STRONG)
    assert prod.jwt_secret_value() == STRONG
    assert settings(tmp_path, environment="production", jwt_secret="y" * 32).jwt_secret_value() == "y" * 32
    assert not (tmp_path / "storage" / ".jwt_secret").exists()


def test_production_reads_the_secret_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PRODTYPE_ENVIRONMENT", "production")
    monkeypatch.delenv("PRODTYPE_JWT_SECRET", raising=False)
    with pytest.raises(ValidationError, match="PRODTYPE_JWT_SECRET"):
        settings(tmp_path)
    monkeypatch.setenv("PRODTYPE_JWT_SECRET", STRONG)
    assert settings(tmp_path).jwt_secret_value() == STRONG


def test_development_generates_a_secret_once_and_keeps_it_private(tmp_path: Path) -> None:
    dev = settings(tmp_path)
    first = dev.jwt_secret_value()
    assert len(first) >= 32 and first not in {"changeme", "secret"}
    path = tmp_path / "storage" / ".jwt_secret"
    assert path.read_text() == first and path.stat().st_mode & 0o777 == 0o600
    assert settings(tmp_path).jwt_secret_value() == first  # the next start signs with the same key


def test_the_metrics_token_comes_from_the_variable_or_a_file(tmp_path: Path) -> None:
    assert settings(tmp_path).metrics_token is None
    assert settings(tmp_path, metrics_token="").metrics_token is None  # a blank line in .env: no token
    token = secrets.token_urlsafe(32)
    assert settings(tmp_path, metrics_token=token).metrics_token.get_secret_value() == token  # type: ignore[union-attr]
    secret_file = tmp_path / "metrics_token"
    secret_file.write_text(token + "\n")  # as `echo` writes it
    from_file = settings(tmp_path, metrics_token_file=secret_file)
    assert from_file.metrics_token is not None and from_file.metrics_token.get_secret_value() == token


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"metrics_token": "short"}, "PRODTYPE_METRICS_TOKEN: expected one token of at least 16"),
        ({"metrics_token": "two words " + "x" * 20}, "without spaces"),
        ({"metrics_token_file": "missing"}, r"PRODTYPE_METRICS_TOKEN_FILE .*missing: cannot be read"),
        ({"metrics_token_file": "empty"}, r"PRODTYPE_METRICS_TOKEN_FILE .*empty: expected one token"),
        ({"metrics_token_file": "empty", "metrics_token": "y" * 20}, "not both"),
    ],
    ids=["short", "spaces", "missing-file", "empty-file", "both"],
)
def test_a_bad_metrics_token_is_refused_naming_where_it_came_from(
    tmp_path: Path, values: dict[str, str], message: str
) -> None:
    (tmp_path / "empty").write_text("\n")
    if "metrics_token_file" in values:
        values = {**values, "metrics_token_file": str(tmp_path / values["metrics_token_file"])}
    with pytest.raises(ValidationError, match=message):
        settings(tmp_path, **values)
