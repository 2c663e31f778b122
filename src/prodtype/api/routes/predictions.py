"""Predictions: submit a product, read and list the records, review and correct them.

The handlers are plain ``def``: FastAPI runs them in its threadpool, so inference and database work
never block the event loop.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile

from prodtype.api.deps import AdminUser, CurrentUser, PredictionForm, ReviewerUser
from prodtype.api.explanation_schemas import ExplanationPublic
from prodtype.api.schemas import (
    API_PREFIX,
    ErrorPublic,
    PredictionCorrect,
    PredictionPublic,
    PredictionsPublic,
    ReviewCreate,
)
from prodtype.db.tables import Status
from prodtype.ml.predictor import Predictor
from prodtype.serving import explanations, predictions, reviews
from prodtype.serving.deps import CatalogDep, ModelDep, SessionDep, SettingsDep, ShadowDep, StoreDep
from prodtype.serving.predictions import PredictionFilter, SortKey, Submission
from prodtype.serving.uploads import image_response, read_upload

# Integers reach the database as 32-bit values: a larger one is a 422 here, not an overflow error there.
INT32_MAX = 2_147_483_647
PredictionId = Annotated[int, Path(ge=1, le=INT32_MAX, description="Prediction id")]

router = APIRouter(
    prefix="/predictions",
    tags=["predictions"],
    responses={
        401: {"model": ErrorPublic, "description": "Not authenticated"},
        403: {"model": ErrorPublic, "description": "The role does not allow this"},
        404: {"model": ErrorPublic, "description": "No such prediction (or not yours)"},
        422: {"model": ErrorPublic, "description": "Invalid input"},
    },
)


@router.post(
    "",
    status_code=201,
    responses={
        413: {"model": ErrorPublic, "description": "Image over the upload limit"},
        415: {"model": ErrorPublic, "description": "Not multipart, or the image part is not an image type"},
        503: {"model": ErrorPublic, "description": "No model loaded"},
    },
)
def create_prediction(
    response: Response,
    session: SessionDep,
    user: CurrentUser,
    _form: PredictionForm,
    model: ModelDep,
    store: StoreDep,
    settings: SettingsDep,
    catalog: CatalogDep,
    shadow: ShadowDep,
    designation: Annotated[str, Form(description="The product title")],
    description: Annotated[str, Form(description="The product description (HTML allowed)")] = "",
    image: Annotated[UploadFile | None, File(description="A photo of the product (JPEG, PNG, WebP)")] = None,
) -> PredictionPublic:
    """Predict the product type of a title, optional description and optional photo, and record it."""
    data, content_type = read_upload(image, settings.upload_limit_bytes)
    submission = Submission(designation, description, data, content_type)
    checked = predictions.check_submission(submission, settings.upload_limit_bytes, settings.max_image_pixels)
    row = predictions.create_prediction(session, store, model, checked, user, k=settings.top_k, shadow=shadow)
    response.headers["Location"] = f"{API_PREFIX}{router.prefix}/{row.id}"
    return PredictionPublic.from_row(row, catalog)


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


@router.get("")
def list_predictions(
    session: SessionDep,
    user: CurrentUser,
    catalog: CatalogDep,
    status: Annotated[Status | None, Query(description="pending, accepted or rejected")] = None,
    prdtypecode: Annotated[
        int | None, Query(ge=0, le=INT32_MAX, description="Only this predicted type")
    ] = None,
    confidence_below: Annotated[float | None, Query(gt=0, le=1, description="Confidence < this")] = None,
    created_by: Annotated[str | None, Query(description="Submitter's username")] = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601; UTC if no zone")] = None,
    created_before: Annotated[datetime | None, Query(description="ISO 8601; UTC if no zone")] = None,
    sort: Annotated[SortKey, Query(description="'-' for descending; lowest confidence first by default")] = (
        "confidence"
    ),
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PredictionsPublic:
    """List predictions (customers see their own), filtered, sorted and paginated; the review queue is
    ``?status=pending`` (lowest confidence first)."""
    filters = PredictionFilter(
        status=status,
        predicted_code=prdtypecode,
        confidence_below=confidence_below,
        created_by=created_by,
        created_after=_utc(created_after),
        created_before=_utc(created_before),
    )
    rows, count = predictions.list_predictions(session, user, filters, sort, offset, limit)
    return PredictionsPublic(data=[PredictionPublic.from_row(r, catalog) for r in rows], count=count)


@router.get("/{prediction_id}")
def read_prediction(
    prediction_id: PredictionId, session: SessionDep, user: CurrentUser, catalog: CatalogDep
) -> PredictionPublic:
    """One prediction."""
    return PredictionPublic.from_row(predictions.get_prediction(session, prediction_id, user), catalog)


@router.get(
    "/{prediction_id}/image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}}},
)
def read_prediction_image(
    prediction_id: PredictionId, session: SessionDep, user: CurrentUser, store: StoreDep
) -> Response:
    """The photo submitted with a prediction."""
    data, content_type = predictions.get_image(session, store, prediction_id, user)
    return image_response(data, content_type)


@router.get(
    "/{prediction_id}/explanation",
    responses={503: {"model": ErrorPublic, "description": "No model loaded (or one that cannot explain)"}},
)
def explain_prediction(
    prediction_id: PredictionId,
    session: SessionDep,
    user: CurrentUser,
    store: StoreDep,
    catalog: CatalogDep,
    model: Annotated[Predictor, Depends(explanations.get_served_model)],
) -> ExplanationPublic:
    """Why the model said so: the decisive words of the title and description (exact contributions of the
    TF-IDF head), each branch's share of the fused score, and whether the photo alone points elsewhere.
    Computed now, by the model served now (``same_model`` false, and a note, when another version made
    the prediction)."""
    view = explanations.explain_prediction(session, store, model, prediction_id, user)
    return ExplanationPublic.from_view(view, catalog)


@router.patch("/{prediction_id}")
def correct_prediction(
    prediction_id: PredictionId,
    body: PredictionCorrect,
    session: SessionDep,
    reviewer: ReviewerUser,
    catalog: CatalogDep,
) -> PredictionPublic:
    """Set the product's true type (reviewers): the prediction becomes accepted with that type."""
    row = reviews.correct_prediction(session, catalog, prediction_id, reviewer, body.prdtypecode)
    return PredictionPublic.from_row(row, catalog)


@router.post(
    "/{prediction_id}/review", responses={409: {"model": ErrorPublic, "description": "Already reviewed"}}
)
def review_prediction(
    prediction_id: PredictionId,
    body: ReviewCreate,
    session: SessionDep,
    reviewer: ReviewerUser,
    catalog: CatalogDep,
) -> PredictionPublic:
    """Accept a pending prediction (optionally with the corrected type) or reject it (reviewers)."""
    row = reviews.review_prediction(
        session, catalog, prediction_id, reviewer, body.decision, body.prdtypecode
    )
    return PredictionPublic.from_row(row, catalog)


@router.delete("/{prediction_id}", status_code=204, response_class=Response)
def delete_prediction(
    prediction_id: PredictionId, session: SessionDep, admin: AdminUser, store: StoreDep
) -> Response:
    """Delete a prediction (admins); its image is removed unless another prediction uses it."""
    predictions.delete_prediction(session, store, prediction_id, admin)
    return Response(status_code=204)
