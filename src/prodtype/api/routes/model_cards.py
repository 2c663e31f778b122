"""Model cards of registered versions (admins only, like the rest of /models)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from prodtype.api.deps import AdminUser
from prodtype.api.loop import registry_of
from prodtype.loop.model_card import build_card
from prodtype.loop.registry import UnknownVersionError
from prodtype.serving.errors import NotFoundError

router = APIRouter(prefix="/models", tags=["models"])

MARKDOWN = "text/markdown; charset=utf-8"
CARD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The model card (Markdown; JSON facts with format=json)",
        "content": {"text/markdown": {"schema": {"type": "string"}}, "application/json": {}},
    }
}


@router.get("/{version}/card", response_class=Response, responses=CARD_RESPONSES)
async def model_card(
    request: Request,
    _admin: AdminUser,
    version: Annotated[int, PathParam(ge=1)],
    format: Annotated[Literal["markdown", "json"], Query()] = "markdown",
) -> Response:
    """A registered version's model card: data, evaluation per class, calibration, promotion, limits."""
    registry = registry_of(request)
    try:
        card = await run_in_threadpool(build_card, registry, version, request.app.state.catalog)
    except UnknownVersionError as exc:
        raise NotFoundError(str(exc)) from None
    if format == "json":
        return JSONResponse(card.facts)
    return Response(card.markdown, media_type=MARKDOWN)
