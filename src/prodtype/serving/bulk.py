"""Many products in one call: each checked, predicted and recorded like a single prediction.

The checks are the single prediction's (:func:`prodtype.serving.predictions.check_submission`), applied to
every item; an item that fails them, whose photo cannot be decoded, or whose record cannot be written gets
its own error while the others go on. The model runs once over all the good items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from prodtype.db.tables import Prediction, User
from prodtype.ml.image import ImageError
from prodtype.ml.predictor import Prediction as ModelOutput
from prodtype.ml.predictor import Predictor, PreparedProduct, ProductInput
from prodtype.serving.errors import InvalidInputError, ServiceError
from prodtype.serving.predictions import (
    CheckedSubmission,
    Submission,
    check_submission,
    queue_for_shadow,
    record_prediction,
)
from prodtype.serving.shadow import ShadowScorer
from prodtype.serving.storage import ImageStore


@dataclass(frozen=True)
class BulkOutcome:
    """What became of item ``index``: its recorded prediction, or the error that stopped it."""

    index: int
    prediction: Prediction | None = None
    error: ServiceError | None = None


@dataclass(frozen=True)
class BulkLimits:
    upload_limit_bytes: int
    max_image_pixels: int
    top_k: int = 5


def create_predictions(
    session: Session,
    store: ImageStore,
    model: Predictor,
    submissions: Sequence[Submission | ServiceError],
    user: User,
    limits: BulkLimits,
    shadow: ShadowScorer | None = None,
) -> list[BulkOutcome]:
    """One outcome per item, in order. An item given as a :class:`ServiceError` (the caller could not even
    read it, e.g. bad base64) is reported as it is."""
    outcomes: dict[int, BulkOutcome] = {}
    ready: list[tuple[int, CheckedSubmission, PreparedProduct | None]] = []
    prepare = getattr(model, "prepare", None)
    for index, item in enumerate(submissions):
        try:
            if isinstance(item, ServiceError):
                raise item
            checked = check_submission(item, limits.upload_limit_bytes, limits.max_image_pixels)
            product = ProductInput(checked.designation, checked.description, checked.image)
            ready.append((index, checked, prepare(product) if prepare is not None else None))
        except (ImageError, ValueError) as exc:
            if isinstance(exc, ServiceError):
                outcomes[index] = BulkOutcome(index, error=exc)
            else:
                outcomes[index] = BulkOutcome(index, error=InvalidInputError(f"item {index}: {exc}"))
        except ServiceError as exc:
            outcomes[index] = BulkOutcome(index, error=exc)
    results = _predict(model, ready, limits.top_k)
    for (index, checked, _), result in zip(ready, results, strict=True):
        try:
            row = record_prediction(session, store, checked, result, model.version, user)
        except ServiceError as exc:
            session.rollback()
            outcomes[index] = BulkOutcome(index, error=exc)
        except SQLAlchemyError as exc:
            session.rollback()
            orig = getattr(exc, "orig", None)
            reason = str(orig) if orig is not None else type(exc).__name__
            outcomes[index] = BulkOutcome(
                index, error=InvalidInputError(f"item {index} could not be stored: {reason.splitlines()[0]}")
            )
        else:
            outcomes[index] = BulkOutcome(index, prediction=row)
            queue_for_shadow(shadow, row.id, checked)
    return [outcomes[i] for i in range(len(submissions))]


def _predict(
    model: Predictor, ready: list[tuple[int, CheckedSubmission, PreparedProduct | None]], k: int
) -> list[ModelOutput]:
    if not ready:
        return []
    run = getattr(model, "predict_prepared", None)
    if run is not None and all(prepared is not None for _, _, prepared in ready):
        return list(run([prepared for _, _, prepared in ready], k))
    return model.predict_many([ProductInput(c.designation, c.description, c.image) for _, c, _ in ready], k)
