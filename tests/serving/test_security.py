"""Passwords and access tokens."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from prodtype.serving.errors import AuthenticationError
from prodtype.serving.security import (
    create_access_token,
    decode_access_token,
    hash_password,
    verify_password,
)

SECRET = "s" * 64


def test_password_hash_is_argon2_and_verifies() -> None:
    h = hash_password("hunter2hunter2")
    assert h.startswith("$argon2id$")
    assert "hunter2" not in h
    assert verify_password(h, "hunter2hunter2")
    assert not verify_password(h, "hunter2hunter3")
    assert not verify_password("not a hash", "hunter2hunter2")


def test_token_round_trip() -> None:
    token = create_access_token("carl", SECRET, timedelta(minutes=5))
    assert decode_access_token(token.token, SECRET) == "carl"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (create_access_token("carl", SECRET, timedelta(seconds=-1)).token, "expired"),
        (create_access_token("carl", "another secret" * 4, timedelta(minutes=5)).token, "not valid"),
        ("not.a.token", "not valid"),
        ("", "not valid"),
        (jwt.encode({"sub": "carl"}, SECRET, algorithm="HS256"), "not valid"),  # no expiry
        (jwt.encode({"sub": "carl", "exp": 4e9, "iat": 0, "typ": "refresh"}, SECRET), "not an access token"),
        (jwt.encode({"sub": "carl", "exp": 4e9, "iat": 0}, SECRET, algorithm="HS512"), "not valid"),
    ],
    ids=["expired", "other-secret", "garbage", "empty", "no-exp", "wrong-type", "other-algorithm"],
)
def test_bad_tokens_are_refused_with_a_reason(token: str, message: str) -> None:
    with pytest.raises(AuthenticationError, match=message):
        decode_access_token(token, SECRET)


def test_unsigned_token_is_refused() -> None:
    token = jwt.encode({"sub": "admin", "exp": 4e9, "iat": 0, "typ": "access"}, key=None, algorithm="none")
    with pytest.raises(AuthenticationError):
        decode_access_token(token, SECRET)
