"""The web page: log in, submit a product, see its predicted type, list one's predictions, review.

The pages call the same services as the API (:mod:`prodtype.serving`); what is here is HTTP only:
reading forms, the session cookie, and turning a service's error into a message on the page, with the
status code the API would answer (:func:`prodtype.serving.errors.status_for`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, File, Form, Request, Response, UploadFile
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from prodtype.catalog import Catalog
from prodtype.db.tables import Status, User
from prodtype.ml.predictor import Predictor
from prodtype.serving import login as login_service
from prodtype.serving import predictions, reviews
from prodtype.serving.deps import CatalogDep, SessionDep, SettingsDep, ShadowDep, StoreDep, get_model
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
from prodtype.serving.uploads import Paging, ascii_number, image_response, page_number, read_upload
from prodtype.web import admin, bulk, explanations, monitoring
from prodtype.web.deps import LoginRequiredError, PageForbiddenError, PageReviewer, PageUser
from prodtype.web.i18n import LANG_COOKIE, LANGUAGES, category_namer, language, translator
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


def _record_id(value: str) -> int:
    """A prediction id from the path; one that cannot exist (not a number, beyond the column's range)
    is refused as not found rather than sent to the database."""
    number = ascii_number(value, 10)
    if number is None or not 0 < number <= MAX_ID:
        raise NotFoundError(f"no prediction with id {value[:20]}")
    return number


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
        _ = translator(language(request))
        return again(_("enter your username and your password"), 422)
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
        _ = translator(language(request))
        title = _("Not logged out")
        return render(request, "error.html", None, 403, title=title, error=str(exc))
    response = redirect("/login")
    log_out(request, response, session)
    return response


@router.get("/predict")
def predict_page(request: Request, user: PageUser, settings: SettingsDep) -> Response:
    form = {"designation": "", "description": ""}
    return render(
        request, "predict.html", user, nav="predict", form=form, upload_limit=settings.upload_limit_bytes
    )


@router.post("/predict")
def predict(
    request: Request,
    session: SessionDep,
    user: PageUser,
    store: StoreDep,
    settings: SettingsDep,
    model: ModelOrNone,
    shadow: ShadowDep,
    designation: TextField = "",
    description: TextField = "",
    image: Annotated[UploadFile | None, File()] = None,
    csrf_token: CsrfField = "",
) -> Response:
    """Classify the product and show the new prediction (or the form again, saying what was wrong)."""

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
        return again(translator(language(request))(NO_MODEL_MESSAGE), 503)
    data, content_type = read_upload(image, settings.upload_limit_bytes)
    submission = predictions.Submission(designation, description, data, content_type)
    try:
        checked = predictions.check_submission(
            submission, settings.upload_limit_bytes, settings.max_image_pixels
        )
        row = predictions.create_prediction(
            session, store, model, checked, user, k=settings.top_k, shadow=shadow
        )
    except ServiceError as exc:
        return again(str(exc), status_for(exc))
    return redirect(f"/predictions/{row.id}")


@router.get("/predictions")
def my_predictions(
    request: Request, session: SessionDep, user: PageUser, catalog: CatalogDep, page: str = "1"
) -> Response:
    """What the logged-in user submitted, newest first."""
    paging = Paging(page_number(page), MINE_PAGE)
    rows, count = predictions.list_predictions(
        session, user, PredictionFilter(created_by=user.username), "-created_at", paging.offset, paging.size
    )
    items = [PredictionView.from_row(r, catalog) for r in rows]
    return render(
        request,
        "predictions.html",
        user,
        nav="mine",
        items=items,
        count=count,
        page=paging.number,
        pages=paging.count(count),
    )


@router.get("/predictions/{prediction_id}")
def prediction_page(
    prediction_id: str,
    request: Request,
    session: SessionDep,
    user: PageUser,
    catalog: CatalogDep,
    store: StoreDep,
) -> Response:
    """A prediction, and why the model said so (computed now, not when it was predicted)."""
    try:
        row = predictions.get_prediction(session, _record_id(prediction_id), user)
    except NotFoundError as exc:
        _ = translator(language(request))
        title = _("Not found")
        return render(request, "error.html", user, 404, title=title, error=str(exc))
    why = explanations.explanation_context(request, session, store, catalog, row.id, user)
    return render(request, "prediction.html", user, p=PredictionView.from_row(row, catalog), **why)


@router.get("/predictions/{prediction_id}/image")
def prediction_image(prediction_id: str, request: Request, session: SessionDep, store: StoreDep) -> Response:
    user = viewer(request, session)
    if user is None:
        return Response(status_code=401)
    try:
        data, content_type = predictions.get_image(session, store, _record_id(prediction_id), user)
    except NotFoundError:
        return Response(status_code=404)
    return image_response(data, content_type)


@dataclass(frozen=True)
class QueueFilter:
    """The review queue's filters, read leniently from the query string (anything unreadable is no filter):
    ``type``, a predicted product type code; ``below``, a confidence in percent (1-100)."""

    code: int | None = None
    below: int | None = None

    @classmethod
    def read(cls, code: str, below: str) -> QueueFilter:
        number = ascii_number(code, 9)
        percent = ascii_number(below, 3)
        return cls(number, percent if percent is not None and 0 < percent <= 100 else None)

    def query(self, **more: object) -> str:
        values: dict[str, object] = {}
        if self.code is not None:
            values["type"] = self.code
        if self.below is not None:
            values["below"] = self.below
        values.update(more)
        return urlencode(values)

    def service_filter(self) -> PredictionFilter:
        return PredictionFilter(
            status=Status.PENDING,
            predicted_code=self.code,
            confidence_below=None if self.below is None else self.below / 100,
        )


def _queue(
    request: Request,
    session: SessionDep,
    catalog: Catalog,
    user: User,
    paging: Paging,
    filters: QueueFilter,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    rows, count = predictions.list_predictions(
        session, user, filters.service_filter(), "confidence", paging.offset, paging.size
    )
    return render(
        request,
        "review.html",
        user,
        status,
        nav="review",
        items=[PredictionView.from_row(r, catalog) for r in rows],
        categories=catalog.categories,
        count=count,
        page=paging.number,
        pages=paging.count(count),
        filters=filters,
        pager_query=filters.query(),
        error=error,
        notice=notice,
    )


def _done_notice(session: SessionDep, catalog: Catalog, user: User, done: str, lang: str) -> str | None:
    """What the last review did, said from the record (never from text in the URL)."""
    _ = translator(lang)
    try:
        row = predictions.get_prediction(session, _record_id(done), user)
    except NotFoundError:
        return None
    if row.status == Status.REJECTED.value:
        return _("Prediction #%(id)s rejected.") % {"id": row.id}
    if row.status == Status.ACCEPTED.value and row.final_code is not None:
        text = (
            _("Prediction #%(id)s accepted: %(name)s (%(code)s).")
            if row.final_code == row.predicted_code
            else _("Prediction #%(id)s corrected: %(name)s (%(code)s).")
        )
        name = category_namer(catalog, lang)
        return text % {"id": row.id, "name": name(row.final_code), "code": row.final_code}
    return None


@router.get("/review")
def review_queue(
    request: Request,
    session: SessionDep,
    user: PageReviewer,
    catalog: CatalogDep,
    page: str = "1",
    done: str = "",
    type: str = "",
    below: str = "",
) -> Response:
    """Pending predictions, lowest confidence first, optionally of one predicted type or below a
    confidence."""
    notice = _done_notice(session, catalog, user, done, language(request))
    paging = Paging(page_number(page), QUEUE_PAGE)
    return _queue(request, session, catalog, user, paging, QueueFilter.read(type, below), notice=notice)


@router.post("/review/{prediction_id}")
def review(
    prediction_id: str,
    request: Request,
    session: SessionDep,
    user: PageReviewer,
    catalog: CatalogDep,
    action: TextField = "",
    prdtypecode: TextField = "",
    page: TextField = "1",
    type: TextField = "",
    below: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    """Accept the predicted type, accept with a corrected type, or reject."""
    paging = Paging(page_number(page), QUEUE_PAGE)
    filters = QueueFilter.read(type, below)
    try:
        check_csrf(request, csrf_token)
        record = _record_id(prediction_id)
        if action == "accept":
            reviews.review_prediction(session, catalog, record, user, Decision.ACCEPT)
        elif action == "reject":
            reviews.review_prediction(session, catalog, record, user, Decision.REJECT)
        elif action == "correct":
            code = ascii_number(prdtypecode, 9)
            if code is None:
                raise InvalidInputError(
                    f"prediction #{record}: choose the correct product type in the list, then press "
                    "'Save corrected type'"
                )
            reviews.review_prediction(session, catalog, record, user, Decision.ACCEPT, code)
        else:
            raise InvalidInputError(f"unknown action {action[:40]!r}; expected accept, correct or reject")
    except CsrfError as exc:
        return _queue(request, session, catalog, user, paging, filters, 403, error=str(exc))
    except ServiceError as exc:
        return _queue(request, session, catalog, user, paging, filters, status_for(exc), error=str(exc))
    return redirect(f"/review?{filters.query(done=record, page=paging.number)}")


@router.get("/language")
def switch_language(request: Request, lang: str = "en", back: str = "/") -> Response:
    """The language switch: remember the choice in a cookie and go back to the page (a path on this
    site only; anything else goes to the start page)."""
    safe = back if back.startswith("/") and not back.startswith("//") and "\\" not in back else "/"
    response = redirect(safe[:2000])
    if lang in LANGUAGES:
        response.set_cookie(LANG_COOKIE, lang, max_age=365 * 86400, path="/", httponly=True, samesite="lax")
    return response


def _login_required(request: Request, exc: Exception) -> Response:
    return redirect("/login")


def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageForbiddenError)
    _ = translator(language(request))
    roles = " / ".join(sorted(role.value for role in exc.allowed))
    message = _("This page is for %(roles)s; you are logged in as %(user)s (%(role)s)") % {
        "roles": roles,
        "user": exc.user.username,
        "role": exc.user.role,
    }
    return render(request, "error.html", exc.user, 403, title=_("Not allowed"), error=message)


def install_web(app: FastAPI) -> None:
    """Serve the pages at ``/`` and their scripts and styles at ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_exception_handler(LoginRequiredError, _login_required)
    app.add_exception_handler(PageForbiddenError, _forbidden)
    app.include_router(router)
    app.include_router(admin.router)
    app.include_router(monitoring.router)
    app.include_router(explanations.router)
    app.include_router(bulk.router)
