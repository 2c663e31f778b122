"""Dependencies as ``Annotated`` aliases: the session, the caller, role checks, the model.

Everything the app holds lives on ``app.state`` (set by :func:`prodtype.app.create_app`); tests can
swap any of these with ``app.dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

from prodtype.api.guards import CLAIMS_STATE
from prodtype.api.metrics import instrument
from prodtype.catalog import Catalog
from prodtype.config import Settings
from prodtype.db.engine import session_scope
from prodtype.db.tables import Role, User
from prodtype.ml.predictor import Predictor
from prodtype.serving import users
from prodtype.serving.batching import BatchedPredictor
from prodtype.serving.errors import (
    AuthenticationError,
    PermissionDeniedError,
    UnsupportedMediaTypeError,
)
from prodtype.serving.model_holder import ModelHolder
from prodtype.serving.security import decode_token
from prodtype.serving.storage import ImageStore

TOKEN_URL = "/api/v1/auth/token"  # noqa: S105 (a URL, not a secret)
_bearer = OAuth2PasswordBearer(tokenUrl=TOKEN_URL, auto_error=False)


def get_session(request: Request) -> Iterator[Session]:
    with session_scope(request.app.state.sessions) as session:
        yield session


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_catalog(request: Request) -> Catalog:
    catalog: Catalog = request.app.state.catalog
    return catalog


async def get_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.store
    return store


async def get_model(request: Request) -> Predictor:
    """The served model: single predictions are batched with concurrent ones, and counted and timed for
    /metrics."""
    holder: ModelHolder = request.app.state.model_holder
    return instrument(request.app, BatchedPredictor(holder.get(), request.app.state.batcher))


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[Catalog, Depends(get_catalog)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
ModelDep = Annotated[Predictor, Depends(get_model)]


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
