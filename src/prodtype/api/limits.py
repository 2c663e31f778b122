"""The request body limit, answered in the API's JSON error format.

FastAPI's own ``max_body_size`` answers a declared oversize body in plain text from outside the app's
exception handlers; this middleware refuses it first, as JSON, and caps bodies sent without a length.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from prodtype.api.errors import error_response


class RequestSizeLimit:
    def __init__(self, app: ASGIApp, max_body_bytes: int, upload_limit_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.upload_limit_bytes = upload_limit_bytes

    def _message(self, size: str) -> str:
        return (
            f"the request body is {size}; at most {self.max_body_bytes} bytes are accepted "
            f"(images may be at most {self.upload_limit_bytes} bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            if not (declared.strip().isascii() and declared.strip().isdigit()):
                await error_response(400, f"invalid Content-Length header {declared!r}")(scope, receive, send)
                return
            if int(declared) > self.max_body_bytes:
                await error_response(413, self._message(f"{int(declared)} bytes"))(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # FastAPI lets an HTTPException raised while reading the body through to the handlers.
                    raise HTTPException(413, self._message(f"over {self.max_body_bytes} bytes"))
            return message

        await self.app(scope, limited, send)
