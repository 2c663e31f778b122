"""Two cheap ASGI guards in front of the API: no body is read for a caller who is not authenticated, and
every response says ``X-Content-Type-Options: nosniff``.

FastAPI parses a multipart or form body before it runs a route's dependencies (authentication among
them): an anonymous caller could make the service read and parse a large form, and would get the parser's
400 instead of 401. :class:`AuthenticateFirst` checks the bearer token's signature and expiry (a JWT
decode, some microseconds, no database) before the body is read; the route's own dependency then checks
the user and the token's version as always.
"""

from __future__ import annotations

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prodtype.api.errors import error_response
from prodtype.serving.errors import AuthenticationError
from prodtype.serving.security import decode_token

API_PREFIX = "/api/v1/"
# Routes that read a body without a token.
PUBLIC_WITH_BODY = frozenset({"/api/v1/auth/token"})
CLAIMS_STATE = "prodtype_token_claims"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
TOKEN_HINT = "send 'Authorization: Bearer <token>' with a token from POST /api/v1/auth/token"  # noqa: S105 (a message, not a secret)


class AuthenticateFirst:
    def __init__(self, app: ASGIApp, jwt_secret: str) -> None:
        self.app = app
        self.jwt_secret = jwt_secret

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if not path.startswith(API_PREFIX) or path.rstrip("/") in PUBLIC_WITH_BODY:
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            await error_response(401, f"not authenticated: {TOKEN_HINT}")(scope, receive, send)
            return
        try:
            claims = decode_token(token.strip(), self.jwt_secret)
        except AuthenticationError as exc:
            await error_response(401, str(exc))(scope, receive, send)
            return
        # Decoded once: the route's dependency reuses the claims of this same token.
        scope.setdefault("state", {})[CLAIMS_STATE] = (token.strip(), claims)
        await self.app(scope, receive, send)


class NoSniff:
    """``X-Content-Type-Options: nosniff`` on every response: a browser never guesses a type (e.g. runs
    an uploaded file or an error body as HTML or script)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "x-content-type-options" not in headers:
                    headers.append("X-Content-Type-Options", "nosniff")
            await send(message)

        await self.app(scope, receive, send_with_header)
