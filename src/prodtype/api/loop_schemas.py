"""Request and response bodies of the learning loop: models, retrain jobs, the retraining trigger."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelVersionPublic(BaseModel):
    version: int
    status: str = Field(description="champion, challenger, rolled_back, pending or registered")
    aliases: list[str]
    serving: bool = Field(description="Whether this service answers with this version now")
    reason: str | None = Field(description="Why it was or was not promoted")
    eval_weighted_f1: float | None = Field(description="Weighted F1 on the fixed evaluation set")
    created_at: str
    run_id: str | None
    source: str
    metrics: dict[str, float]
    tags: dict[str, str]


class ModelsPublic(BaseModel):
    model: str
    champion: int | None
    serving_version: int | None
    serving_model_version: str | None = Field(description="The version string predictions record")
    follower: dict[str, Any]
    data: list[ModelVersionPublic]
    count: int
    history: list[dict[str, Any]]


class ModelChange(_Request):
    reason: str | None = Field(default=None, max_length=500, description="Kept in the champion history")


class ModelChangePublic(BaseModel):
    champion: ModelVersionPublic
    serving_version: int | None = Field(
        description="Still the old one right after the call: the switch is in the background"
    )
    detail: str


class RetrainRequest(_Request):
    force: bool = Field(default=True, description="Train even if the trigger has not fired")


class RetrainJobPublic(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    status: str = Field(description="running, succeeded or failed")
    step: str | None = None
    requested_by: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None


class RetrainStatusPublic(BaseModel):
    should_retrain: bool
    reasons: list[str]
    new_reviewed_products: int
    min_new_reviews: int
    live_accuracy: float | None
    live_accuracy_reviews: int
    live_accuracy_threshold: float
    live_accuracy_window: int
    live_accuracy_min_reviews: int
    last_training_reviewed_until: str | None
    awaiting_review: int
    rejected_total: int
    running: bool = Field(description="Whether a retrain is running now")
