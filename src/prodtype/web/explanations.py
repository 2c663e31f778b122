"""Why the model said so, on the pages: the title and description with the decisive words marked, a bar per
branch, and "the photo disagreed". The prediction page includes it; the review queue loads each product's
explanation from ``/predictions/{id}/explanation`` (an HTML fragment) after the page is shown, so that the
queue appears at once. Every piece of the seller's text goes through the template's escaping."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse
from sqlalchemy.orm import Session

from prodtype.catalog import Catalog
from prodtype.db.tables import User
from prodtype.ml.explain import highlight
from prodtype.serving.deps import CatalogDep, SessionDep, StoreDep
from prodtype.serving.errors import NotFoundError, ServiceError
from prodtype.serving.explanations import explain_prediction
from prodtype.serving.storage import ImageStore
from prodtype.serving.uploads import ascii_number
from prodtype.web.deps import PageUser
from prodtype.web.render import render

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)
MAX_ID = 2**31 - 1
BRANCH_LABELS = {"text": "Words", "embedding": "Meaning", "image": "Photo"}


def explanation_context(
    request: Request, session: Session, store: ImageStore, catalog: Catalog, prediction_id: int, user: User
) -> dict[str, Any]:
    """What the explanation template needs: ``x`` (the explanation) or ``why_not`` (why there is none)."""
    try:
        view = explain_prediction(session, store, request.app.state.model_holder.get(), prediction_id, user)
    except NotFoundError:
        raise
    except ServiceError as exc:  # no model loaded, or one that cannot explain: the page still shows
        return {"x": None, "why_not": str(exc), "name": catalog.name}
    e = view.explanation
    strongest = max((abs(b.contribution) for b in e.branches), default=0.0) or 1.0
    branches = [
        {
            "label": BRANCH_LABELS.get(b.name, b.name),
            "name": b.name,
            "contribution": b.contribution,
            "share": abs(b.contribution) / strongest,
            "points_to": e.classes[b.own_choice],
        }
        for b in e.branches
        if b.name != "image" or e.has_image
    ]
    return {
        "x": view,
        "e": e,
        "pieces": highlight(e),
        "branches": branches,
        "why_not": None,
        "name": catalog.name,
    }


@router.get("/predictions/{prediction_id}/explanation")
def explanation_fragment(
    prediction_id: str,
    request: Request,
    session: SessionDep,
    store: StoreDep,
    catalog: CatalogDep,
    user: PageUser,
) -> Response:
    """The explanation of one prediction as an HTML fragment (for the review queue)."""
    number = ascii_number(prediction_id, 10)
    try:
        if number is None or not 0 < number <= MAX_ID:
            raise NotFoundError(f"no prediction with id {prediction_id[:20]}")
        context = explanation_context(request, session, store, catalog, number, user)
    except NotFoundError as exc:
        return render(request, "explanation_error.html", user, 404, error=str(exc))
    return render(request, "explanation.html", user, **context)
