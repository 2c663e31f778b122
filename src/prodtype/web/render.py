"""Rendering the pages: one Jinja2 environment that escapes everything, and the headers every page gets."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Protocol

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from prodtype.db.tables import Role
from prodtype.web import session as web_session
from prodtype.web.i18n import category_namer, language, translator

WEB_DIR = Path(__file__).parent
TEMPLATES_DIR = WEB_DIR / "templates"
STATIC_DIR = WEB_DIR / "static"

# Scripts and styles only from this site's /static, no inline script or style (an injected tag would be
# inert even if escaping failed); scripts fetch only from here (the review queue's explanations, the
# progress of jobs); forms post only here; pages cannot be framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def _percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def _when(value: datetime | None) -> str:
    if value is None:
        return ""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


@cache
def templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["percent"] = _percent
    env.filters["when"] = _when
    return Jinja2Templates(env=env)


class Person(Protocol):
    """Who a page is shown to: a user row, or what a refused page kept of it."""

    @property
    def username(self) -> str: ...

    @property
    def role(self) -> str: ...


def is_reviewer(user: Person | None) -> bool:
    return user is not None and Role(user.role) in (Role.REVIEWER, Role.ADMIN)


def is_admin(user: Person | None) -> bool:
    return user is not None and Role(user.role) == Role.ADMIN


def render(
    request: Request,
    template: str,
    user: Person | None,
    status_code: int = 200,
    /,
    **context: Any,
) -> HTMLResponse:
    """A page, with a CSRF token for its forms (and the nonce cookie it is bound to)."""
    nonce = web_session.nonce(request)
    csrf = web_session.csrf_token(request, nonce, request.cookies.get(web_session.SESSION_COOKIE))
    lang = language(request)
    values: dict[str, Any] = {
        "user": user,
        "is_reviewer": is_reviewer(user),
        "is_admin": is_admin(user),
        "lang": lang,
        "_": translator(lang),
        # product types named in the page's language
        "name": category_namer(request.app.state.catalog, lang),
        "here": request.url.path,
        "csrf": csrf,
        "error": None,
        "notice": None,
        "nav": None,
        **context,
    }
    response = templates().TemplateResponse(
        request, template, values, status_code=status_code, headers=SECURITY_HEADERS
    )
    web_session.keep_nonce(request, response, nonce)
    return response


def redirect(url: str) -> RedirectResponse:
    """After a form post (so that reloading does not post again) or to the login page."""
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)
