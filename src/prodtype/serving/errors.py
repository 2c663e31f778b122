"""Domain errors raised by the services, and the one table mapping each to the HTTP status that the API and
the pages answer (:func:`status_for`); the CLI prints the message. Messages say what was wrong and what
was expected.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class; ``str(exc)`` is the message shown to the user."""


class InvalidInputError(ServiceError, ValueError):
    """A value the caller sent cannot be used (an unknown code, an empty title…)."""


class NotFoundError(ServiceError, LookupError):
    """No such record, or not one the caller may see."""


class ConflictError(ServiceError):
    """The request contradicts the current state (already reviewed, username taken)."""


class AuthenticationError(ServiceError):
    """No valid credentials: missing, wrong, expired or for a disabled account."""


class PermissionDeniedError(ServiceError):
    """Authenticated, but the role does not allow this action."""


class PayloadTooLargeError(ServiceError):
    """An upload over the configured limit."""


class UnsupportedMediaTypeError(ServiceError):
    """A request or upload with a content type the endpoint does not accept."""


class ModelUnavailableError(ServiceError):
    """No model is loaded, so nothing can be predicted."""


class TooManyRequestsError(ServiceError):
    """Too many attempts (failed logins): ``retry_after`` seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ServiceUnavailableError(ServiceError):
    """A part the request needs (a store, a queue) is unavailable for now."""


# Every error mapped to the HTTP status the API and the pages answer, in this one place.
STATUS_BY_ERROR: dict[type[ServiceError], int] = {
    InvalidInputError: 422,
    NotFoundError: 404,
    ConflictError: 409,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    ModelUnavailableError: 503,
    TooManyRequestsError: 429,
    ServiceUnavailableError: 503,
}


def status_for(exc: ServiceError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 400
