"""Logging in (the OAuth2 password flow) and out (every token of the account stops working)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from prodtype.api.deps import CurrentUser, LoginForm
from prodtype.api.schemas import ErrorPublic, Token
from prodtype.serving import login as login_service
from prodtype.serving import users
from prodtype.serving.deps import SessionDep, SettingsDep
from prodtype.serving.security import create_access_token

router = APIRouter(prefix="/auth", tags=["auth"])


def client_address(request: Request) -> str:
    """The caller's address (the proxy's X-Forwarded-For when uvicorn trusts it: FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


@router.post(
    "/token",
    responses={
        401: {"model": ErrorPublic, "description": "Wrong username or password, or a disabled account"},
        415: {"model": ErrorPublic, "description": "Not a form"},
        422: {"model": ErrorPublic, "description": "A field is missing"},
        429: {
            "model": ErrorPublic,
            "description": "Too many failed logins for this account or address; see Retry-After",
            "headers": {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
        },
        503: {"model": ErrorPublic, "description": "The login throttle's store is unavailable"},
    },
)
def login(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    _form: LoginForm,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    """Exchange a username and password (form fields) for a bearer token."""
    user = login_service.log_in(
        session, request.app.state.login_throttle, form.username, form.password, client_address(request)
    )
    lifetime = timedelta(minutes=settings.token_lifetime_minutes)
    token = create_access_token(user.username, request.app.state.jwt_secret, lifetime, user.token_version)
    response.headers["Cache-Control"] = "no-store"  # a bearer token must not sit in any cache
    response.headers["Pragma"] = "no-cache"
    return Token(access_token=token.token, expires_in=int(lifetime.total_seconds()))


@router.post(
    "/logout",
    status_code=204,
    response_class=Response,
    responses={401: {"model": ErrorPublic, "description": "Not authenticated"}},
)
def logout(session: SessionDep, user: CurrentUser) -> Response:
    """Log out everywhere: every token issued to you so far (API and web page) stops working."""
    users.revoke_tokens(session, user.username, user, why="logout")
    return Response(status_code=204)
