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
