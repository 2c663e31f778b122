"""Predictions over the API with the real model: create, read, list, image, review, correct, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.catalog import load_catalog
from service_support.images import photo, png_of

from .conftest import API, Headers

Predict = Callable[..., dict[str, Any]]
CATALOG = load_catalog()


def test_create_returns_the_id_type_and_candidates(client: TestClient, predict: Predict) -> None:
    body = predict("carl", "Piscine tubulaire ronde 3,05 x 0,76 m", "Avec pompe de filtration", photo(0))
    assert isinstance(body["id"], int)
    assert body["status"] == "pending"
    assert body["prdtypecode"] in CATALOG
    assert body["category"] == CATALOG.name(body["prdtypecode"])
    assert 0 < body["confidence"] <= 1
    top = body["top_k"]
    assert len(top) == 5
    assert top[0]["prdtypecode"] == body["prdtypecode"]
    assert top[0]["probability"] == body["confidence"]
    assert [c["probability"] for c in top] == sorted((c["probability"] for c in top), reverse=True)
    assert all(c["category"] == CATALOG.name(c["prdtypecode"]) for c in top)
    assert sum(c["probability"] for c in top) <= 1 + 1e-6
    assert body["model_version"]
    assert body["has_image"] and body["image_url"] == f"{API}/predictions/{body['id']}/image"
    assert (body["created_by"], body["final_code"], body["reviewed_by"]) == ("carl", None, None)


def test_create_sets_location_and_is_readable_back(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    files = {"designation": (None, "Figurine Funko Pop Star Wars Dark Vador")}
    response = client.post(f"{API}/predictions", files=files, headers=auth("carl"))
    assert response.status_code == 201
    location = response.headers["location"]
    again = client.get(location, headers=auth("carl"))
    assert again.status_code == 200
    assert again.json() == response.json()
    assert not again.json()["has_image"] and again.json()["image_url"] is None


def test_text_only_form_urlencoded_is_accepted(client: TestClient, auth: Callable[[str], Headers]) -> None:
    response = client.post(
        f"{API}/predictions",
        data={"designation": "  Jeu PS4 FIFA 21 ", "description": "Edition standard, version française"},
        headers=auth("carl"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["designation"], body["description"]) == (
        "Jeu PS4 FIFA 21",
        "Edition standard, version française",
    )
    assert (body["status"], body["created_by"], body["has_image"], body["image_url"]) == (
        "pending",
        "carl",
        False,
        None,
    )
    assert body["prdtypecode"] in CATALOG and body["category"] == CATALOG.name(body["prdtypecode"])
    assert len(body["top_k"]) == 5 and body["top_k"][0]["prdtypecode"] == body["prdtypecode"]
    assert response.headers["location"].endswith(f"/predictions/{body['id']}")
    assert client.get(response.headers["location"], headers=auth("carl")).json() == body


def test_the_image_can_be_downloaded_as_sent(
    client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    png = png_of(photo(3))
    created = predict("carl", image=png)
    response = client.get(created["image_url"], headers=auth("carl"))
    assert response.status_code == 200
    assert response.content == png
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    text_only = predict("carl")
    missing = client.get(f"{API}/predictions/{text_only['id']}/image", headers=auth("carl"))
    assert missing.status_code == 404
    assert "without an image" in missing.json()["detail"]


def test_customers_see_only_their_own(
    client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    mine, theirs = predict("carl"), predict("cora")
    assert client.get(f"{API}/predictions/{theirs['id']}", headers=auth("carl")).status_code == 404
    assert client.get(f"{API}/predictions/{theirs['id']}/image", headers=auth("carl")).status_code == 404
    listed = client.get(f"{API}/predictions", headers=auth("carl")).json()
    assert [p["id"] for p in listed["data"]] == [mine["id"]] and listed["count"] == 1
    everything = client.get(f"{API}/predictions", headers=auth("rita")).json()
    assert {p["id"] for p in everything["data"]} == {mine["id"], theirs["id"]}


def test_list_filters_sorting_and_pagination(
    client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    titles = [
        "Piscine tubulaire ronde 3,05 x 0,76 m",
        "Jeu PS4 FIFA 21",
        "Lot de 6 verres à vin",
        "Figurine Funko Pop Star Wars",
        "Livre de cuisine : les desserts de grand-mère",
    ]
    made = [predict("carl" if i % 2 else "cora", t) for i, t in enumerate(titles)]
    rita = auth("rita")
    client.post(f"{API}/predictions/{made[0]['id']}/review", json={"decision": "reject"}, headers=rita)

    page = client.get(f"{API}/predictions", headers=rita).json()
    confidences = [p["confidence"] for p in page["data"]]
    assert confidences == sorted(confidences)  # lowest confidence first: the review queue's order
    assert page["count"] == 5

    def ids(**params: Any) -> list[int]:
        response = client.get(f"{API}/predictions", params=params, headers=rita)
        assert response.status_code == 200, response.text
        return [p["id"] for p in response.json()["data"]]

    assert ids(status="rejected") == [made[0]["id"]]
    assert made[0]["id"] not in ids(status="pending")
    assert set(ids(created_by="carl")) == {made[1]["id"], made[3]["id"]}
    code = made[2]["prdtypecode"]
    assert set(ids(prdtypecode=code)) == {m["id"] for m in made if m["prdtypecode"] == code}
    threshold = sorted(confidences)[2]
    assert set(ids(confidence_below=threshold)) == {m["id"] for m in made if m["confidence"] < threshold}
    assert ids(sort="-id") == sorted((m["id"] for m in made), reverse=True)
    assert ids(sort="id", offset=1, limit=2) == sorted(m["id"] for m in made)[1:3]
    created = made[0]["created_at"]
    assert set(ids(created_after=created)) == {m["id"] for m in made}
    assert ids(created_before=created) == []
    assert ids(created_after="2000-01-01T00:00:00", created_before="2001-01-01T00:00:00") == []


def test_review_accept_with_correction_then_conflict(
    client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    created = predict("carl", image=photo(4))
    url = f"{API}/predictions/{created['id']}/review"
    code = next(c for c in CATALOG.codes if c != created["prdtypecode"])
    response = client.post(url, json={"decision": "accept", "prdtypecode": code}, headers=auth("rita"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "accepted"
    assert (body["prdtypecode"], body["final_code"]) == (created["prdtypecode"], code)
    assert body["final_category"] == CATALOG.name(code)
    assert body["reviewed_by"] == "rita" and body["reviewed_at"] >= body["created_at"]
    again = client.post(url, json={"decision": "reject"}, headers=auth("admin"))
    assert again.status_code == 409
    assert "already reviewed: accepted by rita" in again.json()["detail"]
    # Reviewing never removes the photo.
    assert client.get(created["image_url"], headers=auth("carl")).content == photo(4)


def test_patch_corrects_the_type(
    client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    created = predict("carl")
    response = client.patch(
        f"{API}/predictions/{created['id']}", json={"prdtypecode": 2583}, headers=auth("rita")
    )
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["final_code"]) == ("accepted", 2583)
    audit = client.get(
        f"{API}/audit", params={"entity": "prediction", "entity_id": created["id"]}, headers=auth("admin")
    ).json()
    assert [e["action"] for e in audit["data"]] == ["prediction.corrected", "prediction.created"]
    assert audit["data"][0]["actor"] == "rita"


def test_delete_removes_the_image_only_when_unreferenced(
    app: FastAPI, client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    image = photo(5)
    first, second = predict("carl", image=image), predict("cora", image=image)
    store = app.state.store
    digest = store.put(image)  # same bytes, same name: nothing is written
    admin = auth("admin")
    assert client.delete(f"{API}/predictions/{first['id']}", headers=admin).status_code == 204
    assert client.get(f"{API}/predictions/{first['id']}", headers=admin).status_code == 404
    assert store.exists(digest)
    assert client.get(second["image_url"], headers=auth("cora")).content == image
    assert client.delete(f"{API}/predictions/{second['id']}", headers=admin).status_code == 204
    assert not store.exists(digest)
    assert client.delete(f"{API}/predictions/{second['id']}", headers=admin).status_code == 404


def test_concurrent_reviews_over_the_api_have_one_winner(
    client: TestClient, auth: Callable[[str], Headers], predict: Predict
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    created = predict("carl")
    url = f"{API}/predictions/{created['id']}/review"
    bodies = [({"decision": "accept"}, auth("rita")), ({"decision": "reject"}, auth("admin"))]
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda b: client.post(url, json=b[0], headers=b[1]).status_code, bodies))
    assert statuses == [200, 409]


def test_inference_handlers_run_in_the_threadpool() -> None:
    """Plain ``def`` handlers are run by FastAPI in its threadpool: the model never blocks the event loop."""
    import inspect

    from prodtype.api.routes import predictions as routes

    for handler in (routes.create_prediction, routes.review_prediction, routes.list_predictions):
        assert not inspect.iscoroutinefunction(handler)
