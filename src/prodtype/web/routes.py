"""The web page: log in, submit a product, see its predicted type, list one's predictions, review.

The pages call the same services as the API (:mod:`prodtype.serving`); what is here is HTTP only:
reading forms, the session cookie, and turning a service's error into a message on the page, with the
status code the API would answer (:func:`prodtype.serving.errors.status_for`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from prodtype.catalog import Catalog
from prodtype.db.tables import Status, User
from prodtype.ml.predictor import Predictor
from prodtype.serving import login as login_service
from prodtype.serving import predictions, reviews
from prodtype.serving.deps import CatalogDep, SessionDep, SettingsDep, StoreDep, get_model
from prodtype.serving.errors import (
    InvalidInputError,
    ModelUnavailableError,
    NotFoundError,
    ServiceError,
    TooManyRequestsError,
    status_for,
)
from prodtype.serving.predictions import PredictionFilter, PredictionView
from prodtype.serving.reviews import Decision
from prodtype.web.render import STATIC_DIR, is_reviewer, redirect, render
from prodtype.web.session import CSRF_FIELD, CsrfError, check_csrf, log_in, log_out, viewer

router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

QUEUE_PAGE = 10
MINE_PAGE = 20
MAX_ID = 2**31 - 1  # the id column is a 32-bit integer on PostgreSQL
NO_MODEL_MESSAGE = (
    "the classifier is not available right now (no model is loaded); try again in a few minutes"
)

TextField = Annotated[str, Form()]
CsrfField = Annotated[str, Form(alias=CSRF_FIELD)]


async def _model_or_none(request: Request) -> Predictor | None:
    try:
        return await get_model(request)
    except ModelUnavailableError:
        return None


ModelOrNone = Annotated[Predictor | None, Depends(_model_or_none)]


def _number(value: str, max_digits: int) -> int | None:
    """A decimal number written with ASCII digits only (``str.isdigit`` also accepts '²' and '①',
    which ``int`` then refuses), or None."""
    value = value.strip()
    if 0 < len(value) <= max_digits and value.isascii() and value.isdigit():
        return int(value)
    return None


def _page(value: str) -> int:
    """A 1-based page number from the query string; anything else is the first page."""
    number = _number(value, 6)
    return number if number else 1


def _record_id(value: str) -> int:
    """A prediction id from the path; one that cannot exist (not a number, beyond the column's range)
    is refused as not found rather than sent to the database."""
    number = _number(value, 10)
    if number is None or not 0 < number <= MAX_ID:
        raise NotFoundError(f"no prediction with id {value[:20]}")
    return number


def _pages(count: int, size: int) -> int:
    return max(1, -(-count // size))


def _forbidden(request: Request, user: User, what: str) -> HTMLResponse:
    message = f"{what} is for reviewers and admins; you are logged in as {user.username} ({user.role})"
    return render(request, "error.html", user, 403, title="Not allowed", error=message)


@router.get("/")
def home(request: Request, session: SessionDep) -> Response:
    """Reviewers start at the review queue, customers at the submission form."""
    user = viewer(request, session)
    if user is None:
        return redirect("/login")
    return redirect("/review" if is_reviewer(user) else "/predict")


@router.get("/login")
def login_page(request: Request, session: SessionDep) -> Response:
    return render(request, "login.html", viewer(request, session), username="")


@router.post("/login")
def login(
    request: Request,
    session: SessionDep,
    username: TextField = "",
    password: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    def again(message: str, status: int) -> Response:
        return render(request, "login.html", None, status, username=username, error=message)

    try:
        check_csrf(request, csrf_token)
    except CsrfError as exc:
        return again(str(exc), 403)
    if not username.strip() or not password:
        return again("enter your username and your password", 422)
    address = request.client.host if request.client else "unknown"
    try:
        user = login_service.log_in(
            session, request.app.state.login_throttle, username.strip(), password, address
        )
    except TooManyRequestsError as exc:
        page = again(str(exc), 429)
        page.headers["Retry-After"] = str(exc.retry_after)
        return page
    except ServiceError as exc:
        return again(str(exc), status_for(exc))
    response = redirect("/")
    log_in(request, response, user)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionDep, csrf_token: CsrfField = "") -> Response:
    try:
        check_csrf(request, csrf_token)
    except CsrfError as exc:
        return render(request, "error.html", None, 403, title="Not logged out", error=str(exc))
    response = redirect("/login")
    log_out(request, response, session)
    return response


@router.get("/predict")
def predict_page(request: Request, session: SessionDep, settings: SettingsDep) -> Response:
    user = viewer(request, session)
    if user is None:
        return redirect("/login")
    form = {"designation": "", "description": ""}
    return render(
        request, "predict.html", user, nav="predict", form=form, upload_limit=settings.upload_limit_bytes
    )


@router.post("/predict")
def predict(
    request: Request,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    model: ModelOrNone,
    designation: TextField = "",
    description: TextField = "",
    image: Annotated[UploadFile | None, File()] = None,
    csrf_token: CsrfField = "",
) -> Response:
    """Classify the product and show the new prediction (or the form again, saying what was wrong)."""
    user = viewer(request, session)
    if user is None:
        return redirect("/login")

    def again(message: str, status: int) -> Response:
        form = {"designation": designation, "description": description}
        return render(
            request,
            "predict.html",
            user,
            status,
            nav="predict",
            form=form,
            upload_limit=settings.upload_limit_bytes,
            error=message,
        )

    try:
        check_csrf(request, csrf_token)
    except CsrfError as exc:
        return again(str(exc), 403)
    if model is None:
        return again(NO_MODEL_MESSAGE, 503)
    data = None
    if image is not None and (image.filename or image.size):
        data = image.file.read(settings.upload_limit_bytes + 1)
    submission = predictions.Submission(designation, description, data, image.content_type if image else None)
    try:
        checked = predictions.check_submission(
            submission, settings.upload_limit_bytes, settings.max_image_pixels
        )
        row = predictions.create_prediction(session, store, model, checked, user, k=settings.top_k)
    except ServiceError as exc:
        return again(str(exc), status_for(exc))
    return redirect(f"/predictions/{row.id}")


@router.get("/predictions")
def my_predictions(request: Request, session: SessionDep, catalog: CatalogDep, page: str = "1") -> Response:
    """What the logged-in user submitted, newest first."""
    user = viewer(request, session)
    if user is None:
        return redirect("/login")
    number = _page(page)
    rows, count = predictions.list_predictions(
        session,
        user,
        PredictionFilter(created_by=user.username),
        "-created_at",
        (number - 1) * MINE_PAGE,
        MINE_PAGE,
    )
    items = [PredictionView.from_row(r, catalog) for r in rows]
    return render(
        request,
        "predictions.html",
        user,
        nav="mine",
        items=items,
        count=count,
        page=number,
        pages=_pages(count, MINE_PAGE),
    )


@router.get("/predictions/{prediction_id}")
def prediction_page(
    prediction_id: str, request: Request, session: SessionDep, catalog: CatalogDep
) -> Response:
    user = viewer(request, session)
    if user is None:
        return redirect("/login")
    try:
        row = predictions.get_prediction(session, _record_id(prediction_id), user)
    except NotFoundError as exc:
        return render(request, "error.html", user, 404, title="Not found", error=str(exc))
    return render(
        request, "prediction.html", user, p=PredictionView.from_row(row, catalog), name=catalog.name
    )


@router.get("/predictions/{prediction_id}/image")
def prediction_image(prediction_id: str, request: Request, session: SessionDep, store: StoreDep) -> Response:
    user = viewer(request, session)
    if user is None:
        return Response(status_code=401)
    try:
        data, content_type = predictions.get_image(session, store, _record_id(prediction_id), user)
    except NotFoundError:
        return Response(status_code=404)
    headers = {
        "Cache-Control": "private, max-age=86400",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'",
    }
    return Response(content=data, media_type=content_type, headers=headers)


def _queue(
    request: Request,
    session: SessionDep,
    catalog: Catalog,
    user: User,
    number: int,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    rows, count = predictions.list_predictions(
        session,
        user,
        PredictionFilter(status=Status.PENDING),
        "confidence",
        (number - 1) * QUEUE_PAGE,
        QUEUE_PAGE,
    )
    return render(
        request,
        "review.html",
        user,
        status,
        nav="review",
        items=[PredictionView.from_row(r, catalog) for r in rows],
        categories=catalog.categories,
        name=catalog.name,
        count=count,
        page=number,
        pages=_pages(count, QUEUE_PAGE),
        error=error,
        notice=notice,
    )


def _done_notice(session: SessionDep, catalog: Catalog, user: User, done: str) -> str | None:
    """What the last review did, said from the record (never from text in the URL)."""
    try:
        row = predictions.get_prediction(session, _record_id(done), user)
    except NotFoundError:
        return None
    if row.status == Status.REJECTED.value:
        return f"Prediction #{row.id} rejected."
    if row.status == Status.ACCEPTED.value and row.final_code is not None:
        how = "accepted" if row.final_code == row.predicted_code else "corrected"
        return f"Prediction #{row.id} {how}: {catalog.name(row.final_code)} ({row.final_code})."
    return None


@router.get("/review")
def review_queue(
    request: Request, session: SessionDep, catalog: CatalogDep, page: str = "1", done: str = ""
) -> Response:
    """Pending predictions, lowest confidence first."""
    user = viewer(request, session)
    if user is None:
        return redirect("/login")
    if not is_reviewer(user):
        return _forbidden(request, user, "The review queue")
    notice = _done_notice(session, catalog, user, done)
    return _queue(request, session, catalog, user, _page(page), notice=notice)


@router.post("/review/{prediction_id}")
def review(
    prediction_id: str,
    request: Request,
    session: SessionDep,
    catalog: CatalogDep,
    action: TextField = "",
    prdtypecode: TextField = "",
    page: TextField = "1",
    csrf_token: CsrfField = "",
) -> Response:
    """Accept the predicted type, accept with a corrected type, or reject."""
    user = viewer(request, session)
    if user is None:
        return redirect("/login")
    if not is_reviewer(user):
        return _forbidden(request, user, "Reviewing")
    number = _page(page)
    try:
        check_csrf(request, csrf_token)
        record = _record_id(prediction_id)
        if action == "accept":
            reviews.review_prediction(session, catalog, record, user, Decision.ACCEPT)
        elif action == "reject":
            reviews.review_prediction(session, catalog, record, user, Decision.REJECT)
        elif action == "correct":
            code = _number(prdtypecode, 9)
            if code is None:
                raise InvalidInputError(
                    f"prediction #{record}: choose the correct product type in the list, then press "
                    "'Save corrected type'"
                )
            reviews.review_prediction(session, catalog, record, user, Decision.ACCEPT, code)
        else:
            raise InvalidInputError(f"unknown action {action[:40]!r}; expected accept, correct or reject")
    except CsrfError as exc:
        return _queue(request, session, catalog, user, number, 403, error=str(exc))
    except ServiceError as exc:
        return _queue(request, session, catalog, user, number, status_for(exc), error=str(exc))
    return redirect(f"/review?done={record}&page={number}")


def install_web(app: FastAPI) -> None:
    """Serve the pages at ``/`` and their scripts and styles at ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(router)
