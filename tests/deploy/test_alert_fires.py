"""End to end: Debian's Prometheus scrapes a running ``prodtype run`` every second, evaluates the rules of
deploy/prometheus/alerts.yml (their ``for`` durations shortened to one second), and the live-accuracy alert
fires once reviewers have corrected the served model's predictions, and not before."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_support.waiting import until

from .monitored import API, monitored_service

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "alerting end-to-end password"
PRODUCTS = [
    "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe",
    "Jeu PS4 FIFA 21 edition standard",
    "Figurine Funko Pop Star Wars Dark Vador",
]


def alerts(prometheus: str) -> dict[str, dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/alerts", timeout=5).json()
    return {a["labels"]["alertname"]: a for a in body["data"]["alerts"]}


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def rules_evaluated(prometheus: str) -> bool:
    """Every rule has been evaluated at least once, without error."""
    groups = httpx.get(f"{prometheus}/api/v1/rules", timeout=5).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    never = "0001-01-01"  # Prometheus' zero time
    return bool(rules) and all(
        r["health"] == "ok" and not r["lastEvaluation"].startswith(never) for r in rules
    )


def test_the_live_accuracy_alert_fires_after_reviewers_correct_the_model(
    trained_bundle: Path, tmp_path: Path
) -> None:
    start = time.monotonic()
    three_reviews = {"PRODTYPE_LIVE_ACCURACY_MIN_REVIEWS": "3"}
    with monitored_service(trained_bundle, tmp_path, ADMIN_PASSWORD, **three_reviews) as m:
        prometheus, client, headers = m.prometheus, m.client, m.headers
        until(lambda: [s["value"][1] for s in query(prometheus, 'up{job="prodtype"}')] == ["1"], timeout=20)
        until(lambda: rules_evaluated(prometheus), timeout=20, message="the rules were not evaluated")
        # The service is healthy: a model is loaded, no review yet, so nothing fires.
        assert query(prometheus, "prodtype_model_loaded")[0]["value"][1] == "1"
        assert alerts(prometheus) == {}

        for product in PRODUCTS:
            made = client.post(f"{API}/predictions", files={"designation": (None, product)}, headers=headers)
            assert made.status_code == 201, made.text
            wrong = 10 if made.json()["prdtypecode"] != 10 else 2583
            fixed = client.post(
                f"{API}/predictions/{made.json()['id']}/review",
                json={"decision": "accept", "prdtypecode": wrong},
                headers=headers,
            )
            assert fixed.status_code == 200, fixed.text

        def firing() -> bool:
            alert = alerts(prometheus).get("ProdtypeLiveAccuracyLow")
            return alert is not None and alert["state"] == "firing"

        until(firing, timeout=30, message=lambda: f"not firing: {alerts(prometheus)}", every=0.5)
        alert = alerts(prometheus)["ProdtypeLiveAccuracyLow"]
        assert alert["labels"]["severity"] == "warning" and alert["labels"]["job"] == "prodtype"
        assert (
            alert["annotations"]["summary"] == "Live accuracy of the served model is 0%, under its threshold"
        )
        assert float(alert["value"]) == 0.0
        # The other alerts stay quiet: the service is up, has a model, and answered no 5xx.
        assert set(alerts(prometheus)) == {"ProdtypeLiveAccuracyLow"}
    print(f"end-to-end alert test: {time.monotonic() - start:.1f} s")
