"""Login throttling: failed logins counted per username and per client address, with the ``limits``
library's fixed-window strategy.

Each username and each address has several windows (by default 5 failures a minute, 20 an hour, 100 a
day for a username): when one is used up, further attempts answer 429 with ``Retry-After`` (the time until
that window ends) before any password is checked, so a flood costs no argon2 hash. Going on after the
first windows reset uses up the longer ones: the delay grows from a minute to an hour to a day.

The counters must be shared by every worker process: they live in the service's database (the
``rate_limits`` table, through :class:`DatabaseStorage`, an implementation of ``limits``' storage
interface) unless ``PRODTYPE_RATE_LIMIT_STORAGE`` names another ``limits`` storage (``redis://host:6379``,
``memory://`` for a single process).
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from sqlalchemy import Engine, case, delete, select
from sqlalchemy.exc import SQLAlchemyError

from prodtype.db.tables import RateLimitCounter
from prodtype.serving.errors import ServiceUnavailableError, TooManyRequestsError

log = logging.getLogger(__name__)

DATABASE = "database"
_PURGE_EVERY = 200  # expired counters are deleted every this many increments


class DatabaseStorage(Storage):
    """``limits`` storage in the service's own database (SQLite or PostgreSQL): one row per key and
    window, incremented atomically by an upsert, so that every worker process sees the same counts."""

    STORAGE_SCHEME = None

    def __init__(self, engine: Engine, **options: Any) -> None:
        super().__init__(None, **options)
        self.engine = engine
        self._increments = 0

    @property
    def base_exceptions(self) -> type[Exception]:
        return SQLAlchemyError

    def _insert(self) -> Any:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(RateLimitCounter)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(RateLimitCounter)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        row = RateLimitCounter
        expired = row.expires_at <= now
        statement = (
            self._insert()
            .values(key=key, count=amount, expires_at=now + expiry)
            .on_conflict_do_update(
                index_elements=[row.key],
                set_={
                    # a window that has ended starts again from this hit
                    "count": case((expired, amount), else_=row.count + amount),
                    "expires_at": case((expired, now + expiry), else_=row.expires_at),
                },
            )
            .returning(row.count)
        )
        with self.engine.begin() as conn:
            count = int(conn.execute(statement).scalar_one())
            self._increments += 1
            if self._increments % _PURGE_EVERY == 0:
                conn.execute(delete(row).where(row.expires_at <= now))
        return count

    def _row(self, key: str) -> tuple[int, float] | None:
        row = RateLimitCounter
        with self.engine.connect() as conn:
            found = conn.execute(
                select(row.count, row.expires_at).where(row.key == key, row.expires_at > time.time())
            ).first()
        return (int(found[0]), float(found[1])) if found is not None else None

    def get(self, key: str) -> int:
        row = self._row(key)
        return row[0] if row else 0

    def get_expiry(self, key: str) -> float:
        row = self._row(key)
        return row[1] if row else time.time()

    def check(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(select(1))
        except SQLAlchemyError:
            return False
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as conn:
            return int(conn.execute(delete(RateLimitCounter)).rowcount)

    def clear(self, key: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(RateLimitCounter).where(RateLimitCounter.key == key))


def make_storage(uri: str, engine: Engine) -> Storage:
    if uri == DATABASE:
        return DatabaseStorage(engine)
    storage = storage_from_string(uri)
    assert isinstance(storage, Storage), f"{uri!r} is an asynchronous storage"
    return storage


def _key(value: str) -> str:
    # Bounded, printable keys whatever the client sent as a username.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True)
class _Scope:
    name: str
    items: tuple[RateLimitItem, ...]


class LoginThrottle:
    def __init__(self, storage: Storage, per_username: str, per_address: str) -> None:
        self.storage = storage
        self.limiter = FixedWindowRateLimiter(storage)
        self.username = _Scope("login-failures-username", tuple(parse_many(per_username)))
        self.address = _Scope("login-failures-address", tuple(parse_many(per_address)))

    def _targets(self, username: str, address: str) -> list[tuple[RateLimitItem, str, str]]:
        return [(item, self.username.name, _key(username)) for item in self.username.items] + [
            (item, self.address.name, _key(address)) for item in self.address.items
        ]

    def check(self, username: str, address: str) -> None:
        """Raise :class:`TooManyRequestsError` (with the seconds to wait) when ``username`` or ``address``
        has used up a window of failed logins; cheap, and before any password is verified."""
        waits = []
        try:
            for item, scope, key in self._targets(username, address):
                if not self.limiter.test(item, scope, key):
                    reset = self.limiter.get_window_stats(item, scope, key).reset_time
                    waits.append(max(1, math.ceil(reset - time.time())))
        except Exception as exc:
            # Closed rather than open: without its counters the throttle could not stop a guessing attack.
            log.error("login throttle storage unavailable: %s", exc)
            raise ServiceUnavailableError("logging in is unavailable right now; try again shortly") from exc
        if waits:
            wait = max(waits)
            raise TooManyRequestsError(
                f"too many failed logins for this account or from this address; try again in {wait} s",
                retry_after=wait,
            )

    def failed(self, username: str, address: str) -> None:
        """Count a failed login against ``username`` and ``address``."""
        try:
            for item, scope, key in self._targets(username, address):
                self.limiter.hit(item, scope, key)
        except Exception as exc:
            log.error("login throttle storage unavailable, a failed login was not counted: %s", exc)
