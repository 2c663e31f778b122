"""An ASGI guard in front of the pages' forms: a visitor without a valid session is sent to the login page
before the form is read (FastAPI parses a form before the page's dependencies run), as the page itself
would. The API's bearer-token guard is :class:`prodtype.api.guards.AuthenticateFirst`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from prodtype.serving.errors import AuthenticationError
from prodtype.serving.security import decode_token
from prodtype.web.render import SECURITY_HEADERS
from prodtype.web.session import SESSION_COOKIE

# Every page's form needs a session (the cookie holds the same token as the API's bearer), except these
# two, which answer a visitor without one themselves; the API has its own guard.
OPEN_FORMS = frozenset({"/login", "/logout"})
API_PATHS = "/api/"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class LoginBeforeForm:
    def __init__(self, app: ASGIApp, jwt_secret: str) -> None:
        self.app = app
        self.jwt_secret = jwt_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS:
            path = scope["path"]
            if not path.startswith(API_PATHS) and path not in OPEN_FORMS:
                token = Request(scope).cookies.get(SESSION_COOKIE, "")
                try:
                    decode_token(token, self.jwt_secret)
                except AuthenticationError:
                    # the pages' own headers, on their redirect
                    redirect = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
                    await redirect(scope, receive, send)
                    return
        await self.app(scope, receive, send)
