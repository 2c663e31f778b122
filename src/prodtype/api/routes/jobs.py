"""Bulk jobs: a CSV in the challenge's X format (and a zip of photos) classified in the background."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Request, Response, UploadFile
from pydantic import BaseModel, Field

from prodtype.api.deps import CurrentUser, require_form
from prodtype.api.schemas import ErrorPublic
from prodtype.db.tables import JobStatus
from prodtype.serving import bulk_jobs
from prodtype.serving.bulk_jobs import BulkJobView
from prodtype.serving.deps import CatalogDep, SessionDep, SettingsDep
from prodtype.serving.errors import InvalidInputError

router = APIRouter(prefix="/jobs", tags=["jobs"])


class BadRowPublic(BaseModel):
    line: int = Field(description="Line of the CSV where the row starts (the header is line 1)")
    index: str = Field(description="The row's first column")
    reason: str


class BulkJobPublic(BaseModel):
    id: str
    status: JobStatus = Field(description="queued, running, done or failed")
    filename: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total: int = Field(description="Rows of the CSV")
    done: int = Field(description="Rows classified or found bad so far")
    classified: int
    bad: int
    photos: int = Field(description="Rows whose photo was found in the zip")
    model_version: str | None
    error: str | None = Field(description="Why the job failed, when it did")
    bad_rows: list[BadRowPublic] = Field(description=f"The first {bulk_jobs.MAX_BAD_ROWS_SHOWN} bad rows")
    result_url: str | None = Field(description="Where the result file is, once the job is done")

    @classmethod
    def from_view(cls, view: BulkJobView) -> BulkJobPublic:
        return cls(
            **{k: v for k, v in view.__dict__.items() if k != "bad_rows"},
            bad_rows=[BadRowPublic(**b.__dict__) for b in view.bad_rows],
            result_url=f"/api/v1/jobs/{view.id}/result" if view.status == JobStatus.DONE else None,
        )


BulkJobForm = Annotated[None, require_form("multipart/form-data with a csv file and an optional photos zip")]
CsvFile = Annotated[UploadFile, File(description="Products in the challenge's X format (UTF-8)")]
ZipFile = Annotated[
    UploadFile | None,
    File(description="Optional zip of photos named image_<imageid>_product_<productid>.jpg (JPEG or PNG)"),
]


@router.post(
    "/bulk",
    status_code=202,
    responses={
        413: {"model": ErrorPublic, "description": "The CSV or the zip is over its limit"},
        415: {
            "model": ErrorPublic,
            "description": "Not a multipart form, or the photos file is not a zip, or holds a non-photo",
        },
        422: {"model": ErrorPublic, "description": "The CSV or the zip cannot be used as a whole"},
    },
)
def create_bulk_job(
    request: Request,
    session: SessionDep,
    user: CurrentUser,
    settings: SettingsDep,
    _form: BulkJobForm,
    csv: CsvFile,
    photos: ZipFile = None,
) -> BulkJobPublic:
    """Queue a bulk classification (multipart: ``csv``, optional ``photos`` zip); poll GET /jobs/{id}.
    Rows that cannot be products are listed with their line and reason; the others are classified and
    land in the review queue like single predictions."""
    data = csv.file.read(settings.bulk_job_max_csv_bytes + 1)
    if photos is not None and not (photos.filename or photos.size):
        photos = None  # a form's empty file field
    if photos is not None and photos.size is None:
        raise InvalidInputError("the photos part has no size; send it as a file")
    job = bulk_jobs.submit_job(
        session,
        settings,
        user,
        csv.filename or "products.csv",
        data,
        photos.file if photos is not None else None,
        photos.size or 0 if photos is not None else 0,
    )
    worker = getattr(request.app.state, "bulk_worker", None)
    if worker is not None:
        worker.wake()
    return BulkJobPublic.from_view(bulk_jobs.view_job(session, job))


@router.get("/{job_id}", responses={404: {"model": ErrorPublic, "description": "No such job of yours"}})
def read_bulk_job(job_id: str, session: SessionDep, user: CurrentUser) -> BulkJobPublic:
    """A job's status, its progress (done of total rows) and its bad rows with their line and reason."""
    return BulkJobPublic.from_view(bulk_jobs.view_job(session, bulk_jobs.get_job(session, job_id, user)))


@router.get(
    "/{job_id}/result",
    response_class=Response,
    responses={
        200: {"content": {"text/csv": {}}, "description": "`,prdtypecode,category,confidence`"},
        404: {"model": ErrorPublic, "description": "No such job of yours"},
        409: {"model": ErrorPublic, "description": "The job is not done (yet)"},
    },
)
def bulk_job_result(job_id: str, session: SessionDep, user: CurrentUser, catalog: CatalogDep) -> Response:
    """The result in the submission format (``,prdtypecode``) plus the category name and confidence."""
    job = bulk_jobs.get_job(session, job_id, user)
    text = bulk_jobs.result_csv(session, job, catalog.name)
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="prodtype-{job.id}.csv"'},
    )
