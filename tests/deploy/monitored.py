"""A running ``prodtype run`` scraped every second by Debian's Prometheus with the project's alert rules
(their ``for`` durations shortened to one second), for the tests that check what Prometheus sees."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from service_support.server import free_port, running_server
from service_support.waiting import until

from .test_alerts import RULES

API = "/api/v1"


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
def running_prometheus(folder: Path, target: str, token_file: Path) -> Iterator[str]:
    """Prometheus scraping ``target`` every second with the project's rules, ``for`` shortened to 1 s, sending
    the bearer token of ``token_file`` as deploy/prometheus.yml does."""
    data = yaml.safe_load(RULES.read_text())
    for group in data["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = "1s"
    (folder / "alerts.yml").write_text(yaml.safe_dump(data))
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "900ms"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [
            {
                "job_name": "prodtype",
                "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
                "static_configs": [{"targets": [target]}],
            }
        ],
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


@dataclass
class Monitored:
    prometheus: str  # Prometheus' base URL
    client: httpx.Client  # on the service
    headers: dict[str, str]  # an admin's bearer token


@contextmanager
def monitored_service(bundle: Path, folder: Path, password: str, **env: str) -> Iterator[Monitored]:
    """``prodtype run`` serving ``bundle`` (storage and Prometheus' files under ``folder``; ``env`` adds or
    overrides settings), scraped by Prometheus with the metrics token (nobody else may read ``/metrics``),
    with a client logged in as the admin."""
    token_file = folder / "metrics_token"
    token_file.write_text(secrets.token_urlsafe(32) + "\n")
    settings = {
        "PRODTYPE_STORAGE_DIR": str(folder / "storage"),
        "PRODTYPE_MODEL_PATH": str(bundle),
        "PRODTYPE_ADMIN_PASSWORD": password,
        "PRODTYPE_METRICS_REFRESH_SECONDS": "0",
        "PRODTYPE_FOLLOW_CHAMPION": "false",
        "PRODTYPE_METRICS_TOKEN_FILE": str(token_file),
        **env,
    }
    (folder / "prometheus").mkdir()
    with (
        running_server("run", settings) as server,
        running_prometheus(
            folder / "prometheus", server.url.removeprefix("http://"), token_file
        ) as prometheus,
        httpx.Client(base_url=server.url, timeout=60) as client,
    ):
        assert client.get("/metrics").status_code == 401  # what Prometheus sees, it sees with the token
        token = client.post(f"{API}/auth/token", data={"username": "admin", "password": password})
        assert token.status_code == 200, token.text
        yield Monitored(prometheus, client, {"Authorization": f"Bearer {token.json()['access_token']}"})
