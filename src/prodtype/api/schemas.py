"""Request and response bodies, one family per resource."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from prodtype.catalog import Catalog
from prodtype.db.tables import AuditEvent, Prediction, Role, Status, User
from prodtype.serving.predictions import PredictionView
from prodtype.serving.reviews import Decision

API_PREFIX = "/api/v1"


class _Request(BaseModel):
    # A misspelt field is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid")


class FieldErrorPublic(BaseModel):
    field: str = Field(description="The field, e.g. 'limit' or 'body.prdtypecode'; 'body' for the whole body")
    message: str
    type: str = Field(description="The kind of problem, e.g. 'missing', 'int_parsing', 'less_than_equal'")


class ErrorPublic(BaseModel):
    detail: str = Field(description="What was wrong, in words")
    errors: list[FieldErrorPublic] | None = Field(
        default=None, description="Per-field details (422 for invalid fields only)"
    )


class Token(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (the scheme's name)
    expires_in: int = Field(description="Seconds until the token expires")


class CandidatePublic(BaseModel):
    prdtypecode: int
    category: str
    probability: float


class PredictionPublic(BaseModel):
    id: int
    designation: str
    description: str
    has_image: bool
    image_url: str | None
    prdtypecode: int = Field(description="The predicted product type")
    category: str
    confidence: float
    top_k: list[CandidatePublic]
    model_version: str
    status: Status
    final_code: int | None = Field(description="The type a reviewer accepted or set; null until reviewed")
    final_category: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None
    created_by: str
    created_at: datetime

    @classmethod
    def from_view(cls, view: PredictionView) -> PredictionPublic:
        image_url = f"{API_PREFIX}/predictions/{view.id}/image" if view.has_image else None
        return cls.model_validate({**asdict(view), "image_url": image_url})

    @classmethod
    def from_row(cls, row: Prediction, catalog: Catalog) -> PredictionPublic:
        return cls.from_view(PredictionView.from_row(row, catalog))


class PredictionsPublic(BaseModel):
    data: list[PredictionPublic]
    count: int = Field(description="How many predictions match the filters in all pages")


class PredictionCorrect(_Request):
    prdtypecode: int = Field(description="One of the codes listed by GET /api/v1/categories")


class ReviewCreate(_Request):
    decision: Decision
    prdtypecode: int | None = Field(
        default=None, description="With 'accept': the corrected type, when the predicted one is wrong"
    )


class CategoryPublic(BaseModel):
    prdtypecode: int
    name: str
    name_fr: str


class CategoriesPublic(BaseModel):
    data: list[CategoryPublic]
    count: int


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded"]
    version: str = Field(description="prodtype's version")
    model_loaded: bool
    model_version: str | None
    database: bool = Field(description="Whether the database answered")


class UserCreate(_Request):
    username: str = Field(min_length=3, max_length=64)
    password: str = Field(min_length=8, max_length=1024)
    role: Role = Role.CUSTOMER


class UserUpdate(_Request):
    role: Role | None = None
    disabled: bool | None = None
    password: str | None = Field(default=None, min_length=8, max_length=1024)


class UserPublic(BaseModel):
    username: str
    role: Role
    disabled: bool
    created_at: datetime

    @classmethod
    def from_row(cls, user: User) -> UserPublic:
        return cls(
            username=user.username, role=Role(user.role), disabled=user.disabled, created_at=user.created_at
        )


class UsersPublic(BaseModel):
    data: list[UserPublic]
    count: int


class AuditEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str | None
    action: str
    entity: str
    entity_id: str
    details: dict[str, Any]

    @classmethod
    def from_row(cls, event: AuditEvent) -> AuditEventPublic:
        return cls.model_validate(event)


class AuditEventsPublic(BaseModel):
    data: list[AuditEventPublic]
    count: int
