"""Request and response bodies of the learning loop: models, retrain jobs, the retraining trigger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from prodtype.loop.model_versions import ModelsListing, ModelVersionView
from prodtype.loop.retrain_jobs import JobRecord
from prodtype.loop.trigger import TriggerStatus


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelVersionPublic(ModelVersionView):
    """A registered version (built from :class:`prodtype.loop.model_versions.ModelVersionView`)."""


class ModelsPublic(ModelsListing):
    data: Sequence[ModelVersionPublic]
    serving_model_version: str | None = Field(description="The version string predictions record")
    follower: dict[str, Any]


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


class RetrainJobPublic(JobRecord):
    """A retrain job (built from :class:`prodtype.loop.retrain_jobs.JobRecord`)."""


class RetrainStatusPublic(TriggerStatus):
    """The trigger's figures (:class:`prodtype.loop.trigger.TriggerStatus`) and whether a retrain runs."""

    running: bool = Field(description="Whether a retrain is running now")
