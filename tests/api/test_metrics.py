"""Prometheus metrics at /metrics: requests by route template and status, predictions by predicted type,
prediction latency, the model served; no login needed and nothing personal in them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.serving.model_holder import ModelHolder
from service_support.images import photo

from .conftest import API, Headers

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_by_route_template_and_status(
    client: TestClient, predict: Callable[..., dict[str, Any]], auth: Callable[[str], Headers]
) -> None:
    created = predict("carl", "Piscine tubulaire ronde")
    for _ in range(2):
        assert client.get(f"{API}/predictions/{created['id']}", headers=auth("carl")).status_code == 200
    assert client.get(f"{API}/predictions/999999", headers=auth("carl")).status_code == 404
    assert client.get(f"{API}/predictions/1").status_code == 401
    assert client.get("/no/such/page/12345").status_code == 404
    samples = scrape(client)
    route = f"{API}/predictions/{{prediction_id}}"  # the template: ids never become labels
    requests = "prodtype_http_requests_total"
    assert value(samples, requests, method="POST", route=f"{API}/predictions", status="201") == 1
    assert value(samples, requests, method="GET", route=route, status="200") == 2
    assert value(samples, requests, method="GET", route=route, status="404") == 1
    assert value(samples, requests, method="GET", route=route, status="401") == 1
    assert value(samples, requests, method="GET", route="<unmatched>", status="404") == 1
    latency = "prodtype_http_request_duration_seconds_count"
    assert value(samples, latency, method="GET", route=route, status="200") == 2
    assert not any("12345" in str(labels) or "999999" in str(labels) for _, labels in samples)


def test_predictions_are_counted_by_predicted_code_and_timed(
    client: TestClient, predict: Callable[..., dict[str, Any]]
) -> None:
    codes = [
        predict("carl", "Piscine tubulaire ronde", image=photo(0))["prdtypecode"],
        predict("carl", "Jeu PS4 FIFA 21")["prdtypecode"],
        predict("cora", "Jeu PS4 FIFA 21")["prdtypecode"],
    ]
    samples = scrape(client)
    for code in set(codes):
        assert value(samples, "prodtype_predictions_total", prdtypecode=str(code)) == codes.count(code)
    timed = "prodtype_prediction_duration_seconds_count"
    assert value(samples, timed, has_image="true") == 1
    assert value(samples, timed, has_image="false") == 2
    assert value(samples, "prodtype_prediction_duration_seconds_sum", has_image="true") > 0


def test_the_served_model_is_shown_and_follows_swaps(settings: Settings, model_holder: ModelHolder) -> None:
    holder = ModelHolder()
    client = TestClient(create_app(settings, model_holder=holder))
    samples = scrape(client)
    assert value(samples, "prodtype_model_loaded") == 0
    assert not [key for key in samples if key[0] == "prodtype_model_info"]
    holder.swap(model_holder.get())
    samples = scrape(client)
    assert value(samples, "prodtype_model_loaded") == 1
    assert value(samples, "prodtype_model_info", version=model_holder.get().version) == 1


def test_metrics_need_no_login_and_hold_nothing_personal(
    client: TestClient, predict: Callable[..., dict[str, Any]]
) -> None:
    predict("carl", "Chaussettes licorne taille unique", "Un cadeau pour Madame Dupont")
    text = client.get("/metrics").text
    for private in ("carl", "licorne", "Dupont", "Bearer"):
        assert private not in text


def test_each_app_counts_its_own_requests(
    client: TestClient, settings: Settings, model_holder: ModelHolder
) -> None:
    client.get(f"{API}/health")
    other = TestClient(create_app(settings, model_holder=model_holder))
    health = {"method": "GET", "route": f"{API}/health", "status": "200"}
    assert value(scrape(other), "prodtype_http_requests_total", **health) == 0
    assert value(scrape(client), "prodtype_http_requests_total", **health) == 1


def test_a_metrics_token_restricts_the_endpoint_to_the_scraper(
    settings: Settings, model_holder: ModelHolder
) -> None:
    token = "scraper-" + "t" * 40
    client = TestClient(
        create_app(settings.model_copy(update={"metrics_token": SecretStr(token)}), model_holder=model_holder)
    )
    for headers in (
        {},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Basic {token}"},
        {"Authorization": token},
        {"Authorization": "Bearer "},
    ):
        refused = client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert "PRODTYPE_METRICS_TOKEN" in refused.json()["detail"]
        assert "prodtype_" not in refused.text
    answered = client.get("/metrics", headers={"Authorization": f"bearer {token}"})
    assert answered.status_code == 200
    assert any(f.name == "prodtype_model_loaded" for f in text_string_to_metric_families(answered.text))
    # the rest of the API is not behind that token
    assert client.get(f"{API}/health").status_code == 200
