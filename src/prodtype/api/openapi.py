"""The OpenAPI document, made true: every status code a route can answer, with the real error body.

FastAPI documents what a route declares, plus a 422 whose body (``HTTPValidationError``, a list of errors
under ``detail``) is not what this API answers (``{"detail": "...", "errors": [...]}``, see
:mod:`prodtype.api.errors`). The errors that come from the dependencies, the middleware and the exception
handlers (401 without a valid token, 403 for a role, 404 for an unknown id, 400/413/415 for a body that
cannot be read, 503 when the database is down) are added here from what each route depends on, so that a
client generated from the document, and the schema-driven fuzzer in the tests, see every answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from prodtype.api.deps import get_current_user
from prodtype.api.guards import PUBLIC_WITH_BODY

ERROR_REF = {"$ref": "#/components/schemas/ErrorPublic"}
_DESCRIPTIONS = {
    400: "The body cannot be read (malformed form or JSON, bad Content-Length)",
    401: "Not authenticated: no token, or one that is invalid, expired or revoked",
    403: "The role does not allow this",
    404: "No such record (or not one you may see)",
    413: "The body is larger than allowed",
    415: "A body of another content type than this endpoint takes",
    422: "Invalid input: `detail` says what, `errors` lists the fields",
    503: "The database (or another part the request needs) is unavailable; try again shortly",
}
_BODY_METHODS = {"post", "put", "patch"}


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _needs(route: APIRoute) -> tuple[bool, bool]:
    """(needs a signed-in user, needs a role)."""
    calls = list(_calls(route.dependant))
    return get_current_user in calls, any(getattr(c, "prodtype_roles", None) for c in calls)


def _ensure(responses: dict[str, Any], status: int, description: str | None = None) -> None:
    entry = responses.setdefault(str(status), {"description": description or _DESCRIPTIONS[status]})
    entry["content"] = {"application/json": {"schema": ERROR_REF}}
    if status == 401:
        entry["headers"] = {"WWW-Authenticate": {"description": "Bearer", "schema": {"type": "string"}}}


def document_errors(app: FastAPI, schema: dict[str, Any]) -> dict[str, Any]:
    routes = {
        (method.lower(), ctx.path): ctx.route
        for ctx in iter_route_contexts(app.routes)
        if isinstance(ctx.route, APIRoute)
        for method in ctx.methods or ()
    }
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((method, path))
            if route is None or not path.startswith("/api/v1/"):
                continue
            responses = operation.setdefault("responses", {})
            signed_in, role = _needs(route)
            # a DELETE may take a body too (e.g. the reason of DELETE /models/shadow)
            has_body = method in _BODY_METHODS or "requestBody" in operation
            if signed_in or (has_body and path not in PUBLIC_WITH_BODY):
                _ensure(responses, 401)
            if role:
                _ensure(responses, 403)
            if "{" in path:
                _ensure(responses, 404)
            if has_body:
                for status in (400, 413, 415):
                    _ensure(responses, status)
            if operation.get("parameters") or "requestBody" in operation:
                _ensure(responses, 422)
            if path != "/api/v1/health":
                _ensure(responses, 503)
            for status, entry in responses.items():
                if status.isdigit() and int(status) >= 400:
                    entry.setdefault("content", {"application/json": {"schema": ERROR_REF}})
                    if int(status) == 422:
                        entry["content"] = {"application/json": {"schema": ERROR_REF}}
    return schema


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            app.openapi_schema = document_errors(app, schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
