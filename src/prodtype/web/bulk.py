"""The bulk page: upload a CSV in the challenge's X format (and a zip of photos), follow the job while it
runs, download the result, see the bad rows. The same service as ``POST /api/v1/jobs/bulk``
(:mod:`prodtype.serving.bulk_jobs`); the page's script polls ``/bulk/{id}/status`` with the session cookie
(page scripts never see a bearer token)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse

from prodtype.db.tables import User
from prodtype.serving import bulk_jobs
from prodtype.serving.bulk_jobs import BulkJobView
from prodtype.serving.deps import CatalogDep, SessionDep, SettingsDep
from prodtype.serving.errors import NotFoundError, ServiceError, status_for
from prodtype.web.deps import PageUser
from prodtype.web.i18n import category_namer, language, translator
from prodtype.web.render import SECURITY_HEADERS, redirect, render
from prodtype.web.session import CSRF_FIELD, CsrfError, check_csrf

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

CsrfField = Annotated[str, Form(alias=CSRF_FIELD)]
NO_STORE = {"Cache-Control": "no-store"}
RECENT_JOBS = 20


def _form(
    request: Request,
    session: SessionDep,
    user: User,
    status: int = 200,
    error: str | None = None,
) -> Response:
    settings = request.app.state.settings
    return render(
        request,
        "bulk.html",
        user,
        status,
        nav="bulk",
        jobs=[
            bulk_jobs.view_job(session, j, bad_limit=0)
            for j in bulk_jobs.list_jobs(session, user, RECENT_JOBS)
        ],
        max_rows=settings.bulk_job_max_rows,
        max_csv_mb=round(settings.bulk_job_max_csv_bytes / 1048576, 1),
        max_zip_mb=round(settings.bulk_job_max_zip_bytes / 1048576, 1),
        error=error,
    )


@router.get("/bulk")
def bulk_page(request: Request, session: SessionDep, user: PageUser) -> Response:
    """The upload form and one's last jobs."""
    return _form(request, session, user)


@router.post("/bulk")
def submit_bulk(
    request: Request,
    session: SessionDep,
    user: PageUser,
    settings: SettingsDep,
    csv: Annotated[UploadFile | None, File()] = None,
    photos: Annotated[UploadFile | None, File()] = None,
    csrf_token: CsrfField = "",
) -> Response:
    _ = translator(language(request))
    try:
        check_csrf(request, csrf_token)
    except CsrfError as exc:
        return _form(request, session, user, 403, str(exc))
    if csv is None or not (csv.filename or csv.size):
        return _form(request, session, user, 422, _("Choose a CSV file of products."))
    if photos is not None and not (photos.filename or photos.size):
        photos = None  # the photos field left empty
    try:
        job = bulk_jobs.submit_job(
            session,
            settings,
            user,
            csv.filename or "products.csv",
            csv.file.read(settings.bulk_job_max_csv_bytes + 1),
            photos.file if photos is not None else None,
            (photos.size or 0) if photos is not None else 0,
        )
    except ServiceError as exc:
        session.rollback()
        return _form(request, session, user, status_for(exc), str(exc))
    worker = getattr(request.app.state, "bulk_worker", None)
    if worker is not None:
        worker.wake()
    return redirect(f"/bulk/{job.id}")


def _view(session: SessionDep, user: User, job_id: str) -> BulkJobView:
    return bulk_jobs.view_job(session, bulk_jobs.get_job(session, job_id, user))


@router.get("/bulk/{job_id}")
def bulk_job_page(job_id: str, request: Request, session: SessionDep, user: PageUser) -> Response:
    """A job: its progress while it runs, then the download link and the bad rows."""
    _ = translator(language(request))
    try:
        job = _view(session, user, job_id)
    except NotFoundError as exc:
        return render(request, "error.html", user, 404, title=_("Not found"), error=str(exc))
    return render(request, "bulk_job.html", user, nav="bulk", job=job)


@router.get("/bulk/{job_id}/status", response_class=JSONResponse)
def bulk_job_status(job_id: str, request: Request, session: SessionDep, user: PageUser) -> Response:
    """The job's progress as JSON, for the page's script (the session cookie, not a bearer token)."""
    _ = translator(language(request))
    try:
        job = _view(session, user, job_id)
    except NotFoundError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404, headers=NO_STORE)
    body = {
        "id": job.id,
        "status": job.status.value,
        "label": _(job.status.value),
        "total": job.total,
        "done": job.done,
        "bad": job.bad,
    }
    return JSONResponse(body, headers=NO_STORE)


@router.get("/bulk/{job_id}/result")
def bulk_job_result(
    job_id: str, request: Request, session: SessionDep, user: PageUser, catalog: CatalogDep
) -> Response:
    """The result file, with the product types named in the page's language."""
    _ = translator(language(request))
    name = category_namer(catalog, language(request))
    try:
        job = bulk_jobs.get_job(session, job_id, user)
        text = bulk_jobs.result_csv(session, job, name)
    except ServiceError as exc:
        title = _("Not found") if isinstance(exc, NotFoundError) else _("Not ready")
        return render(request, "error.html", user, status_for(exc), title=title, error=str(exc))
    headers = {
        **SECURITY_HEADERS,
        "Content-Disposition": f'attachment; filename="prodtype-{job.id}.csv"',
    }
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
