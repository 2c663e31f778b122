"""The web page's login session and CSRF protection.

The session is the API's own access token (the same JWT, the same secret and lifetime), kept in an
``HttpOnly; SameSite=Strict`` cookie: page scripts cannot read it, so an injected script could not steal it,
and browsers do not send it with requests started by other sites.

Form posts also carry a CSRF token: an HMAC of a random per-browser nonce (its own cookie) and of the
session token, under a key derived from the JWT secret. A forged form has neither; a token copied from
another browser or another session does not match (a signed double-submit token bound to the session).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta

from fastapi import Request, Response
from sqlalchemy.orm import Session

from prodtype.config import Settings
from prodtype.db.tables import User
from prodtype.serving import users
from prodtype.serving.errors import AuthenticationError
from prodtype.serving.security import create_access_token, decode_token

SESSION_COOKIE = "prodtype_session"
NONCE_COOKIE = "prodtype_csrf"
CSRF_FIELD = "csrf_token"


class CsrfError(Exception):
    """A form post without a valid CSRF token."""


def _secure(request: Request, settings: Settings) -> bool:
    # Secure cookies need HTTPS; production is meant to be served behind it.
    return request.url.scheme == "https" or settings.environment == "production"


def _set_cookie(response: Response, request: Request, name: str, value: str, max_age: int | None) -> None:
    settings: Settings = request.app.state.settings
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request, settings),
    )


def viewer(request: Request, session: Session) -> User | None:
    """The logged-in user, or None when the cookie is missing, expired, invalid or names a disabled user."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    try:
        claims = decode_token(token, request.app.state.jwt_secret)
        return users.active_user(session, claims.username, claims.version)
    except AuthenticationError:
        return None


def log_in(request: Request, response: Response, user: User) -> str:
    """Put a fresh access token for ``user`` in the session cookie; returns the token."""
    settings: Settings = request.app.state.settings
    lifetime = timedelta(minutes=settings.token_lifetime_minutes)
    token = create_access_token(user.username, request.app.state.jwt_secret, lifetime, user.token_version)
    _set_cookie(response, request, SESSION_COOKIE, token.token, int(lifetime.total_seconds()))
    return token.token


def log_out(request: Request, response: Response, session: Session) -> None:
    """Drop the cookie and revoke the session's token (and every other token of its user), so that a copy
    of the cookie taken before is worth nothing either."""
    user = viewer(request, session)
    if user is not None:
        users.revoke_tokens(session, user.username, user, why="web logout")
    settings: Settings = request.app.state.settings
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request, settings)
    )


def nonce(request: Request) -> str:
    """This browser's CSRF nonce: the cookie's, or a new one (set it with :func:`keep_nonce`)."""
    existing = request.cookies.get(NONCE_COOKIE, "")
    if len(existing) == 43 and existing.replace("-", "").replace("_", "").isalnum():
        return existing
    return secrets.token_urlsafe(32)  # 43 characters


def keep_nonce(request: Request, response: Response, value: str) -> None:
    if request.cookies.get(NONCE_COOKIE) != value:
        _set_cookie(response, request, NONCE_COOKIE, value, None)


def csrf_token(request: Request, nonce_value: str, session_token: str | None) -> str:
    secret: str = request.app.state.jwt_secret
    key = hmac.new(secret.encode(), b"prodtype web csrf", hashlib.sha256).digest()
    message = f"{nonce_value}|{session_token or ''}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def check_csrf(request: Request, sent: str, session_token: str | None = None) -> None:
    """Refuse a form post whose token does not match this browser's nonce and session."""
    value = request.cookies.get(NONCE_COOKIE)
    if not value:
        raise CsrfError(
            "this form was sent without the page's security cookie: allow cookies for this site, "
            "reload the page and try again"
        )
    if session_token is None:
        session_token = request.cookies.get(SESSION_COOKIE)
    expected = csrf_token(request, value, session_token)
    if not hmac.compare_digest(expected, sent or ""):
        raise CsrfError(
            "this form has expired or did not come from this site's page; reload the page and try again"
        )
