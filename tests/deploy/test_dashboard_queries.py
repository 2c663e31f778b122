"""Every query of the Grafana dashboard (deploy/grafana/dashboards/prodtype.json) against a live Prometheus
scraping a running ``prodtype run`` that has classified and had reviewed a few products: each query parses,
and each returns data (so each metric it names is really exported, with the labels it groups by)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from service_support.waiting import until

from .monitored import API, monitored_service
from .test_deploy_files import dashboard, with_variables

pytestmark = pytest.mark.slow

ADMIN_PASSWORD = "dashboard queries password"
PRODUCTS = [
    "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe",
    "Jeu PS4 FIFA 21 edition standard",
    "Figurine Funko Pop Star Wars Dark Vador",
]
# Grafana's variables at a scrape every second: windows of a few scrapes.
VARIABLES = {"$__rate_interval": "30s", "$__range": "5m", "$__interval": "1s"}


def _query(prometheus: str, expr: str) -> dict[str, Any]:
    body: dict[str, Any] = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body


def test_every_dashboard_query_returns_data_from_a_running_service(
    trained_bundle: Path, tmp_path: Path
) -> None:
    start = time.monotonic()
    with monitored_service(trained_bundle, tmp_path, ADMIN_PASSWORD) as m:
        prometheus, client, headers = m.prometheus, m.client, m.headers
        predicted = set()
        for product in PRODUCTS:
            made = client.post(f"{API}/predictions", files={"designation": (None, product)}, headers=headers)
            assert made.status_code == 201, made.text
            predicted.add(str(made.json()["prdtypecode"]))
            kept = client.post(
                f"{API}/predictions/{made.json()['id']}/review", json={"decision": "accept"}, headers=headers
            )
            assert kept.status_code == 200, kept.text
        version = client.get(f"{API}/health").json()["model_version"]

        queries = [
            (p["title"], with_variables(t["expr"], VARIABLES))
            for p in dashboard()["panels"]
            for t in p["targets"]
        ]
        for title, expr in queries:
            until(
                lambda expr=expr: _query(prometheus, expr)["data"]["result"],
                timeout=30,
                message=lambda expr=expr, title=title: (
                    f"{title}: no data for {expr}: {_query(prometheus, expr)}"
                ),
                every=0.5,
            )
        # The figures are the service's: its model version, the types it predicted, every review accepted.
        by_title = {title: _query(prometheus, expr)["data"]["result"] for title, expr in queries}
        assert [r["metric"]["version"] for r in by_title["Model version served"]] == [version]
        assert {
            r["metric"]["prdtypecode"] for r in by_title["Predictions per type over the time range"]
        } == predicted
        assert [float(r["value"][1]) for r in by_title["Live accuracy"]] == [1.0]
        assert [float(r["value"][1]) for r in by_title["Replicas without a model"]] == [0.0]
    print(f"dashboard queries test: {time.monotonic() - start:.1f} s, {len(queries)} queries")
