"""Password hashing (argon2) and access tokens (JWT, HS256)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from prodtype.serving.errors import AuthenticationError

JWT_ALGORITHM = "HS256"
TOKEN_TYPE = "access"  # noqa: S105 (a claim value, not a secret)

# OWASP's recommended argon2id setting (19 MiB, 2 passes, 1 lane): ~50 ms per login on one core, where the
# library default (64 MiB, 3 passes, 4 lanes) takes several times that on a small server. Hashes made with
# other parameters still verify and are upgraded at the next login (see users.authenticate).
_hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def dummy_hash() -> str:
    """A hash to verify against when the user does not exist, so that both cases take the same time."""
    return _hasher.hash("not a password anyone has: timing equaliser")


@dataclass(frozen=True)
class AccessToken:
    token: str
    expires_at: datetime


@dataclass(frozen=True)
class TokenClaims:
    username: str
    version: int  # the user's token version when the token was issued (see User.token_version)


def create_access_token(username: str, secret: str, lifetime: timedelta, version: int = 0) -> AccessToken:
    now = datetime.now(UTC)
    expires = now + lifetime
    claims = {"sub": username, "iat": now, "exp": expires, "typ": TOKEN_TYPE, "ver": version}
    return AccessToken(jwt.encode(claims, secret, algorithm=JWT_ALGORITHM), expires)


def decode_access_token(token: str, secret: str) -> str:
    """The username in a valid token; :class:`AuthenticationError` saying why otherwise."""
    return decode_token(token, secret).username


def decode_token(token: str, secret: str) -> TokenClaims:
    """The claims of a valid token (signature, expiry, type); :class:`AuthenticationError` saying why
    otherwise. Whether it was revoked since is for :func:`prodtype.serving.users.active_user`."""
    try:
        claims = jwt.decode(
            token, secret, algorithms=[JWT_ALGORITHM], options={"require": ["sub", "exp", "iat"]}
        )
    except jwt.ExpiredSignatureError:
        raise AuthenticationError(
            "the access token has expired; log in again at /api/v1/auth/token"
        ) from None
    except jwt.InvalidTokenError:
        raise AuthenticationError(
            "the access token is not valid (malformed, or not signed by this server)"
        ) from None
    if claims.get("typ") != TOKEN_TYPE or not isinstance(claims.get("sub"), str):
        raise AuthenticationError("the access token is not valid (not an access token)")
    version = claims.get("ver", 0)  # tokens issued before revocation existed carry none: version 0
    if not isinstance(version, int) or isinstance(version, bool):
        raise AuthenticationError("the access token is not valid (bad version claim)")
    return TokenClaims(str(claims["sub"]), version)
