"""Retraining: start a background job, follow it, and see the trigger's figures (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request

from prodtype.api.deps import AdminUser, SessionDep
from prodtype.api.loop import registry_of
from prodtype.api.loop_schemas import RetrainJobPublic, RetrainRequest, RetrainStatusPublic
from prodtype.services import audit, retrain_jobs
from prodtype.services.retrain import LoopContext, watermark
from prodtype.services.trigger import trigger_status

router = APIRouter(prefix="/retrain", tags=["retrain"])


@router.post("", status_code=202)
def start_retrain(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    body: Annotated[RetrainRequest | None, Body()] = None,
) -> RetrainJobPublic:
    """Start a retrain in the background (one at a time: 409 while one runs); poll GET /retrain/{job_id}."""
    force = body.force if body else True
    job = retrain_jobs.start_job(
        request.app.state.settings, admin.username, force=force, loop=request.app.state.loop_settings
    )
    audit.record(session, "retrain.started", "retrain", job["id"], admin, {"force": force})
    session.commit()
    return RetrainJobPublic(**job)


@router.get("/status")
def retrain_status(request: Request, session: SessionDep, _admin: AdminUser) -> RetrainStatusPublic:
    """The trigger's figures: new reviewed products since the last training, live accuracy, thresholds."""
    settings = request.app.state.settings
    ctx = LoopContext(settings, request.app.state.loop_settings, registry_of(request))
    status = trigger_status(session, ctx.loop, watermark(ctx))
    running = retrain_jobs.retrain_running(settings)
    return RetrainStatusPublic(**{k: v for k, v in status.to_dict().items() if k != "extra"}, running=running)


@router.get("/{job_id}")
def read_retrain(
    request: Request, _admin: AdminUser, job_id: Annotated[str, Path(max_length=64)]
) -> RetrainJobPublic:
    """A retrain job: its status, the step it reached, and its outcome (version, promoted or why not)."""
    return RetrainJobPublic(**retrain_jobs.read_job(request.app.state.settings, job_id))
