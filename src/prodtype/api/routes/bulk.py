"""Bulk predictions: up to ``PRODTYPE_BULK_MAX_ITEMS`` products in one request, answered item by item."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from prodtype.api.deps import CurrentUser
from prodtype.api.errors import status_for
from prodtype.api.schemas import ErrorPublic, PredictionPublic, _Request
from prodtype.config import Settings
from prodtype.serving.bulk import BulkLimits, create_predictions
from prodtype.serving.deps import CatalogDep, ModelDep, SessionDep, SettingsDep, ShadowDep, StoreDep
from prodtype.serving.errors import (
    InvalidInputError,
    PayloadTooLargeError,
    ServiceError,
    UnsupportedMediaTypeError,
)
from prodtype.serving.predictions import Submission

router = APIRouter(prefix="/predictions", tags=["predictions"])


class BulkItemCreate(_Request):
    designation: str = Field(description="The product title")
    description: str = Field(default="", description="The product description (HTML allowed)")
    image_base64: str | None = Field(default=None, description="A photo (JPEG, PNG, WebP), base64-encoded")


class BulkFormItem(_Request):
    designation: str
    description: str = ""
    image: str | None = Field(default=None, description="Name of the multipart part holding the photo")


class BulkItemPublic(BaseModel):
    index: int = Field(description="Position of the item in the request")
    status: int = Field(description="201 when recorded; else the status a single prediction would get")
    prediction: PredictionPublic | None = None
    detail: str | None = Field(default=None, description="What was wrong with this item")


class BulkPredictionsPublic(BaseModel):
    data: list[BulkItemPublic]
    created: int
    failed: int


_JSON_ITEMS: TypeAdapter[list[BulkItemCreate]] = TypeAdapter(list[BulkItemCreate])
_FORM_ITEMS: TypeAdapter[list[BulkFormItem]] = TypeAdapter(list[BulkFormItem])

REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {"schema": {"type": "array", "items": BulkItemCreate.model_json_schema()}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "items": {
                        "type": "string",
                        "description": "JSON array of {designation, description, image}: image names the "
                        "part that holds the item's photo",
                    }
                },
                "additionalProperties": {"type": "string", "format": "binary"},
            }
        },
    },
}


def _check_count(count: int, settings: Settings) -> None:
    if count == 0:
        raise InvalidInputError("the request holds no products; send a JSON array of products")
    if count > settings.bulk_max_items:
        raise InvalidInputError(
            f"the request holds {count} products; at most {settings.bulk_max_items} are accepted per request"
        )


def _parse(adapter: TypeAdapter[Any], raw: bytes | str, where: tuple[str, ...]) -> Any:
    try:
        return adapter.validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": (*where, *e.get("loc", ()))} for e in exc.errors(include_url=False)]
        ) from None


def _decode(index: int, item: BulkItemCreate, settings: Settings) -> Submission | ServiceError:
    if item.image_base64 is None:
        return Submission(item.designation, item.description)
    if len(item.image_base64) > (settings.upload_limit_bytes + 2) // 3 * 4 + 4:
        return PayloadTooLargeError(
            f"item {index}: the image is over the upload limit of {settings.upload_limit_bytes} bytes"
        )
    try:
        data = base64.b64decode(item.image_base64, validate=True)
    except (binascii.Error, ValueError):
        return InvalidInputError(f"item {index}: image_base64 is not valid base64")
    return Submission(item.designation, item.description, data, None)


async def _read_form(request: Request, settings: Settings) -> list[Submission | ServiceError]:
    limit = settings.bulk_max_items
    async with request.form(
        max_files=limit, max_fields=limit + 1, max_part_size=settings.upload_limit_bytes + 1
    ) as form:
        raw = form.get("items")
        if not isinstance(raw, str):
            raise InvalidInputError("items is required: a JSON array of {designation, description, image}")
        items: list[BulkFormItem] = _parse(_FORM_ITEMS, raw, ("body", "items"))
        _check_count(len(items), settings)
        out: list[Submission | ServiceError] = []
        for index, item in enumerate(items):
            if item.image is None:
                out.append(Submission(item.designation, item.description))
                continue
            part = form.get(item.image)
            if not isinstance(part, UploadFile):
                out.append(InvalidInputError(f"item {index}: there is no file part named {item.image!r}"))
                continue
            data = await part.read(settings.upload_limit_bytes + 1)
            out.append(Submission(item.designation, item.description, data, part.content_type))
        return out


@router.post(
    "/batch",
    responses={
        413: {"model": ErrorPublic, "description": "Request body over the bulk limit"},
        415: {"model": ErrorPublic, "description": "Neither JSON nor multipart"},
        422: {"model": ErrorPublic, "description": "Not a list of products, or too many"},
        503: {"model": ErrorPublic, "description": "No model loaded"},
    },
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def create_predictions_bulk(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    model: ModelDep,
    store: StoreDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    shadow: ShadowDep,
) -> BulkPredictionsPublic:
    """Predict and record up to ``PRODTYPE_BULK_MAX_ITEMS`` products (JSON array of {designation,
    description, image_base64}, or multipart with an ``items`` JSON part naming each photo's part). Every
    item is checked like a single prediction; a bad one is answered with its index, status and message
    while the others are recorded."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        parsed: list[BulkItemCreate] = _parse(_JSON_ITEMS, await request.body(), ("body",))
        _check_count(len(parsed), settings)
        items = [_decode(i, item, settings) for i, item in enumerate(parsed)]
    elif content_type == "multipart/form-data":
        items = await _read_form(request, settings)
    else:
        raise UnsupportedMediaTypeError(
            "this endpoint takes a JSON array of products (application/json) or multipart/form-data with an "
            f"items part; the request's content type is {content_type or 'none'!r}"
        )
    limits = BulkLimits(settings.upload_limit_bytes, settings.max_image_pixels, settings.top_k)
    outcomes = await run_in_threadpool(create_predictions, session, store, model, items, user, limits, shadow)
    data = [
        BulkItemPublic(index=o.index, status=201, prediction=PredictionPublic.from_row(o.prediction, catalog))
        if o.prediction is not None
        else BulkItemPublic(index=o.index, status=status_for(o.error), detail=str(o.error))  # type: ignore[arg-type]
        for o in outcomes
    ]
    created = sum(1 for o in outcomes if o.prediction is not None)
    return BulkPredictionsPublic(data=data, created=created, failed=len(outcomes) - created)
