"""Logging in: the OAuth2 password flow."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from prodtype.api.deps import LoginForm, SessionDep, SettingsDep
from prodtype.api.schemas import ErrorPublic, Token
from prodtype.services import users
from prodtype.services.security import create_access_token

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", responses={401: {"model": ErrorPublic}, 422: {"model": ErrorPublic}})
def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    _form: LoginForm,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
) -> Token:
    """Exchange a username and password (form fields) for a bearer token."""
    user = users.authenticate(session, form.username, form.password)
    lifetime = timedelta(minutes=settings.token_lifetime_minutes)
    token = create_access_token(user.username, request.app.state.jwt_secret, lifetime)
    return Token(access_token=token.token, expires_in=int(lifetime.total_seconds()))
