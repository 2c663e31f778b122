"""Settings in one place: environment variables with the ``PRODTYPE_`` prefix, or a ``.env`` file.

One object, built once (:func:`get_settings`) and passed down; the learning loop's settings are nested in it
(``settings.loop``). Nothing happens at import time. Secrets are required outside development.
"""

from __future__ import annotations

import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRETS = {"", "changeme", "change-me", "secret", "changethis", "password"}


def cache_dirs(root: Path) -> tuple[Path, Path]:
    """The image-feature and text-embedding caches under one cache folder (the one place this is laid out:
    ``prodtype train --cache-dir``, ``prodtype run`` and the loop's retrain all use it)."""
    return root / "image-features", root / "text-embeddings"


class LoopSettings(BaseSettings):
    """The learning loop's settings (registry, evaluation set, promotion rule, retraining trigger), on the
    same ``PRODTYPE_`` variables; reached as ``Settings.loop``."""

    model_config = SettingsConfigDict(env_prefix="PRODTYPE_", env_file=".env", extra="ignore")

    # Registry: embedded (SQLite file + artifact folder under the storage folder) unless a server is named.
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking/registry URI; default sqlite:///<storage>/mlflow/mlflow.db"
    )
    registered_model_name: str = Field(default="prodtype", min_length=1)

    # The fixed evaluation set: given files, or a stratified split of the base data made once.
    eval_x_path: Path | None = None
    eval_y_path: Path | None = None
    eval_images_dir: Path | None = None
    eval_fraction: float = Field(default=0.2, gt=0.0, lt=0.9)
    eval_seed: int = 20240607

    # Promotion rule.
    promotion_min_f1_gain: float = Field(
        default=0.0, ge=0.0, le=1.0, description="candidate weighted F1 must be >= champion's + this"
    )
    promotion_max_class_f1_drop: float = Field(
        default=0.10, ge=0.0, le=1.0, description="no class (with enough support) may lose more F1 than this"
    )
    # Per-class F1 over a handful of products moves by 0.1 with one error: only classes with enough
    # evaluation products are held to the limit (all of them on the full data, few on the sample).
    promotion_min_class_support: int = Field(
        default=50, ge=1, description="classes with fewer evaluation products are not held to the drop limit"
    )

    # Live comparison (shadow evaluation, loop/shadow.py): the candidate must not be worse than the
    # champion on the reviewed products both answered, as well as on the evaluation set.
    promotion_require_live: bool = Field(
        default=False, description="also require the candidate not to be worse on live reviewed products"
    )
    promotion_live_min_reviews: int = Field(
        default=30,
        ge=1,
        description="reviewed products with a shadow answer needed before it can be promoted",
    )
    promotion_live_max_drop: float = Field(
        default=0.0, ge=0.0, le=1.0, description="live accuracy may be at most this below the champion's"
    )
    shadow_challenger: bool = Field(
        default=False, description="the retrain job puts a candidate that is not promoted in shadow"
    )
    shadow_queue_size: int = Field(
        default=256, ge=1, le=100_000, description="products waiting for the shadow model; more are dropped"
    )

    # Retraining trigger.
    retrain_min_new_reviews: int = Field(default=200, ge=1)
    live_accuracy_threshold: float = Field(default=0.7, ge=0.0, le=1.0)
    live_accuracy_window: int = Field(default=200, ge=1)
    live_accuracy_min_reviews: int = Field(default=50, ge=1)

    # Training: a JSON file of prodtype.ml.train.TrainConfig fields (default: TrainConfig's defaults).
    train_config_file: Path | None = None

    # Serving follows the champion alias.
    follow_champion: bool = True
    champion_poll_seconds: float = Field(default=10.0, gt=0)

    # The alert figures at /metrics (loop/alert_metrics.py).
    metrics_refresh_seconds: float = Field(
        default=15.0, ge=0.0, description="the database figures of /metrics are recomputed at most this often"
    )
    class_mix_window_hours: float = Field(
        default=24.0, gt=0.0, description="predictions whose class mix is compared with the training mix"
    )

    @model_validator(mode="after")
    def _eval_files_together(self) -> LoopSettings:
        if (self.eval_x_path is None) != (self.eval_y_path is None):
            raise ValueError(
                "PRODTYPE_EVAL_X_PATH and PRODTYPE_EVAL_Y_PATH must be set together (or neither)"
            )
        return self

    def train_config(self) -> dict[str, Any] | None:
        if self.train_config_file is None:
            return None
        try:
            data = json.loads(self.train_config_file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"PRODTYPE_TRAIN_CONFIG_FILE {self.train_config_file}: cannot be read ({exc})"
            ) from None
        if not isinstance(data, dict):
            raise ValueError(f"PRODTYPE_TRAIN_CONFIG_FILE {self.train_config_file}: expected a JSON object")
        return data

    def tracking_uri(self, settings: Settings) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        return f"sqlite:///{settings.mlflow_dir.resolve() / 'mlflow.db'}"

    def embedded(self) -> bool:
        return not self.mlflow_tracking_uri


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
    # Object storage (prodtype.serving.object_store): photos, retrain run folders and bulk-job files under
    # one S3 prefix, shared by every replica and worker; unset, they stay in the storage folder.
    image_store: str | None = Field(
        default=None,
        description="s3://bucket/prefix: keep photos, run folders and bulk files in an S3-compatible store",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3 endpoint (MinIO, Ceph...); default AWS_ENDPOINT_URL or AWS itself"
    )
    s3_region: str | None = Field(default=None, description="Region; default AWS_REGION/AWS_DEFAULT_REGION")
    s3_access_key_id: str | None = Field(
        default=None, description="Access key; default the AWS chain (AWS_ACCESS_KEY_ID, profile, role)"
    )
    s3_secret_access_key: SecretStr | None = None
    loop: LoopSettings = Field(default_factory=LoopSettings, description="The learning loop's settings")

    jwt_secret: SecretStr | None = None
    admin_password: SecretStr | None = None
    metrics_token: SecretStr | None = Field(
        default=None,
        description="When set, GET /metrics answers only requests with 'Authorization: Bearer <this token>'",
    )
    metrics_token_file: Path | None = Field(
        default=None,
        description="A file holding PRODTYPE_METRICS_TOKEN (a Docker secret, as Prometheus reads it)",
    )
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
    # Bulk jobs (POST /api/v1/jobs/bulk, the /bulk page): a CSV in the challenge's X format and a zip of
    # photos, classified in the background (see prodtype.serving.bulk_files for what each limit guards).
    bulk_job_max_csv_bytes: int = Field(default=20 * 1024 * 1024, gt=0, description="Size of a job's CSV")
    bulk_job_max_rows: int = Field(default=10_000, ge=1, description="Products (CSV rows) per job")
    bulk_job_max_zip_bytes: int = Field(default=200 * 1024 * 1024, gt=0, description="Size of a job's zip")
    bulk_job_max_unzipped_bytes: int = Field(
        default=500 * 1024 * 1024, gt=0, description="The zip's photos once uncompressed, in all"
    )
    bulk_job_max_zip_entries: int = Field(default=20_000, ge=1, description="Files in a job's zip")
    bulk_job_max_zip_ratio: float = Field(
        default=50.0, gt=1, description="Uncompressed over compressed size of one zip entry, at most"
    )
    bulk_job_keep_days: int = Field(
        default=30,
        ge=0,
        description="Days a finished bulk job (its rows and result file) is kept; 0 keeps them for ever",
    )
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

    @field_validator("image_store")
    @classmethod
    def _image_store(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        value = value.strip()
        bucket = value.removeprefix("s3://").split("/", 1)[0]
        if not value.startswith("s3://") or not bucket:
            raise ValueError(
                f"PRODTYPE_IMAGE_STORE {value!r} is not an object store URL; expected s3://bucket or "
                "s3://bucket/prefix (leave it unset to keep photos in the storage folder)"
            )
        return value

    @model_validator(mode="after")
    def _s3_keys_together(self) -> Settings:
        if (self.s3_access_key_id is None) != (self.s3_secret_access_key is None):
            raise ValueError(
                "PRODTYPE_S3_ACCESS_KEY_ID and PRODTYPE_S3_SECRET_ACCESS_KEY must be set together (or "
                "neither, to use the AWS credential chain: AWS_ACCESS_KEY_ID, a profile, a role)"
            )
        return self

    @model_validator(mode="after")
    def _metrics_token(self) -> Settings:
        source = "PRODTYPE_METRICS_TOKEN"
        if self.metrics_token_file is not None:
            if self.metrics_token is not None:
                raise ValueError("set PRODTYPE_METRICS_TOKEN or PRODTYPE_METRICS_TOKEN_FILE, not both")
            source = f"PRODTYPE_METRICS_TOKEN_FILE {self.metrics_token_file}"
            try:
                text = self.metrics_token_file.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"{source}: cannot be read ({exc})") from exc
            self.metrics_token = SecretStr(text)
        token = self.metrics_token.get_secret_value() if self.metrics_token is not None else None
        if (
            token == "" and self.metrics_token_file is None
        ):  # an empty variable (a blank line in .env): no token
            self.metrics_token = token = None
        if token is not None and (len(token) < 16 or any(c.isspace() or not c.isprintable() for c in token)):
            raise ValueError(
                f"{source}: expected one token of at least 16 printable characters without spaces, as "
                "`python -c 'import secrets; print(secrets.token_urlsafe(32))'` prints"
            )
        return self

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
    def bulk_job_max_request_bytes(self) -> int:
        """A bulk job's request body: its CSV, its zip and room for the multipart framing."""
        return self.bulk_job_max_csv_bytes + self.bulk_job_max_zip_bytes + 1024 * 1024

    @property
    def bulk_jobs_dir(self) -> Path:
        """Where the photos of bulk jobs wait until their job has run."""
        return self.storage_dir / "bulk"

    @property
    def images_dir(self) -> Path:
        return self.storage_dir / "images"

    @property
    def models_dir(self) -> Path:
        return self.storage_dir / "models"

    @property
    def resolved_image_cache_dir(self) -> Path:
        return self.image_cache_dir or cache_dirs(self.storage_dir / "cache")[0]

    @property
    def text_cache_dir(self) -> Path:
        """Beside the image features' cache, as ``prodtype train --cache-dir`` lays them out."""
        return cache_dirs(self.resolved_image_cache_dir.parent)[1]

    @property
    def mlflow_dir(self) -> Path:
        """The embedded registry's folder (SQLite file and artifacts)."""
        return self.storage_dir / "mlflow"

    @property
    def loop_dir(self) -> Path:
        """Working folder of the loop: evaluation split, retrain jobs and runs (never under models/)."""
        return self.storage_dir / "loop"

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
