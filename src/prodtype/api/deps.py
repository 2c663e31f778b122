"""The API's dependencies as ``Annotated`` aliases: the caller, role checks, the form checks. What the app
holds (session, settings, store, catalogue, model) is in :mod:`prodtype.serving.deps`, shared with the pages;
tests can swap any of these with ``app.dependency_overrides``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from prodtype.api.guards import CLAIMS_STATE
from prodtype.db.tables import Role, User
from prodtype.serving import users
from prodtype.serving.deps import SessionDep
from prodtype.serving.errors import (
    AuthenticationError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
)
from prodtype.serving.security import decode_token

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 (a URL, not a secret)
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def get_current_user(
    request: Request, session: SessionDep, token: Annotated[str | None, Depends(_bearer)]
) -> User:
    if not token:
        raise AuthenticationError(
            f"not authenticated: send 'Authorization: Bearer <token>' with a token from POST {TOKEN_URL}"
        )
    decoded = getattr(request.state, CLAIMS_STATE, None)  # by AuthenticateFirst, for requests with a body
    claims = (
        decoded[1] if decoded and decoded[0] == token else decode_token(token, request.app.state.jwt_secret)
    )
    return users.active_user(session, claims.username, claims.version)


CurrentUser = Annotated[User, Depends(get_current_user)]


def require_role(*roles: Role) -> Any:
    """A dependency admitting the given roles; admins are always admitted."""
    allowed = {Role.ADMIN, *roles}

    def check(user: CurrentUser) -> User:
        if Role(user.role) not in allowed:
            names = " or ".join(sorted(r.value for r in allowed))
            raise PermissionDeniedError(
                f"this action needs the role {names}; {user.username!r} is {user.role}"
            )
        return user

    setattr(check, "prodtype_roles", allowed)  # noqa: B010 (read by prodtype.api.openapi)
    return Depends(check)


ReviewerUser = Annotated[User, require_role(Role.REVIEWER)]
AdminUser = Annotated[User, require_role(Role.ADMIN)]


def require_form(expected: str) -> Any:
    """Refuse bodies that are not forms (e.g. JSON sent to a form endpoint) with a 415 saying what to send."""

    async def check(request: Request) -> None:
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            shown = repr(content_type) if content_type else "none"
            raise UnsupportedMediaTypeError(
                f"this endpoint takes {expected}; the request's content type is {shown}"
            )

    return Depends(check)


PredictionForm = Annotated[
    None, require_form("multipart/form-data with the fields designation, description and image")
]
LoginForm = Annotated[
    None, require_form("a form (application/x-www-form-urlencoded) with the fields username and password")
]
