"""Registered model versions: list, promote, roll back (admins only)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from fastapi import Path as PathParam

from prodtype.api.deps import AdminUser
from prodtype.api.loop import follower_of, registry_of
from prodtype.api.loop_schemas import ModelChange, ModelChangePublic, ModelsPublic, ModelVersionPublic
from prodtype.api.schemas import ErrorPublic
from prodtype.loop import model_versions
from prodtype.loop.champion import load_checked
from prodtype.loop.ledger import PromotionLedger

router = APIRouter(prefix="/models", tags=["models"])


def _checker(request: Request) -> model_versions.Checker:
    codes = list(request.app.state.catalog.codes)
    return lambda path: load_checked(Path(path), codes)


def _serving(request: Request) -> tuple[int | None, dict[str, Any]]:
    follower = follower_of(request)
    return (follower.serving_version, follower.status()) if follower else (None, {"following": False})


@router.get("")
def list_models(request: Request, _admin: AdminUser) -> ModelsPublic:
    """Every registered version, newest first, with the champion, the served version and the history."""
    serving, follower = _serving(request)
    listing = model_versions.list_models(registry_of(request), serving)
    return ModelsPublic(
        **listing.model_dump(),
        serving_model_version=request.app.state.model_holder.version,
        follower=follower,
    )


def _ledger(request: Request) -> PromotionLedger:
    return PromotionLedger(request.app.state.sessions)


def _changed(request: Request, info: model_versions.ModelVersionView) -> ModelChangePublic:
    # The ledger has recorded the change (and its audit event); the follower switches when it next looks.
    follower = follower_of(request)
    if follower is not None:
        follower.allow_retry(info.version)
        follower.wake()
    serving, _ = _serving(request)
    return ModelChangePublic(
        champion=ModelVersionPublic.model_validate(info.model_dump()),
        serving_version=serving,
        detail=f"version {info.version} is the champion; the service switches to it in the background",
    )


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "Nothing to roll back to, or already the champion"}
}


@router.post("/rollback", responses=CONFLICT)
def rollback(
    request: Request,
    admin: AdminUser,
    body: Annotated[ModelChange | None, Body()] = None,
) -> ModelChangePublic:
    """Give the champion alias back to the previous champion (its bundle is checked first)."""
    reason = body.reason if body else None
    info = model_versions.rollback(
        registry_of(request),
        actor=admin.username,
        reason=reason,
        check=_checker(request),
        ledger=_ledger(request),
    )
    return _changed(request, info)


@router.post("/{version}/promote", responses=CONFLICT)
def promote(
    request: Request,
    admin: AdminUser,
    version: Annotated[int, PathParam(ge=1)],
    body: Annotated[ModelChange | None, Body()] = None,
) -> ModelChangePublic:
    """Make a version the champion; a bundle that fails its checks is refused (422) and nothing changes."""
    reason = body.reason if body else None
    info = model_versions.promote(
        registry_of(request),
        version,
        actor=admin.username,
        reason=reason,
        check=_checker(request),
        ledger=_ledger(request),
    )
    return _changed(request, info)
