"""The bulk endpoint: many products per request, each checked and recorded like a single prediction, bad items
answered one by one without failing the others (SQLite and PostgreSQL, real model)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from service_support.images import bomb_png, photo

from .conftest import API, Headers

BULK = f"{API}/predictions/batch"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_json_items_are_predicted_and_recorded_in_order(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    items = [
        {"designation": "Piscine tubulaire ronde 3,05 x 0,76 m", "image_base64": b64(photo(0))},
        {"designation": "Fifa 18 [Jeu PS4]", "description": "<b>Edition standard</b>"},
        {"designation": "Taie d'oreiller 50x50", "image_base64": b64(photo(1))},
    ]
    response = client.post(BULK, json=items, headers=auth("carl"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["failed"]) == (3, 0)
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    for item, result in zip(items, body["data"], strict=True):
        assert result["status"] == 201 and result["detail"] is None
        prediction = result["prediction"]
        assert prediction["designation"] == item["designation"]
        assert prediction["has_image"] == ("image_base64" in item)
        assert prediction["created_by"] == "carl" and prediction["status"] == "pending"
        # recorded like a single prediction: readable back, photo included, in the owner's list
        again = client.get(f"{API}/predictions/{prediction['id']}", headers=auth("carl"))
        assert again.status_code == 200 and again.json() == prediction
    image = client.get(f"{API}/predictions/{body['data'][0]['prediction']['id']}/image", headers=auth("carl"))
    assert image.status_code == 200 and image.content == photo(0)
    mine = client.get(f"{API}/predictions", headers=auth("carl")).json()
    assert mine["count"] == 3


def test_the_same_product_gets_the_single_endpoints_answer(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    single = client.post(
        f"{API}/predictions",
        files={"designation": (None, "Lot de 3 stylos bille"), "image": ("p.jpg", photo(3), "image/jpeg")},
        headers=auth("carl"),
    ).json()
    bulk = client.post(
        BULK,
        json=[{"designation": "Lot de 3 stylos bille", "image_base64": b64(photo(3))}],
        headers=auth("carl"),
    ).json()["data"][0]["prediction"]
    assert bulk["prdtypecode"] == single["prdtypecode"]
    assert [c["prdtypecode"] for c in bulk["top_k"]] == [c["prdtypecode"] for c in single["top_k"]]
    assert abs(bulk["confidence"] - single["confidence"]) < 1e-5


def test_bad_items_are_reported_one_by_one_and_the_good_ones_recorded(
    client: TestClient, auth: Callable[[str], Headers], settings: Settings
) -> None:
    items: list[dict[str, Any]] = [
        {"designation": "Chaise de jardin pliante"},  # good
        {"designation": "   "},  # empty title
        {"designation": "Vase", "image_base64": "not base64 at all!"},
        {"designation": "Lampe", "image_base64": b64(b"just some text, not a picture")},
        {"designation": "Tapis", "image_base64": b64(bomb_png(9_000, 9_000))},  # over the pixel limit
        {"designation": "x" * 1001},  # over the title limit
        {"designation": "Bougie parfumée", "image_base64": b64(photo(4))},  # good
    ]
    response = client.post(BULK, json=items, headers=auth("carl"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["created"], body["failed"]) == (2, 5)
    by_index = {d["index"]: d for d in body["data"]}
    assert by_index[0]["status"] == 201 and by_index[6]["status"] == 201
    expected = {
        1: "designation is required",
        2: "item 2: image_base64 is not valid base64",
        3: "not an image",
        4: "pixels; at most",
        5: "at most 1000 are accepted",
    }
    for index, message in expected.items():
        assert by_index[index]["status"] == 422, by_index[index]
        assert message in by_index[index]["detail"], by_index[index]["detail"]
        assert by_index[index]["prediction"] is None
    listed = client.get(f"{API}/predictions", headers=auth("carl")).json()
    assert sorted(p["designation"] for p in listed["data"]) == ["Bougie parfumée", "Chaise de jardin pliante"]


def test_multipart_items_name_their_photo_parts(client: TestClient, auth: Callable[[str], Headers]) -> None:
    items = [
        {"designation": "Piscine hors sol", "image": "first"},
        {"designation": "Jeu de société", "description": "Monopoly"},
        {"designation": "Coussin", "image": "missing-part"},
    ]
    files = {
        "items": (None, json.dumps(items)),
        "first": ("a.jpg", photo(0), "image/jpeg"),
    }
    response = client.post(BULK, files=files, headers=auth("carl"))
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [d["status"] for d in data] == [201, 201, 422]
    assert data[0]["prediction"]["has_image"] and not data[1]["prediction"]["has_image"]
    assert "no file part named 'missing-part'" in data[2]["detail"]


def test_request_level_errors(client: TestClient, auth: Callable[[str], Headers], settings: Settings) -> None:
    too_many = [{"designation": f"Produit {i}"} for i in range(settings.bulk_max_items + 1)]
    response = client.post(BULK, json=too_many, headers=auth("carl"))
    assert response.status_code == 422
    assert f"at most {settings.bulk_max_items} are accepted" in response.json()["detail"]
    assert client.post(BULK, json=[], headers=auth("carl")).status_code == 422
    not_a_list = client.post(BULK, json={"designation": "Vase"}, headers=auth("carl"))
    assert not_a_list.status_code == 422 and not_a_list.json()["errors"]
    unknown = client.post(BULK, json=[{"designation": "Vase", "colour": "blue"}], headers=auth("carl"))
    assert unknown.status_code == 422 and "colour" in unknown.json()["detail"]
    text = client.post(
        BULK, content=b"designation=Vase", headers={**auth("carl"), "Content-Type": "text/plain"}
    )
    assert text.status_code == 415 and "application/json" in text.json()["detail"]
    broken = client.post(BULK, content=b"[{", headers={**auth("carl"), "Content-Type": "application/json"})
    assert broken.status_code == 422 and "not valid JSON" in broken.json()["detail"]
    # nothing was recorded by any of these
    assert client.get(f"{API}/predictions", headers=auth("carl")).json()["count"] == 0


def test_anonymous_callers_are_refused_before_the_body_is_read(app: FastAPI, client: TestClient) -> None:
    response = client.post(BULK, content=b"[{" * 1000, headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_the_bulk_body_limit_is_its_own(
    settings: Settings, model_holder: ModelHolder, auth: Callable[[str], Headers]
) -> None:
    small = settings.model_copy(update={"upload_limit_bytes": 200_000, "bulk_max_request_bytes": 8_000_000})
    with TestClient(create_app(small, model_holder=model_holder)) as client:
        big = [{"designation": "Photo", "image_base64": b64(photo(i % 8))} for i in range(60)]
        body = json.dumps(big).encode()
        assert small.max_request_bytes < len(body) < small.bulk_max_request_bytes
        # over a single prediction's limit, within the bulk one
        response = client.post(
            BULK, content=body, headers={**auth("carl"), "Content-Type": "application/json"}
        )
        assert response.status_code == 200 and response.json()["created"] == 60
        over = b"[" + b" " * small.bulk_max_request_bytes + b"]"
        refused = client.post(
            BULK, content=over, headers={**auth("carl"), "Content-Type": "application/json"}
        )
        assert refused.status_code == 413
        assert "at most 8000000 bytes" in refused.json()["detail"]
        # the single endpoint keeps its own limit
        single = client.post(
            f"{API}/predictions", content=body, headers={**auth("carl"), "Content-Type": "application/json"}
        )
        assert single.status_code == 413
