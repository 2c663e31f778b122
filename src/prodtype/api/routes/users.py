"""User accounts: the caller's own, and the admin's management of all."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from prodtype.api.deps import AdminUser, CurrentUser
from prodtype.api.schemas import ErrorPublic, UserCreate, UserPublic, UsersPublic, UserUpdate
from prodtype.serving import users
from prodtype.serving.deps import SessionDep

router = APIRouter(prefix="/users", tags=["users"])


@router.get("/me")
def read_me(user: CurrentUser) -> UserPublic:
    """The account the token belongs to."""
    return UserPublic.from_row(user)


CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorPublic, "description": "The name is taken, or the last admin would go"}
}


@router.post("", status_code=201, responses=CONFLICT)
def create_user(body: UserCreate, session: SessionDep, admin: AdminUser) -> UserPublic:
    """Create an account (admins only)."""
    user = users.create_user(session, body.username, body.password, body.role, actor=admin)
    return UserPublic.from_row(user)


@router.get("")
def list_users(
    session: SessionDep,
    _admin: AdminUser,
    offset: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> UsersPublic:
    """All accounts, by username (admins only)."""
    rows, count = users.list_users(session, offset, limit)
    return UsersPublic(data=[UserPublic.from_row(u) for u in rows], count=count)


@router.patch("/{username}", responses=CONFLICT)
def update_user(username: str, body: UserUpdate, session: SessionDep, admin: AdminUser) -> UserPublic:
    """Change an account's role, disable or enable it, or set its password (admins only)."""
    user = users.update_user(
        session, username, admin, role=body.role, disabled=body.disabled, password=body.password
    )
    return UserPublic.from_row(user)


@router.post("/{username}/logout", status_code=204, response_class=Response)
def log_out_user(username: str, session: SessionDep, admin: AdminUser) -> Response:
    """Log a user out everywhere: every token issued to them so far stops working (admins only)."""
    users.revoke_tokens(session, username, admin, why=f"logged out by {admin.username}")
    return Response(status_code=204)
