"""Settings in one place: environment variables with the ``PRODTYPE_`` prefix, or a ``.env`` file.

Nothing happens at import time; call :func:`get_settings`. Secrets are required outside development.
"""

from __future__ import annotations

import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "changethis", "password"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PRODTYPE_", env_file=".env", extra="ignore")

    environment: Literal["development", "production", "test"] = "development"
    storage_dir: Path = Path("var")
    database_url: str | None = None
    model_path: Path | None = None
    categories_file: Path | None = None
    data_dir: Path | None = Field(
        default=None, description="Folder with the challenge files (X_train*.csv, Y_train*.csv, image_train/)"
    )
    image_cache_dir: Path | None = None

    jwt_secret: SecretStr | None = None
    admin_password: SecretStr | None = None
    token_lifetime_minutes: int = Field(default=60, gt=0)
    upload_limit_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    max_image_side: int = Field(
        default=12_000, gt=0, description="Longest side of an uploaded photo, in pixels"
    )

    # Serving: concurrent predictions share model calls (see prodtype.serving.batching).
    batch_max_size: int = Field(default=32, ge=1, le=256, description="Products per model call at most")
    batch_max_wait_ms: float = Field(
        default=2.0, ge=0, le=100, description="How long a model call may wait for requests being prepared"
    )
    bulk_max_items: int = Field(default=100, ge=1, le=1000, description="Products per bulk request")
    bulk_max_request_bytes: int = Field(default=32 * 1024 * 1024, gt=0, description="Bulk request body limit")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes of `prodtype serve`")

    admin_username: str = Field(default="admin", min_length=3, max_length=64)
    top_k: int = Field(default=5, ge=1, le=27, description="Candidates returned with each prediction")
    migrate_on_start: bool = Field(default=True, description="Apply Alembic migrations when the API starts")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)

    threads: int = Field(default_factory=lambda: len(os.sched_getaffinity(0)), gt=0)

    # Login throttling (failed logins; see prodtype.serving.throttle): where the counters live
    # ("database", shared by every worker; or a `limits` storage URI such as redis://127.0.0.1:6379/0),
    # and the windows per username and per client address.
    rate_limit_storage: str = "database"
    login_limit_per_username: str = "5/minute;20/hour;100/day"
    login_limit_per_address: str = "20/minute;100/hour;1000/day"

    @field_validator("login_limit_per_username", "login_limit_per_address")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        from limits import parse_many

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a list of rate limits; expected e.g. '5/minute;20/hour;100/day'"
            ) from None
        return value

    @model_validator(mode="after")
    def _secrets_outside_development(self) -> Settings:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value() if self.jwt_secret else ""
            if secret.lower() in PLACEHOLDER_SECRETS or len(secret) < 32:
                raise ValueError(
                    "PRODTYPE_JWT_SECRET must be set to a random string of at least 32 characters in "
                    "production (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`)"
                )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.storage_dir / 'prodtype.db').resolve()}"

    @property
    def max_request_bytes(self) -> int:
        """Whole request body allowed: the image limit plus room for the text fields and multipart framing."""
        return self.upload_limit_bytes + 1024 * 1024

    @property
    def images_dir(self) -> Path:
        return self.storage_dir / "images"

    @property
    def models_dir(self) -> Path:
        return self.storage_dir / "models"

    @property
    def resolved_image_cache_dir(self) -> Path:
        return self.image_cache_dir or (self.storage_dir / "cache" / "image-features")

    def jwt_secret_value(self) -> str:
        """The signing secret; in development one is generated once and kept in the storage folder."""
        if self.jwt_secret is not None and self.jwt_secret.get_secret_value():
            return self.jwt_secret.get_secret_value()
        path = self.storage_dir / ".jwt_secret"
        if path.exists():
            return path.read_text().strip()
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(48)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
        return value


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
