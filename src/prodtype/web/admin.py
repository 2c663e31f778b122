"""The admins' pages: accounts, models (registered versions, promote, roll back) and retraining.

They call the same functions as the API's routes (:mod:`prodtype.serving.users`,
:mod:`prodtype.loop.model_versions`, :mod:`prodtype.loop.retrain_jobs`, the trigger), and answer a bad
form on the page with the status the API would give (:func:`prodtype.serving.errors.status_for`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from prodtype.config import Settings
from prodtype.db.tables import Role, User
from prodtype.loop import model_versions, retrain_jobs
from prodtype.loop.champion import load_checked
from prodtype.loop.deps import follower_of, registry_of
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.model_card import build_card
from prodtype.loop.retrain import LoopContext, watermark
from prodtype.loop.shadow import ShadowLedger, ShadowStatus, put_in_shadow, shadow_status
from prodtype.loop.trigger import trigger_status
from prodtype.serving import audit, users
from prodtype.serving.deps import CatalogDep, SessionDep, SettingsDep
from prodtype.serving.errors import InvalidInputError, NotFoundError, ServiceError, status_for
from prodtype.serving.uploads import Paging, ascii_number, page_number
from prodtype.web import markdown
from prodtype.web.charts import compare_bars
from prodtype.web.deps import PageAdmin
from prodtype.web.i18n import category_namer, language, translator
from prodtype.web.render import redirect, render
from prodtype.web.session import CSRF_FIELD, CsrfError, check_csrf

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False, default_response_class=HTMLResponse)

TextField = Annotated[str, Form()]
CsrfField = Annotated[str, Form(alias=CSRF_FIELD)]
ACCOUNTS_PAGE = 50
JOB_ID = re.compile(r"^[0-9]{14}[0-9a-f]{8}$")
MAX_REASON = 500
NO_STORE = {"Cache-Control": "no-store"}


# -- accounts -----------------------------------------------------------------------------------------


def refused(exc: CsrfError | ServiceError) -> tuple[int, str]:
    """The status and message a page shows for a refused form: 403 for a bad CSRF token, else the error's."""
    return (403 if isinstance(exc, CsrfError) else status_for(exc)), str(exc)


def _accounts(
    request: Request,
    session: SessionDep,
    admin: User,
    page: int = 1,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    paging = Paging(page, ACCOUNTS_PAGE)
    rows, count = users.list_users(session, paging.offset, paging.size)
    return render(
        request,
        "accounts.html",
        admin,
        status,
        nav="accounts",
        accounts=rows,
        count=count,
        roles=[r.value for r in Role],
        page=paging.number,
        pages=paging.count(count),
        form=form or {"username": "", "role": Role.CUSTOMER.value},
        error=error,
        notice=notice,
    )


@router.get("/accounts")
def accounts_page(request: Request, session: SessionDep, admin: PageAdmin, page: str = "1") -> Response:
    """Every account: role, disabled or not; create one, change a role, disable, reset a password."""
    return _accounts(request, session, admin, page_number(page))


@router.post("/accounts")
def create_account(
    request: Request,
    session: SessionDep,
    admin: PageAdmin,
    username: TextField = "",
    password: TextField = "",
    role: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    form = {"username": username, "role": role}
    try:
        check_csrf(request, csrf_token)
        user = users.create_user(session, username.strip(), password, role, actor=admin)
    except (CsrfError, ServiceError) as exc:
        session.rollback()
        status, error = refused(exc)
        return _accounts(request, session, admin, status=status, error=error, form=form)
    return redirect(f"/accounts?done=created&who={user.username}")


@router.post("/accounts/{username}")
def change_account(
    username: str,
    request: Request,
    session: SessionDep,
    admin: PageAdmin,
    action: TextField = "",
    role: TextField = "",
    password: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    """``action``: role (to ``role``), disable, enable, or password (to ``password``)."""
    _ = translator(language(request))
    try:
        check_csrf(request, csrf_token)
        if action == "role":
            users.update_user(session, username, admin, role=role)
            notice = _("%(user)s is now %(role)s.") % {"user": username, "role": _(role)}
        elif action in ("disable", "enable"):
            users.update_user(session, username, admin, disabled=action == "disable")
            notice = (_("%(user)s is disabled.") if action == "disable" else _("%(user)s is enabled.")) % {
                "user": username
            }
        elif action == "password":
            users.update_user(session, username, admin, password=password)
            notice = _("The password of %(user)s was changed; their sessions are closed.") % {
                "user": username
            }
        else:
            raise InvalidInputError(
                f"unknown action {action[:40]!r}; expected role, disable, enable or password"
            )
    except (CsrfError, ServiceError) as exc:
        session.rollback()
        status, error = refused(exc)
        return _accounts(request, session, admin, status=status, error=error)
    return _accounts(request, session, admin, notice=notice)


# -- models -------------------------------------------------------------------------------------------


def _per_class(metrics: dict[str, float]) -> dict[int, float]:
    return {
        int(k[len("eval_f1_") :]): v
        for k, v in metrics.items()
        if k.startswith("eval_f1_") and k[8:].isdigit()
    }


def _models(
    request: Request,
    catalog: CatalogDep,
    admin: User,
    compare: str = "",
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Response:
    _ = translator(language(request))
    name = category_namer(catalog, language(request))
    follower = follower_of(request)
    serving = follower.serving_version if follower is not None else None
    try:
        listing = model_versions.list_models(registry_of(request), serving)
    except Exception as exc:  # the registry's store cannot be read: say so on the page
        listing = model_versions.ModelsListing(
            model="?", champion=None, serving_version=serving, data=[], count=0, history=[]
        )
        error = error or f"the model registry cannot be read: {type(exc).__name__}: {exc}"
        status = status if status != 200 else 503
    versions = list(listing.data)
    champion = next((v for v in versions if v.version == listing.champion), None)
    chosen_number = ascii_number(compare, 9)
    chosen = next((v for v in versions if v.version == chosen_number), None)
    if chosen is None:  # by default the newest version that is not the champion
        chosen = next((v for v in versions if v is not champion), None)
    chart = None
    card, card_error = None, None
    if chosen is not None:
        try:
            card = markdown.parse(build_card(registry_of(request), chosen.version, catalog).markdown)
        except Exception as exc:  # a card that cannot be built must not take the page down
            card_error = f"{type(exc).__name__}: {exc}"
        mine = _per_class(chosen.metrics)
        theirs = _per_class(champion.metrics) if champion is not None and champion is not chosen else {}
        if mine:
            rows = [
                (f"{code} {name(code)}", mine[code], theirs.get(code))
                for code in sorted(mine, key=lambda c: mine[c] - theirs.get(c, mine[c]))
            ]
            title = _("Per-class F1: version %(a)s against the champion (version %(b)s)") % {
                "a": chosen.version,
                "b": champion.version if champion is not None else "—",
            }
            chart = compare_bars(
                rows,
                _("version %(v)s") % {"v": chosen.version},
                _("champion"),
                title,
                x_label=_("F1 by product type"),
                diff_label=_("difference"),
            )
    return render(
        request,
        "models.html",
        admin,
        status,
        nav="models",
        listing=listing,
        versions=versions,
        champion=champion,
        chosen=chosen,
        chart=chart,
        serving_version=serving,
        serving_model_version=request.app.state.model_holder.version,
        card=card,
        card_error=card_error,
        shadow=_shadow(request),
        error=error,
        notice=notice,
    )


def _shadow(request: Request) -> ShadowStatus | None:
    settings: Settings = request.app.state.settings
    try:
        return shadow_status(
            registry_of(request).model_name,
            ShadowLedger(request.app.state.sessions),
            request.app.state.sessions,
            getattr(request.app.state, "shadow", None),
            getattr(request.app.state, "shadow_follower", None),
            settings.loop,
        )
    except Exception as exc:  # shown as missing figures, never a broken page
        log.warning("could not read the shadow figures: %s", exc)
        return None


@router.get("/models")
def models_page(request: Request, catalog: CatalogDep, admin: PageAdmin, compare: str = "") -> Response:
    """Registered versions with their evaluation, the champion, which version answers; per-class F1 of a
    version against the champion."""
    return _models(request, catalog, admin, compare)


def _checker(request: Request) -> model_versions.Checker:
    codes = list(request.app.state.catalog.codes)
    return lambda path: load_checked(Path(path), codes)


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidInputError("say why (the reason is kept in the champion's history)")
    if len(reason) > MAX_REASON:
        raise InvalidInputError(f"the reason is too long: at most {MAX_REASON} characters")
    return reason


def _changed(request: Request, version: int) -> None:
    follower = follower_of(request)
    if follower is not None:
        follower.allow_retry(version)
        follower.wake()


@router.post("/models/{version}/promote")
def promote_model(
    version: str,
    request: Request,
    catalog: CatalogDep,
    admin: PageAdmin,
    reason: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    _ = translator(language(request))
    try:
        check_csrf(request, csrf_token)
        number = ascii_number(version, 9)
        if number is None:
            raise NotFoundError(f"no version {version[:20]!r}")
        info = model_versions.promote(
            registry_of(request),
            number,
            actor=admin.username,
            reason=_reason(reason),
            check=_checker(request),
            ledger=PromotionLedger(request.app.state.sessions),
        )
    except (CsrfError, ServiceError) as exc:
        return _models(request, catalog, admin, version, *refused(exc))
    _changed(request, info.version)
    notice = _("Version %(v)s is the champion; the service switches to it in the background.") % {
        "v": info.version
    }
    return _models(request, catalog, admin, version, notice=notice)


@router.post("/models/rollback")
def rollback_model(
    request: Request,
    catalog: CatalogDep,
    admin: PageAdmin,
    reason: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    _ = translator(language(request))
    try:
        check_csrf(request, csrf_token)
        info = model_versions.rollback(
            registry_of(request),
            actor=admin.username,
            reason=_reason(reason),
            check=_checker(request),
            ledger=PromotionLedger(request.app.state.sessions),
        )
    except (CsrfError, ServiceError) as exc:
        return _models(request, catalog, admin, "", *refused(exc))
    _changed(request, info.version)
    notice = _("Rolled back: version %(v)s is the champion again.") % {"v": info.version}
    return _models(request, catalog, admin, notice=notice)


def _shadow_changed(request: Request, version: int | None = None) -> None:
    follower = getattr(request.app.state, "shadow_follower", None)
    if follower is not None:
        follower.follow_now(retry=version)  # this process at once; the others at their next poll


@router.post("/models/shadow/stop")
def stop_shadow(
    request: Request,
    catalog: CatalogDep,
    admin: PageAdmin,
    csrf_token: CsrfField = "",
) -> Response:
    _ = translator(language(request))
    try:
        check_csrf(request, csrf_token)
    except CsrfError as exc:
        return _models(request, catalog, admin, "", 403, str(exc))
    stopped = ShadowLedger(request.app.state.sessions).stop(
        registry_of(request).model_name, actor=admin.username, reason=f"stopped by {admin.username}"
    )
    _shadow_changed(request)
    if stopped is None:
        return _models(request, catalog, admin, "", notice=_("No version was in shadow."))
    return _models(
        request, catalog, admin, "", notice=_("Version %(v)s no longer runs in shadow.") % {"v": stopped}
    )


@router.post("/models/{version}/shadow")
def start_shadow(
    version: str,
    request: Request,
    catalog: CatalogDep,
    admin: PageAdmin,
    reason: TextField = "",
    csrf_token: CsrfField = "",
) -> Response:
    _ = translator(language(request))
    codes = list(catalog.codes)
    try:
        check_csrf(request, csrf_token)
        number = ascii_number(version, 9)
        if number is None:
            raise NotFoundError(f"no version {version[:20]!r}")
        if len(reason.strip()) > MAX_REASON:
            raise InvalidInputError(f"the reason is too long: at most {MAX_REASON} characters")
        put_in_shadow(
            registry_of(request),
            ShadowLedger(request.app.state.sessions),
            number,
            actor=admin.username,
            reason=reason.strip() or f"put in shadow by {admin.username}",
            check=lambda path: load_checked(Path(path), codes),
        )
    except (CsrfError, ServiceError) as exc:
        return _models(request, catalog, admin, version, *refused(exc))
    _shadow_changed(request, number)
    notice = _("Version %(v)s runs in shadow: each new prediction is also scored by it.") % {"v": number}
    return _models(request, catalog, admin, version, notice=notice)


# -- retraining ---------------------------------------------------------------------------------------


def _retrain(
    request: Request,
    session: SessionDep,
    admin: User,
    job: str = "",
    status: int = 200,
    error: str | None = None,
) -> Response:
    settings = request.app.state.settings
    try:
        since = watermark(LoopContext(settings, registry_of(request)))
    except Exception:
        since = None
    trigger = trigger_status(session, settings.loop, since)
    jobs = retrain_jobs.recent_jobs(settings, 10)
    running = next((j for j in jobs if j.status == "running"), None)
    shown = running
    if JOB_ID.fullmatch(job):
        try:
            shown = retrain_jobs.read_job(settings, job)
        except NotFoundError:
            shown = running
    return render(
        request,
        "retrain.html",
        admin,
        status,
        nav="retrain",
        trigger=trigger,
        jobs=jobs,
        job=shown,
        running=retrain_jobs.retrain_running(settings),
        error=error,
    )


@router.get("/retrain")
def retrain_page(request: Request, session: SessionDep, admin: PageAdmin, job: str = "") -> Response:
    """The trigger's figures, a button to retrain now, the running job's step, the last jobs."""
    return _retrain(request, session, admin, job)


@router.post("/retrain")
def retrain_now(
    request: Request, session: SessionDep, settings: SettingsDep, admin: PageAdmin, csrf_token: CsrfField = ""
) -> Response:
    try:
        check_csrf(request, csrf_token)
        job = retrain_jobs.start_job(settings, admin.username, force=True)
    except (CsrfError, ServiceError) as exc:
        status, error = refused(exc)
        return _retrain(request, session, admin, status=status, error=error)
    audit.record(session, "retrain.started", "retrain", job.id, admin, {"force": True, "from": "web"})
    session.commit()
    return redirect(f"/retrain?job={job.id}")


@router.get("/retrain/jobs/{job_id}", response_class=JSONResponse)
def retrain_job(job_id: str, request: Request, _admin: PageAdmin) -> Response:
    """A job's record as JSON, for the page's progress (the page's session cookie, where the API's
    ``GET /api/v1/retrain/{job_id}`` needs a bearer token that page scripts never see)."""
    if not JOB_ID.fullmatch(job_id):
        return JSONResponse({"detail": "no such job"}, status_code=404, headers=NO_STORE)
    try:
        record = retrain_jobs.read_job(request.app.state.settings, job_id)
    except NotFoundError as exc:
        return JSONResponse({"detail": str(exc)}, status_code=404, headers=NO_STORE)
    keys = ("id", "status", "step", "requested_by", "created_at", "updated_at", "error")
    body = {k: getattr(record, k) for k in keys}
    _ = translator(language(request))
    body["label"] = _(str(record.status or ""))
    body["step_label"] = _(str(record.step or ""))
    return JSONResponse(body, headers=NO_STORE)
