"""Liveness and readiness, without authentication."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

import prodtype
from prodtype.api.schemas import HealthPublic
from prodtype.db.engine import database_reachable
from prodtype.serving.model_holder import ModelHolder

router = APIRouter(prefix="/health", tags=["health"])


@router.get("", responses={503: {"model": HealthPublic}})
def health(request: Request, response: Response) -> HealthPublic:
    """Whether the service can answer: the model version and whether the database is reachable."""
    holder: ModelHolder = request.app.state.model_holder
    db_ok = database_reachable(request.app.state.engine)
    ok = db_ok and holder.loaded
    if not ok:
        response.status_code = 503
    return HealthPublic(
        status="ok" if ok else "degraded",
        version=prodtype.__version__,
        model_loaded=holder.loaded,
        model_version=holder.version,
        database=db_ok,
    )
