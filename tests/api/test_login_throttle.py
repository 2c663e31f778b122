"""Failed logins are throttled per username and per client address (429 with Retry-After, then a longer
wait), recorded in the audit log, and counted in a store that every worker process shares."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from limits.storage import RedisStorage

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from prodtype.serving.throttle import DatabaseStorage, LoginThrottle, make_storage
from service_support.databases import PASSWORD

from .conftest import API, Headers

REDIS_URL = "redis://127.0.0.1:6379/0"


def attempt(client: TestClient, username: str, password: str) -> tuple[int, str, int | None]:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    retry_after = response.headers.get("retry-after")
    detail = response.json().get("detail", "") if response.status_code != 200 else ""
    return response.status_code, detail, int(retry_after) if retry_after is not None else None


def strict_app(settings: Settings, model_holder: ModelHolder, **limits: str) -> FastAPI:
    return create_app(settings.model_copy(update=limits), model_holder=model_holder)


@pytest.fixture
def strict(settings: Settings, model_holder: ModelHolder) -> Iterator[TestClient]:
    limits = {"login_limit_per_username": "3/minute;10/hour", "login_limit_per_address": "8/minute"}
    app = strict_app(settings, model_holder, **limits)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def admin_headers(client: TestClient) -> Headers:
    from datetime import timedelta

    from prodtype.serving.security import create_access_token

    token = create_access_token("admin", client.app.state.jwt_secret, timedelta(minutes=5))  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token.token}"}


def test_wrong_passwords_then_the_right_one_is_a_429_with_retry_after(strict: TestClient) -> None:
    for _ in range(3):
        assert attempt(strict, "carl", "not the password")[0] == 401
    status, detail, retry_after = attempt(strict, "carl", PASSWORD)
    assert status == 429 and "too many failed logins" in detail
    assert retry_after is not None and 1 <= retry_after <= 60
    # Another account from the same address is still welcome (until the address's own limit).
    assert attempt(strict, "cora", PASSWORD)[0] == 200
    # Failures are in the audit log, with the address and why; throttled attempts are not failures.
    audit = strict.get(f"{API}/audit", params={"entity_id": "carl"}, headers=admin_headers(strict))
    failed = [e for e in audit.json()["data"] if e["action"] == "auth.login_failed"]
    assert len(failed) == 3
    assert failed[0]["details"] == {"address": "testclient", "reason": "wrong password"}


def test_one_address_trying_many_names_is_throttled(strict: TestClient) -> None:
    for i in range(8):
        assert attempt(strict, f"guess{i}", "password123")[0] == 401
    status, _detail, retry_after = attempt(strict, "carl", PASSWORD)
    assert status == 429 and retry_after is not None
    audit = strict.get(f"{API}/audit", headers=admin_headers(strict)).json()["data"]
    assert {e["details"]["reason"] for e in audit if e["action"] == "auth.login_failed"} == {"unknown user"}


def test_the_wait_grows_when_the_failures_go_on(settings: Settings, model_holder: ModelHolder) -> None:
    app = strict_app(settings, model_holder, login_limit_per_username="2/4second;3/minute")
    with TestClient(app, raise_server_exceptions=False) as client:
        assert [attempt(client, "carl", "wrong")[0] for _ in range(2)] == [401, 401]
        first = attempt(client, "carl", "wrong")
        assert first[0] == 429 and first[2] is not None and first[2] <= 4
        deadline = time.monotonic() + 15
        while (status := attempt(client, "carl", PASSWORD)[0]) == 429:  # the right password, when allowed
            assert time.monotonic() < deadline, "the short window never reset"
            time.sleep(0.2)
        assert status == 200
        assert attempt(client, "carl", "wrong")[0] == 401  # the third failure this minute
        second = attempt(client, "carl", PASSWORD)
        assert second[0] == 429 and second[2] is not None and second[2] > 4  # now the minute's window


def test_workers_share_the_counts_in_the_database(settings: Settings, model_holder: ModelHolder) -> None:
    """Two apps on one database stand for two worker processes: failures seen by either count for both."""
    limits = {"login_limit_per_username": "4/minute"}
    one, two = strict_app(settings, model_holder, **limits), strict_app(settings, model_holder, **limits)
    assert isinstance(one.state.login_throttle.storage, DatabaseStorage)
    with TestClient(one) as a, TestClient(two) as b:
        for client in (a, b, a, b):
            assert attempt(client, "carl", "wrong")[0] == 401
        assert attempt(a, "carl", PASSWORD)[0] == 429
        assert attempt(b, "carl", PASSWORD)[0] == 429


def redis_unreachable() -> str | None:
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        return f"Redis at {REDIS_URL} is unreachable: {exc}"
    return None


def test_workers_share_the_counts_in_redis(settings: Settings, model_holder: ModelHolder) -> None:
    reason = redis_unreachable()
    if reason:
        pytest.skip(reason)
    assert isinstance(make_storage(REDIS_URL, None), RedisStorage)  # type: ignore[arg-type]
    # Each app gets its own storage object (as each worker would), on one Redis; a prefix of this test's
    # own keeps runs (and other engineers' runs on this Redis) apart.
    prefix = f"prodtype-test-{uuid.uuid4().hex}"
    apps = [strict_app(settings, model_holder) for _ in range(2)]
    for app in apps:
        storage = RedisStorage(REDIS_URL, key_prefix=prefix)
        app.state.login_throttle = LoginThrottle(storage, "4/minute", "50/minute")
    with TestClient(apps[0]) as a, TestClient(apps[1]) as b:
        for client in (a, b, a, b):
            assert attempt(client, "carl", "wrong")[0] == 401
        assert attempt(b, "carl", PASSWORD)[0] == 429
        assert attempt(a, "cora", PASSWORD)[0] == 200
    keys = redis.Redis.from_url(REDIS_URL).keys(f"{prefix}*")
    assert keys  # the counts really were in Redis
    redis.Redis.from_url(REDIS_URL).delete(*keys)


def test_an_unreachable_throttle_store_refuses_logins_rather_than_allowing_guessing(
    settings: Settings, model_holder: ModelHolder
) -> None:
    app = strict_app(settings, model_holder)
    app.state.login_throttle = LoginThrottle(RedisStorage("redis://127.0.0.1:1/0"), "5/minute", "20/minute")
    with TestClient(app, raise_server_exceptions=False) as client:
        status, detail, _ = attempt(client, "carl", PASSWORD)
    assert status == 503 and "unavailable" in detail


def test_bad_limit_settings_are_refused_with_what_to_write() -> None:
    with pytest.raises(ValueError, match="5/minute;20/hour;100/day"):
        Settings(_env_file=None, login_limit_per_username="five a minute")  # type: ignore[call-arg]
