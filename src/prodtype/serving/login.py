"""Logging in, for the API and the web page alike: throttled, and failures kept in the audit log."""

from __future__ import annotations

from sqlalchemy.orm import Session

from prodtype.db.tables import User
from prodtype.serving import audit, users
from prodtype.serving.throttle import LoginThrottle
from prodtype.serving.users import LoginFailedError


def _loggable(value: str) -> str:
    # Whatever a client sent as a username, as an audit entity id: no NUL (PostgreSQL), at most 64 chars.
    return value.replace("\x00", "\ufffd")[:64] or "(empty)"


def log_in(session: Session, throttle: LoginThrottle, username: str, password: str, address: str) -> User:
    """The user with these credentials; :class:`TooManyRequestsError` while this username or address has
    too many recent failures (before any password is checked); :class:`LoginFailedError` otherwise."""
    throttle.check(username, address)
    try:
        return users.authenticate(session, username, password)
    except LoginFailedError as exc:
        throttle.failed(username, address)
        details = {"address": address[:64], "reason": exc.reason}
        audit.record(session, "auth.login_failed", "user", _loggable(username), None, details)
        session.commit()
        raise
