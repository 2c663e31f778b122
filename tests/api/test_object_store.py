"""The service with PRODTYPE_IMAGE_STORE=s3://...: photos go to a real S3-compatible server (moto in server
mode), are read back through the API and the pages, and go when their last record goes; a store that cannot
be used stops the start with a message that names it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.conftest import API, Headers
from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from prodtype.serving.object_store import ObjectStoreError
from prodtype.serving.storage import S3ImageStore
from service_support.databases import PASSWORD
from service_support.images import photo
from service_support.object_store import keys, s3_endpoint, s3_settings, s3_url  # noqa: F401 (fixtures)

CSRF = re.compile(r'name="csrf_token" value="([0-9a-f]{64})"')


@pytest.fixture
def s3_app(
    settings: Settings,
    model_holder: ModelHolder,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> FastAPI:
    return create_app(settings.model_copy(update=s3_settings(s3_endpoint, s3_url)), model_holder=model_holder)


@pytest.fixture
def s3_client(s3_app: FastAPI) -> Iterator[TestClient]:
    with TestClient(s3_app, raise_server_exceptions=False, follow_redirects=False) as client:
        yield client


def test_a_photo_goes_to_the_object_store_and_comes_back_through_the_api_and_the_pages(
    s3_app: FastAPI,
    s3_client: TestClient,
    auth: Callable[[str], Headers],
    settings: Settings,
    s3_endpoint: str,  # noqa: F811
    s3_url: str,  # noqa: F811
) -> None:
    assert isinstance(s3_app.state.store, S3ImageStore)
    image = photo(7)
    files = {"designation": (None, "Lampe de chevet en bois"), "image": ("p.jpg", image, "image/jpeg")}
    created = s3_client.post(f"{API}/predictions", files=files, headers=auth("carl"))
    assert created.status_code == 201, created.text
    body = created.json()
    stored = keys(s3_endpoint, s3_url)
    assert len(stored) == 1 and stored[0].startswith("prodtype/images/")
    assert not settings.images_dir.exists()  # nothing on this machine's disk

    from_api = s3_client.get(body["image_url"], headers=auth("carl"))
    assert from_api.status_code == 200 and from_api.content == image
    assert from_api.headers["content-type"] == "image/jpeg"

    page = s3_client.get("/login")
    token = CSRF.search(page.text)
    assert token, page.text[:500]
    login = {"username": "carl", "password": PASSWORD, "csrf_token": token.group(1)}
    assert s3_client.post("/login", data=login).status_code == 303
    from_page = s3_client.get(f"/predictions/{body['id']}/image")
    assert from_page.status_code == 200 and from_page.content == image

    deleted = s3_client.delete(f"{API}/predictions/{body['id']}", headers=auth("admin"))
    assert deleted.status_code == 204
    assert keys(s3_endpoint, s3_url) == []


def test_a_photo_missing_from_the_object_store_is_a_404_not_a_500(
    s3_app: FastAPI, s3_client: TestClient, auth: Callable[[str], Headers]
) -> None:
    files = {"designation": (None, "Lampe de chevet"), "image": ("p.jpg", photo(3), "image/jpeg")}
    body = s3_client.post(f"{API}/predictions", files=files, headers=auth("carl")).json()
    s3_app.state.store.discard(s3_app.state.store.put(photo(3)))
    missing = s3_client.get(body["image_url"], headers=auth("carl"))
    assert missing.status_code == 404 and "missing from the image store" in missing.json()["detail"]


def test_a_store_that_went_away_is_a_503_naming_it(
    s3_app: FastAPI,
    s3_client: TestClient,
    auth: Callable[[str], Headers],
    s3_url: str,  # noqa: F811
) -> None:
    s3_app.state.store.objects.location = type(s3_app.state.store.objects.location)("gone-bucket", "")
    files = {"designation": (None, "Lampe de chevet"), "image": ("p.jpg", photo(4), "image/jpeg")}
    response = s3_client.post(f"{API}/predictions", files=files, headers=auth("carl"))
    assert response.status_code == 503, response.text
    assert "s3://gone-bucket" in response.json()["detail"]


def test_a_bucket_that_does_not_exist_stops_the_start(
    settings: Settings,
    model_holder: ModelHolder,
    s3_endpoint: str,  # noqa: F811
) -> None:
    wrong = settings.model_copy(update=s3_settings(s3_endpoint, "s3://no-such-bucket/prodtype"))
    with (
        pytest.raises(ObjectStoreError, match="bucket 'no-such-bucket' does not exist"),
        TestClient(create_app(wrong, model_holder=model_holder)),
    ):
        pass
