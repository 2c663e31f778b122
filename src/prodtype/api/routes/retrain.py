"""Retraining: start a background job, follow it, and see the trigger's figures (admins only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Path, Request

from prodtype.api.deps import AdminUser
from prodtype.api.loop import registry_of
from prodtype.api.loop_schemas import RetrainJobPublic, RetrainRequest, RetrainStatusPublic
from prodtype.api.schemas import ErrorPublic
from prodtype.loop import retrain_jobs
from prodtype.loop.retrain import LoopContext, watermark
from prodtype.loop.trigger import trigger_status
from prodtype.serving import audit
from prodtype.serving.deps import SessionDep

router = APIRouter(prefix="/retrain", tags=["retrain"])


@router.post(
    "",
    status_code=202,
    responses={409: {"model": ErrorPublic, "description": "A retrain is already running"}},
)
def start_retrain(
    request: Request,
    session: SessionDep,
    admin: AdminUser,
    body: Annotated[RetrainRequest | None, Body()] = None,
) -> RetrainJobPublic:
    """Start a retrain in the background (one at a time: 409 while one runs); poll GET /retrain/{job_id}."""
    force = body.force if body else True
    job = retrain_jobs.start_job(request.app.state.settings, admin.username, force=force)
    audit.record(session, "retrain.started", "retrain", job.id, admin, {"force": force})
    session.commit()
    return RetrainJobPublic.model_validate(job.model_dump())


@router.get("/status")
def retrain_status(request: Request, session: SessionDep, _admin: AdminUser) -> RetrainStatusPublic:
    """The trigger's figures: new reviewed products since the last training, live accuracy, thresholds."""
    settings = request.app.state.settings
    ctx = LoopContext(settings, registry_of(request))
    status = trigger_status(session, ctx.loop, watermark(ctx))
    running = retrain_jobs.retrain_running(settings)
    return RetrainStatusPublic(**status.model_dump(), running=running)


@router.get("/{job_id}")
def read_retrain(
    request: Request,
    _admin: AdminUser,
    # the form start_job gives ids (so "status", the trigger's figures, is never taken for one)
    job_id: Annotated[
        str, Path(pattern=r"^[0-9]{14}[0-9a-f]{8}$", description="e.g. 20261201093000a1b2c3d4")
    ],
) -> RetrainJobPublic:
    """A retrain job: its status, the step it reached, and its outcome (version, promoted or why not)."""
    job = retrain_jobs.read_job(request.app.state.settings, job_id)
    return RetrainJobPublic.model_validate(job.model_dump())
