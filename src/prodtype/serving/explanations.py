"""Explaining a stored prediction, on demand: which words and which branches made the model say so.

The explanation is computed when someone asks for it (the API's ``/explanation``, the prediction and review
pages), never while predicting. It is the explanation of the model being served now: when the prediction
was made by another version (one since replaced), the served model explains the same product and the
answer says so (``same_model`` false and a note), since the old version is no longer loaded; its predicted
type may then differ from the stored one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request
from sqlalchemy.orm import Session

from prodtype.db.tables import User
from prodtype.ml.explain import Explanation, explain
from prodtype.ml.image import ImageError
from prodtype.ml.predictor import Predictor
from prodtype.serving.errors import InvalidInputError, ModelUnavailableError
from prodtype.serving.predictions import get_prediction
from prodtype.serving.storage import ImageStore

T = TypeVar("T")


@dataclass(frozen=True)
class ExplanationView:
    prediction_id: int
    prediction_model_version: str  # the model that made the stored prediction
    model_version: str  # the model that explains it (the one served now)
    explanation: Explanation
    notes: tuple[str, ...] = ()

    @property
    def same_model(self) -> bool:
        return self.model_version == self.prediction_model_version


async def get_served_model(request: Request) -> Predictor:
    """The model being served, as loaded (not wrapped for batching: an explanation is not a prediction);
    503 when none is loaded."""
    predictor: Predictor = request.app.state.model_holder.get()
    return predictor


def explain_prediction(
    session: Session, store: ImageStore, model: Predictor, prediction_id: int, viewer: User
) -> ExplanationView:
    """The explanation of a prediction the viewer may read (404 otherwise, as for reading it)."""
    row = get_prediction(session, prediction_id, viewer)
    from prodtype.ml.bundle import ModelBundle  # heavy (onnxruntime), and loaded already when serving

    bundle = _bundle_of(model, ModelBundle)
    if bundle is None:
        raise ModelUnavailableError(
            f"the served model ({type(model).__name__}) cannot explain its predictions; serve a model bundle"
        )
    notes: list[str] = []
    if row.model_version != model.version:
        notes.append(
            f"This prediction was made by model {row.model_version}, which is no longer served; this is "
            f"how the current model {model.version} reads the same product, and its answer may differ."
        )
    image = None
    if row.image_sha256 is not None:
        image = store.get(row.image_sha256)
        if image is None:
            notes.append("The photo is missing from the image store; explained from the text alone.")
    try:
        try:
            explanation = explain(bundle, row.designation, row.description, image)
        except ImageError as exc:
            notes.append(f"The photo cannot be read ({exc}); explained from the text alone.")
            explanation = explain(bundle, row.designation, row.description, None)
    except ValueError as exc:  # a title empty once cleaned: refused when predicting, so never expected
        raise InvalidInputError(f"prediction {prediction_id} cannot be explained: {exc}") from exc
    return ExplanationView(row.id, row.model_version, model.version, explanation, tuple(notes))


def _bundle_of(model: object, kind: type[T]) -> T | None:
    """The model bundle a served predictor wraps (the registry's version, the batching and metrics
    wrappers hold it as ``inner`` / ``_inner``), or None when there is none."""
    for _ in range(10):  # wrappers are a few deep
        if isinstance(model, kind):
            return model
        attributes = vars(model) if hasattr(model, "__dict__") else {}  # not the wrappers' delegation
        model = attributes.get("inner", attributes.get("_inner"))
        if model is None:
            return None
    return None
