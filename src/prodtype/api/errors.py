"""Every error the API can answer, as JSON (the status of a service error comes from
:data:`prodtype.serving.errors.STATUS_BY_ERROR`):
``{"detail": "what was wrong", "errors": [...]}`` (``errors`` only for field validation)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from prodtype.serving.errors import (
    ServiceError,
    TooManyRequestsError,
    status_for,
)

log = logging.getLogger(__name__)

_BEARER = {"WWW-Authenticate": "Bearer"}


def error_response(status: int, detail: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=_BEARER if status == 401 else None)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    response = error_response(status_for(exc), str(exc))
    if isinstance(exc, TooManyRequestsError):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    if loc and loc[0] == "body" and len(loc) == 2 and isinstance(loc[1], int):
        return "body"  # a JSON decode error's position, not a field
    return ".".join(parts) or "body"


def describe_validation_errors(errors: list[dict[str, Any]]) -> str:
    """One sentence per problem: 'designation is required', 'limit: Input should be ≤ 100'."""
    messages = []
    for err in errors:
        kind, loc = err.get("type", ""), err.get("loc", ())
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            position = loc[1] if len(loc) > 1 else "?"
            problem = ctx.get("error", "decode error")
            messages.append(f"the body is not valid JSON ({problem} at position {position})")
        elif kind == "missing":
            messages.append(f"{_field(loc)} is required")
        elif kind == "model_attributes_type" or (kind.endswith("_type") and _field(loc) == "body"):
            messages.append("the body must be a JSON object")
        else:
            messages.append(f"{_field(loc)}: {err.get('msg', 'invalid value')}")
    return "; ".join(messages) or "invalid request"


def _json_expected(request: Request, errors: list[dict[str, Any]]) -> bool:
    """A JSON endpoint got another content type: FastAPI then sees the body as not an object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_json = content_type == "application/json" or content_type.endswith("+json")
    return not is_json and any(
        e.get("type") == "model_attributes_type" and tuple(e.get("loc", ())) == ("body",) for e in errors
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = list(exc.errors())
    if _json_expected(request, raw):
        content_type = request.headers.get("content-type") or "none"
        return error_response(
            415, f"this endpoint takes a JSON body (Content-Type: application/json); got {content_type!r}"
        )
    errors = [
        {"field": _field(e.get("loc", ())), "message": e.get("msg", ""), "type": e.get("type", "")}
        for e in raw
    ]
    return error_response(422, describe_validation_errors(raw), jsonable_encoder(errors))


_HTTP_DETAILS = {
    404: "no such endpoint; the API lives under /api/v1 (see /docs)",
    413: "the request body is larger than the upload limit",
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    detail = exc.detail
    if exc.status_code == 413 and detail == "Content Too Large":
        limit = request.app.state.settings.upload_limit_bytes
        detail = f"the request body is larger than allowed: images may be at most {limit} bytes"
    elif exc.status_code == 404 and detail == "Not Found":
        detail = _HTTP_DETAILS[404]
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        detail = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed or 'none'}"
    elif exc.status_code == 400 and detail == "There was an error parsing the body":
        detail = (
            "the request body cannot be parsed: send valid multipart/form-data, a form or JSON as documented"
        )
    response = error_response(exc.status_code, str(detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _out_of_range(_request: Request, exc: Exception) -> JSONResponse:
    # A value the validation let through but the database cannot hold (e.g. an integer over 64 bits).
    log.warning("value out of range for the database: %s", exc)
    return error_response(422, "a value in the request is out of range for the database")


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    log.error("database error: %s", exc)
    return error_response(503, "the database is unavailable; try again shortly")


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return error_response(500, "internal error; it has been logged")


def register_exception_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(DataError, _out_of_range)
    app.add_exception_handler(OverflowError, _out_of_range)
    app.add_exception_handler(Exception, _unexpected)
