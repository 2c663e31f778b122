"""Settings of the learning loop (registry, evaluation set, promotion rule, retraining trigger).

Kept beside :mod:`prodtype.config` (same ``PRODTYPE_`` prefix and ``.env`` file) so that the service's
settings and the loop's can change independently; nothing happens at import time.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from prodtype.config import Settings


class LoopSettings(BaseSettings):
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
        return f"sqlite:///{mlflow_dir(settings).resolve() / 'mlflow.db'}"

    def embedded(self) -> bool:
        return not self.mlflow_tracking_uri


def mlflow_dir(settings: Settings) -> Path:
    return settings.storage_dir / "mlflow"


def loop_dir(settings: Settings) -> Path:
    """Working folder of the loop: evaluation split, retrain jobs and runs (never under models/)."""
    return settings.storage_dir / "loop"


@lru_cache(maxsize=1)
def get_loop_settings() -> LoopSettings:
    return LoopSettings()
