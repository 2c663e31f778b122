"""Domain errors raised by the services. The API maps each class to one HTTP status in one place
(:mod:`prodtype.api.errors`); the CLI prints the message. Messages say what was wrong and what was expected.
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
