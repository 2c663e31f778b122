"""Who may open a page, as FastAPI dependencies: ``PageUser`` (signed in), ``PageReviewer`` and
``PageAdmin``. A visitor without a session is sent to the login page; a user whose role does not allow
the page gets a 403 page saying so. (The API's equivalents, which answer 401/403 in JSON, are in
:mod:`prodtype.api.deps`.)"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from prodtype.db.tables import Role, User
from prodtype.serving.deps import SessionDep
from prodtype.web.session import viewer


class LoginRequiredError(Exception):
    """No valid session: the page answers with a redirect to the login page."""


class PageForbiddenError(Exception):
    """Signed in, but the role does not allow the page: a 403 page."""

    def __init__(self, user: User, allowed: frozenset[Role]) -> None:
        super().__init__(user.username)
        # what the 403 page shows, copied: the user's row is detached once the request's session closes
        self.user = Signed(user.username, user.role)
        self.allowed = allowed


@dataclass(frozen=True)
class Signed:
    username: str
    role: str


def page_user(request: Request, session: SessionDep) -> User:
    user = viewer(request, session)
    if user is None:
        raise LoginRequiredError()
    return user


def page_role(*roles: Role) -> Any:
    """A dependency admitting signed-in users with one of ``roles`` (admins always)."""
    allowed = frozenset({Role.ADMIN, *roles})

    def check(user: Annotated[User, Depends(page_user)]) -> User:
        if Role(user.role) not in allowed:
            raise PageForbiddenError(user, allowed)
        return user

    setattr(check, "prodtype_roles", allowed)  # noqa: B010 (for readers of the route table)
    return Depends(check)


PageUser = Annotated[User, Depends(page_user)]
PageReviewer = Annotated[User, page_role(Role.REVIEWER)]
PageAdmin = Annotated[User, page_role(Role.ADMIN)]
