"""End to end: Debian's Prometheus scrapes a running ``prodtype run`` every second, evaluates the rules of
deploy/prometheus/alerts.yml (their ``for`` durations shortened to one second), and the live-accuracy alert
fires once reviewers have corrected the served model's predictions, and not before."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from service_support.server import free_port, running_server
from service_support.waiting import until

from .test_alerts import RULES

pytestmark = pytest.mark.slow

API = "/api/v1"
ADMIN_PASSWORD = "alerting end-to-end password"
PRODUCTS = [
    "Piscine tubulaire ronde 3,05 x 0,76 m avec pompe",
    "Jeu PS4 FIFA 21 edition standard",
    "Figurine Funko Pop Star Wars Dark Vador",
]


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("prometheus is not installed (apt-get install prometheus)")
        pytest.skip("prometheus is not installed (apt-get install prometheus)")
    return path


@contextmanager
def running_prometheus(folder: Path, target: str) -> Iterator[str]:
    """Prometheus scraping ``target`` every second with the project's rules, ``for`` shortened to 1 s."""
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "1s"
    (folder / "alerts.yml").write_text(yaml.safe_dump(data))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "prodtype", "static_configs": [{"targets": [target]}]}],
    }
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            prometheus_binary(),
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        until(lambda: _ready(url, process), timeout=30, message="prometheus did not become ready")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ready(url: str, process: subprocess.Popen[str]) -> bool:
    if process.poll() is not None:
        raise RuntimeError(
            f"prometheus exited with {process.returncode}: {process.stderr.read() if process.stderr else ''}"
        )
    try:
        return httpx.get(f"{url}/-/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


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
    env = {
        "PRODTYPE_STORAGE_DIR": str(tmp_path / "storage"),
        "PRODTYPE_MODEL_PATH": str(trained_bundle),
        "PRODTYPE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PRODTYPE_METRICS_REFRESH_SECONDS": "0",
        "PRODTYPE_LIVE_ACCURACY_MIN_REVIEWS": "3",
        "PRODTYPE_FOLLOW_CHAMPION": "false",
    }
    (tmp_path / "prometheus").mkdir()
    with (
        running_server("run", env) as server,
        running_prometheus(tmp_path / "prometheus", server.url.removeprefix("http://")) as prometheus,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        until(lambda: [s["value"][1] for s in query(prometheus, 'up{job="prodtype"}')] == ["1"], timeout=20)
        until(lambda: rules_evaluated(prometheus), timeout=20, message="the rules were not evaluated")
        # The service is healthy: a model is loaded, no review yet, so nothing fires.
        assert query(prometheus, "prodtype_model_loaded")[0]["value"][1] == "1"
        assert alerts(prometheus) == {}

        token = client.post(f"{API}/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD})
        headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
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
