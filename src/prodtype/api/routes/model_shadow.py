"""Shadow evaluation of a registered version on live traffic (admins only, like the rest of /models)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi import Path as PathParam
from starlette.concurrency import run_in_threadpool

from prodtype.api.deps import AdminUser
from prodtype.api.loop import registry_of
from prodtype.api.loop_schemas import ModelChange
from prodtype.api.schemas import ErrorPublic
from prodtype.config import Settings
from prodtype.loop.champion import load_checked
from prodtype.loop.shadow import ShadowLedger, ShadowStatus, put_in_shadow, shadow_status

router = APIRouter(prefix="/models", tags=["models"])

CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "The version is the champion"}
}


def _status(request: Request) -> ShadowStatus:
    settings: Settings = request.app.state.settings
    return shadow_status(
        registry_of(request).model_name,
        ShadowLedger(request.app.state.sessions),
        request.app.state.sessions,
        getattr(request.app.state, "shadow", None),
        getattr(request.app.state, "shadow_follower", None),
        settings.loop,
    )


def _follow(request: Request, version: int | None = None) -> None:
    """This process follows the change at once (so the answer shows it); the others at their next poll."""
    follower = getattr(request.app.state, "shadow_follower", None)
    if follower is not None:
        follower.follow_now(retry=version)


@router.get("/shadow")
def read_shadow(request: Request, _admin: AdminUser) -> ShadowStatus:
    """The version in shadow and both models' live accuracy on the same reviewed products (n, 95 % Wilson
    intervals, the paired difference), with this process's shadow queue (scored, dropped, failed)."""
    return _status(request)


@router.put("/{version}/shadow", responses=CONFLICT)
async def start_shadow(
    request: Request,
    admin: AdminUser,
    version: Annotated[int, PathParam(ge=1)],
    body: Annotated[ModelChange | None, Body()] = None,
) -> ShadowStatus:
    """Put a registered version in shadow (replacing any other): each new prediction is also scored by it,
    off the request path, and its answer recorded beside the champion's. Its bundle is checked first."""
    codes = list(request.app.state.catalog.codes)
    reason = (body.reason if body else None) or f"put in shadow by {admin.username}"
    await run_in_threadpool(
        put_in_shadow,
        registry_of(request),
        ShadowLedger(request.app.state.sessions),
        version,
        actor=admin.username,
        reason=reason,
        check=lambda path: load_checked(Path(path), codes),
    )
    await run_in_threadpool(_follow, request, version)
    return _status(request)


@router.delete("/shadow")
def stop_shadow(
    request: Request, admin: AdminUser, body: Annotated[ModelChange | None, Body()] = None
) -> ShadowStatus:
    """Stop shadow scoring (its recorded answers and figures stay)."""
    reason = (body.reason if body else None) or f"stopped by {admin.username}"
    ShadowLedger(request.app.state.sessions).stop(
        registry_of(request).model_name, actor=admin.username, reason=reason
    )
    _follow(request)
    return _status(request)
