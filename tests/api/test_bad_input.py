"""Every kind of bad input gets a 4xx with a JSON body that says what was wrong; never a 500."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from service_support import images

from .conftest import API, Headers

Stored = Callable[[str], int]


def assert_error(response: Any, status: int, *phrases: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    detail = response.json()["detail"]
    for phrase in phrases:
        assert phrase in detail, f"{phrase!r} not in {detail!r}"


def post_product(client: TestClient, headers: Headers, image: bytes | None = None, **fields: Any) -> Any:
    files: dict[str, Any] = {k: (None, v) for k, v in fields.items()}
    if image is not None:
        files["image"] = ("photo.jpg", image, "image/jpeg")
    return client.post(f"{API}/predictions", files=files, headers=headers)


@pytest.mark.parametrize(
    ("fields", "phrase"),
    [
        ({}, "designation is required"),
        ({"designation": ""}, "designation is required"),
        ({"designation": "   "}, "designation is required"),
        ({"description": "only a description"}, "designation is required"),
        ({"designation": "x" * 1001}, "at most 1000"),
    ],
    ids=["missing", "empty", "blank", "description-only", "too-long"],
)
def test_designation_is_required(
    client: TestClient, auth: Callable[[str], Headers], fields: dict[str, str], phrase: str
) -> None:
    files = fields or {"description": ""}
    assert_error(post_product(client, auth("carl"), **files), 422, phrase)


@pytest.mark.parametrize("field", ["designation", "description"])
def test_nul_characters_are_refused_alike_on_both_databases(
    client: TestClient, auth: Callable[[str], Headers], field: str
) -> None:
    # PostgreSQL cannot store a NUL character in text; SQLite can. Refused before either is asked.
    fields = {"designation": "Verre à vin", "description": "Lot de 6", field: "Verre\x00 à vin"}
    response = post_product(client, auth("carl"), **fields)
    assert_error(response, 422, f"{field} contains a NUL character")
    assert client.get(f"{API}/predictions", headers=auth("carl")).json()["count"] == 0


@pytest.mark.parametrize(
    ("image", "status", "phrases"),
    [
        (images.not_an_image(), 422, ("not an image",)),
        (images.truncated_jpeg(), 422, ("corrupt or truncated",)),
        (images.corrupt_jpeg(), 422, ("corrupt",)),
        (images.bomb_png(), 422, ("pixels",)),
        (images.bomb_jpeg(), 422, ("pixels",)),
        (b"", 422, ("empty",)),
    ],
    ids=["not-an-image", "truncated-jpeg", "corrupt-jpeg", "bomb-png", "bomb-jpeg", "empty-file"],
)
def test_unusable_images(
    client: TestClient, auth: Callable[[str], Headers], image: bytes, status: int, phrases: tuple[str, ...]
) -> None:
    response = post_product(client, auth("carl"), image=image, designation="Mug blanc")
    assert_error(response, status, *phrases)
    listed = client.get(f"{API}/predictions", headers=auth("carl")).json()
    assert listed["count"] == 0  # nothing recorded


def test_image_over_the_limit_is_413(settings: Settings, model_holder: ModelHolder) -> None:
    small = settings.model_copy(update={"upload_limit_bytes": 200_000})
    app = create_app(small, model_holder=model_holder)
    with TestClient(app) as client:
        from prodtype.serving.security import create_access_token

        token = create_access_token("carl", app.state.jwt_secret, timedelta(minutes=5)).token
        headers = {"Authorization": f"Bearer {token}"}
        # Over the image limit, within the request allowance: refused after reading, with both sizes.
        response = post_product(client, headers, image=images.oversized_jpeg(200_001), designation="Mug")
        assert_error(response, 413, "200001 bytes", "limit is 200000")
        # Far over: refused while the body streams in, before it is all read.
        response = post_product(client, headers, image=images.oversized_jpeg(1_400_000), designation="Mug")
        assert_error(response, 413, "images may be at most 200000 bytes")
        assert post_product(client, headers, image=images.photo(), designation="Mug").status_code == 201


@pytest.mark.parametrize(
    ("kwargs", "phrase"),
    [
        ({"json": {"designation": "Mug"}}, "multipart/form-data"),
        ({"content": b"designation=Mug", "headers": {"content-type": "text/plain"}}, "'text/plain'"),
    ],
    ids=["json", "text"],
)
def test_predictions_need_a_form(
    client: TestClient, auth: Callable[[str], Headers], kwargs: dict[str, Any], phrase: str
) -> None:
    kwargs = dict(kwargs)  # the parameter is shared by both backends' runs
    headers = {**auth("carl"), **kwargs.pop("headers", {})}
    assert_error(client.post(f"{API}/predictions", headers=headers, **kwargs), 415, phrase)


def test_image_part_with_a_non_image_type(client: TestClient, auth: Callable[[str], Headers]) -> None:
    files = {"designation": (None, "Mug"), "image": ("notes.txt", b"hello", "text/plain")}
    response = client.post(f"{API}/predictions", files=files, headers=auth("carl"))
    assert_error(response, 415, "'text/plain'")


def test_json_endpoints_need_json(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Stored
) -> None:
    pid = stored_prediction("carl")
    response = client.post(
        f"{API}/predictions/{pid}/review", data={"decision": "accept"}, headers=auth("rita")
    )
    assert_error(response, 415, "application/json")
    response = client.post(f"{API}/auth/token", json={"username": "carl", "password": "x" * 10})
    assert_error(response, 415, "username and password")


@pytest.mark.parametrize(
    ("body", "phrase"),
    [
        (b'{"decision": "accept"', "not valid JSON"),
        (b"", "body is required"),
        (b"[1, 2]", "JSON object"),
        (b'{"decision": "maybe"}', "decision"),
        (b'{"decision": "accept", "prdtypecode": "abc"}', "prdtypecode"),
        (b'{"decision": "accept", "comment": "hi"}', "comment"),
        (b"{}", "decision is required"),
    ],
    ids=["truncated", "empty", "array", "bad-decision", "bad-code-type", "extra-field", "missing"],
)
def test_malformed_review_bodies(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Stored, body: bytes, phrase: str
) -> None:
    pid = stored_prediction("carl")
    headers = {**auth("rita"), "content-type": "application/json"}
    response = client.post(f"{API}/predictions/{pid}/review", content=body, headers=headers)
    assert_error(response, 422, phrase)
    assert client.get(f"{API}/predictions/{pid}", headers=auth("rita")).json()["status"] == "pending"


@pytest.mark.parametrize("code", [1234, 0, -10, 99999999999])
def test_unknown_product_type_code(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Stored, code: int
) -> None:
    pid = stored_prediction("carl")
    response = client.patch(f"{API}/predictions/{pid}", json={"prdtypecode": code}, headers=auth("rita"))
    assert_error(response, 422, f"unknown product type code {code}")
    response = client.post(
        f"{API}/predictions/{pid}/review",
        json={"decision": "accept", "prdtypecode": code},
        headers=auth("rita"),
    )
    assert_error(response, 422, f"unknown product type code {code}")


def test_reject_with_a_code(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Stored
) -> None:
    pid = stored_prediction("carl")
    response = client.post(
        f"{API}/predictions/{pid}/review",
        json={"decision": "reject", "prdtypecode": 10},
        headers=auth("rita"),
    )
    assert_error(response, 422, "takes no prdtypecode")


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    [
        ("GET", "", {}),
        ("GET", "/image", {}),
        ("PATCH", "", {"json": {"prdtypecode": 10}}),
        ("POST", "/review", {"json": {"decision": "accept"}}),
        ("DELETE", "", {}),
    ],
)
def test_unknown_prediction_id(
    client: TestClient, auth: Callable[[str], Headers], method: str, suffix: str, kwargs: dict[str, Any]
) -> None:
    response = client.request(method, f"{API}/predictions/424242{suffix}", headers=auth("admin"), **kwargs)
    assert_error(response, 404, "no prediction with id 424242")


def test_non_numeric_prediction_id(client: TestClient, auth: Callable[[str], Headers]) -> None:
    assert_error(client.get(f"{API}/predictions/abc", headers=auth("admin")), 422, "prediction_id")


def test_already_reviewed(
    client: TestClient, auth: Callable[[str], Headers], stored_prediction: Stored
) -> None:
    pid = stored_prediction("carl")
    url = f"{API}/predictions/{pid}/review"
    assert client.post(url, json={"decision": "reject"}, headers=auth("rita")).status_code == 200
    assert_error(client.post(url, json={"decision": "accept"}, headers=auth("rita")), 409, "already reviewed")


@pytest.mark.parametrize(
    ("params", "phrase"),
    [
        ({"limit": 1000}, "limit"),
        ({"offset": -1}, "offset"),
        ({"sort": "price"}, "sort"),
        ({"status": "done"}, "status"),
        ({"confidence_below": 2}, "confidence_below"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_after": "2026-02-01T00:00:00Z", "created_before": "2026-01-01T00:00:00Z"}, "earlier"),
        ({"prdtypecode": "ten"}, "prdtypecode"),
        ({"prdtypecode": 10**20}, "prdtypecode"),
        ({"offset": 10**20}, "offset"),
    ],
)
def test_bad_list_parameters(
    client: TestClient, auth: Callable[[str], Headers], params: dict[str, Any], phrase: str
) -> None:
    assert_error(client.get(f"{API}/predictions", params=params, headers=auth("rita")), 422, phrase)


@pytest.mark.parametrize(
    ("headers", "phrase"),
    [
        ({}, "not authenticated"),
        ({"Authorization": "Bearer "}, "not authenticated"),
        ({"Authorization": "Bearer not-a-jwt"}, "not valid"),
        ({"Authorization": "Basic Y2FybDpwYXNzd29yZA=="}, "not authenticated"),
    ],
    ids=["none", "empty-bearer", "garbage", "basic"],
)
def test_missing_or_bad_token(client: TestClient, headers: Headers, phrase: str) -> None:
    response = client.get(f"{API}/predictions", headers=headers)
    assert_error(response, 401, phrase)
    assert response.headers["www-authenticate"] == "Bearer"


def test_expired_token(client: TestClient, auth: Callable[[str], Headers]) -> None:
    response = client.get(f"{API}/predictions", headers=auth("carl", timedelta(seconds=-5)))
    assert_error(response, 401, "expired")


def test_token_signed_by_another_server(client: TestClient) -> None:
    from prodtype.serving.security import create_access_token

    forged = create_access_token("admin", "some-other-secret" * 4, timedelta(minutes=5)).token
    response = client.get(f"{API}/users", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "not valid")


def test_token_of_a_disabled_or_deleted_user(client: TestClient, auth: Callable[[str], Headers]) -> None:
    carl = auth("carl")
    assert (
        client.patch(f"{API}/users/carl", json={"disabled": True}, headers=auth("admin")).status_code == 200
    )
    assert_error(client.get(f"{API}/users/me", headers=carl), 401, "disabled")
    assert_error(client.get(f"{API}/users/me", headers=auth("ghost")), 401, "no longer exists")


def test_wrong_password_and_unknown_user_answer_alike(client: TestClient) -> None:
    wrong = client.post(f"{API}/auth/token", data={"username": "carl", "password": "not the password"})
    unknown = client.post(f"{API}/auth/token", data={"username": "nobody", "password": "not the password"})
    assert_error(wrong, 401, "incorrect username or password")
    assert wrong.json() == unknown.json()
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"


def test_unknown_route_and_method(client: TestClient) -> None:
    assert_error(client.get(f"{API}/nothing-here"), 404, "no such endpoint")
    assert_error(client.delete(f"{API}/health"), 405, "allowed: GET")


GARBAGE: list[dict[str, Any]] = [
    {"content": b"\x00\xff\xfe garbage", "headers": {"content-type": "application/json"}},
    {
        "content": b"--x\r\nnot really multipart",
        "headers": {"content-type": "multipart/form-data; boundary=x"},
    },
    {"content": b"a=%ZZ&&&==", "headers": {"content-type": "application/x-www-form-urlencoded"}},
    {"json": {"designation": ["a", "list"], "prdtypecode": {"nested": True}, "role": None}},
]
QUERY_GARBAGE = {"limit": "NaN", "offset": "1e99", "created_after": "9999-99-99"}
# What a route reads besides its path: a JSON body, a form, nothing (its query string at most: "list"
# routes validate one), and what it answers when what it reads is fine. The garbage bodies above then get:
# JSON routes: 400 unparsable, 415 not JSON (twice), 422 wrong fields; form routes: 415 not a form,
# 400 unparsable multipart, 422 fields missing, 415 not a form; the others ignore a body; list routes
# answer QUERY_GARBAGE with 422.
BODY_STATUS = {"json": [400, 415, 415, 422], "form": [415, 400, 422, 415], "bulk": [422, 400, 415, 422]}
ROUTE_INPUT: dict[tuple[str, str], tuple[str, int]] = {
    ("DELETE", "/api/v1/predictions/{prediction_id}"): ("none", 204),
    ("GET", "/api/v1/audit"): ("list", 200),
    ("GET", "/api/v1/categories"): ("none", 200),
    ("GET", "/api/v1/health"): ("none", 200),
    ("GET", "/api/v1/models"): ("none", 200),
    ("GET", "/api/v1/jobs/{job_id}"): ("none", 404),  # no such job
    ("GET", "/api/v1/jobs/{job_id}/result"): ("none", 404),
    ("GET", "/api/v1/models/{version}/card"): ("none", 404),  # nothing registered
    ("GET", "/api/v1/models/shadow"): ("none", 200),
    ("DELETE", "/api/v1/models/shadow"): ("json", 200),
    ("PUT", "/api/v1/models/{version}/shadow"): ("json", 404),
    ("GET", "/api/v1/predictions"): ("list", 200),
    ("GET", "/api/v1/predictions/{prediction_id}"): ("none", 200),
    ("GET", "/api/v1/predictions/{prediction_id}/explanation"): ("none", 200),
    ("GET", "/api/v1/predictions/{prediction_id}/image"): ("none", 200),
    ("GET", "/api/v1/retrain/status"): ("none", 200),
    ("GET", "/api/v1/retrain/{job_id}"): ("none", 404),  # no such job
    ("GET", "/api/v1/users"): ("list", 200),
    ("GET", "/api/v1/users/me"): ("none", 200),
    ("GET", "/docs"): ("none", 200),
    ("GET", "/docs/oauth2-redirect"): ("none", 200),
    ("GET", "/metrics"): ("none", 200),
    ("GET", "/openapi.json"): ("none", 200),
    ("GET", "/redoc"): ("none", 200),
    ("PATCH", "/api/v1/predictions/{prediction_id}"): ("json", 200),
    ("PATCH", "/api/v1/users/{username}"): ("json", 200),
    ("POST", "/api/v1/auth/logout"): ("none", 204),
    ("POST", "/api/v1/auth/token"): ("form", 200),
    ("POST", "/api/v1/jobs/bulk"): ("form", 202),
    ("POST", "/api/v1/models/rollback"): ("json", 409),
    ("POST", "/api/v1/models/{version}/promote"): ("json", 404),
    ("POST", "/api/v1/predictions"): ("form", 201),
    ("POST", "/api/v1/predictions/batch"): ("bulk", 200),
    ("POST", "/api/v1/predictions/{prediction_id}/review"): ("json", 200),
    ("POST", "/api/v1/retrain"): ("json", 202),
    ("POST", "/api/v1/users"): ("json", 201),
    ("POST", "/api/v1/users/{username}/logout"): ("none", 204),
}


def test_garbage_on_every_route_gets_the_answer_that_says_what_was_wrong(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers], stored_prediction: Stored
) -> None:
    from .test_roles import app_routes

    assert set(ROUTE_INPUT) == app_routes(app), "a route without an entry in ROUTE_INPUT (or one too many)"
    got, expected = {}, {}
    # logging out revokes the admin's tokens, so that route comes last
    for (method, path), (reads, ok) in sorted(
        ROUTE_INPUT.items(), key=lambda r: (r[0][1].endswith("auth/logout"), r)
    ):
        requests = [dict(g) for g in GARBAGE]
        if reads == "list":
            requests.append({"params": QUERY_GARBAGE})
        expected[(method, path)] = BODY_STATUS.get(reads, [ok] * len(GARBAGE)) + (
            [422] if reads == "list" else []
        )
        got[(method, path)] = []
        for kwargs in requests:
            # A fresh prediction for each request: a DELETE must not leave the next request a 404.
            url = path.replace("{prediction_id}", str(stored_prediction("carl")))
            url = (
                url.replace("{username}", "cora")
                .replace("{version}", "7")
                .replace("{job_id}", "20260101000000deadbeef")
            )
            headers = {**auth("admin"), **kwargs.pop("headers", {})}
            response = client.request(method, url, headers=headers, **kwargs)
            got[(method, path)].append(response.status_code)
            if response.status_code >= 400 and path.startswith("/api/"):
                assert response.headers["content-type"] == "application/json", (method, url)
                assert response.json()["detail"], (method, url)
    assert got == expected
