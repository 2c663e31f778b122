"""The photo limits over HTTP: the configured pixel limit reaches the API and the page, and request bodies
over the limit are refused from their declared length or, without one, while they stream in."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from html import unescape
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from service_support import images
from service_support.databases import PASSWORD

from .conftest import API, Headers
from .test_bad_input import assert_error, post_product

PHOTO_PIXELS = 500 * 500  # images.photo(): 500 x 500


def app_with(settings: Settings, holder: ModelHolder, **changes: Any) -> FastAPI:
    return create_app(settings.model_copy(update=changes), model_holder=holder)


def bearer(client: TestClient, username: str) -> Headers:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def recorded(client: TestClient, headers: Headers) -> int:
    return int(client.get(f"{API}/predictions", headers=headers).json()["count"])


def test_a_header_over_the_default_pixel_limit_is_refused(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    # 64 million pixels: within what Pillow opens by itself, over prodtype's default 40 million.
    response = post_product(client, auth("carl"), image=images.bomb_png(8_000, 8_000), designation="Mug")
    assert_error(response, 422, "declares 8000x8000 = 64,000,000 pixels; at most 40,000,000 are accepted")
    # Refused by the submission check, from the header, before the model is asked (the model's decoder
    # has a limit of its own, which answers "the image cannot be used: ...").
    assert response.json()["detail"].startswith("the image declares 8000x8000")
    assert recorded(client, auth("carl")) == 0


def page_post(client: TestClient, image: bytes) -> tuple[int, str]:
    """Log in on the page as carl and submit the form with ``image``; the status and the error shown."""
    csrf = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')
    token = csrf.search(client.get("/login").text).group(1)  # type: ignore[union-attr]
    login = client.post("/login", data={"username": "carl", "password": PASSWORD, "csrf_token": token})
    assert login.status_code == 303, login.text
    token = csrf.search(client.get("/predict").text).group(1)  # type: ignore[union-attr]
    response = client.post(
        "/predict",
        data={"designation": "Mug", "description": "", "csrf_token": token},
        files={"image": ("photo.jpg", image, "image/jpeg")},
    )
    error = re.search(r'role="alert" id="error">(.*?)</div>', response.text, re.S)
    return response.status_code, unescape(error.group(1)) if error else response.headers.get("location", "")


def test_the_configured_pixel_limit_applies_to_the_api_and_the_page(
    settings: Settings, model_holder: ModelHolder
) -> None:
    app = app_with(settings, model_holder, max_image_pixels=PHOTO_PIXELS - 1)
    with TestClient(app, follow_redirects=False) as client:
        carl = bearer(client, "carl")
        response = post_product(client, carl, image=images.photo(), designation="Mug")
        assert_error(response, 422, "500x500 = 250,000 pixels; at most 249,999 are accepted")
        status, shown = page_post(client, images.photo())
        assert status == 422 and "500x500 = 250,000 pixels; at most 249,999 are accepted" in shown
        assert recorded(client, carl) == 0
    app = app_with(settings, model_holder, max_image_pixels=PHOTO_PIXELS)
    with TestClient(app, follow_redirects=False) as client:
        response = post_product(client, bearer(client, "carl"), image=images.photo(), designation="Mug")
        assert response.status_code == 201, response.text
        assert response.json()["has_image"]


LIMIT = 200_000


def test_a_body_declared_over_the_request_limit_is_refused_before_it_is_read(
    settings: Settings, model_holder: ModelHolder
) -> None:
    app = app_with(settings, model_holder, upload_limit_bytes=LIMIT)
    allowed = app.state.settings.max_request_bytes
    with TestClient(app) as client:
        body = images.oversized_jpeg(allowed + 1_000)
        response = client.post(
            f"{API}/predictions",
            content=body,
            headers={**bearer(client, "carl"), "content-type": "multipart/form-data; boundary=x"},
        )
        assert_error(response, 413, f"the request body is {len(body)} bytes; at most {allowed} bytes")
        assert f"images may be at most {LIMIT} bytes" in response.json()["detail"]


def test_a_body_without_a_length_is_cut_off_at_the_request_limit(
    settings: Settings, model_holder: ModelHolder
) -> None:
    app = app_with(settings, model_holder, upload_limit_bytes=LIMIT)
    allowed = app.state.settings.max_request_bytes

    def chunks() -> Iterator[bytes]:
        head = b'--x\r\nContent-Disposition: form-data; name="designation"\r\n\r\nMug\r\n'
        head += b'--x\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"\r\n'
        head += b"Content-Type: image/jpeg\r\n\r\n"
        yield head
        for _ in range(40):  # 40 x 64 KiB = 2.5 MiB, twice the allowance
            yield b"\0" * 65_536
        yield b"\r\n--x--\r\n"

    with TestClient(app) as client:
        response = client.post(
            f"{API}/predictions",
            content=chunks(),
            headers={**bearer(client, "carl"), "content-type": "multipart/form-data; boundary=x"},
        )
        assert "content-length" not in {k.lower() for k in response.request.headers}
        assert_error(response, 413, f"the request body is over {allowed} bytes")
        assert recorded(client, bearer(client, "carl")) == 0
