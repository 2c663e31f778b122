"""``prodtype serve --workers 2``: one consistent set of metrics, whichever worker answers the scrape."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from service_support.server import running_server

pytestmark = pytest.mark.slow

UNMATCHED = re.compile(r'^prodtype_http_requests_total\{[^}]*route="<unmatched>"[^}]*\} (\S+)$', re.M)


def unmatched_count(text: str) -> float:
    return sum(float(v) for v in UNMATCHED.findall(text))


def worker_pids(folder: Path) -> set[str]:
    return {p.stem.rsplit("_", 1)[-1] for p in folder.glob("counter_*.db")}


def test_two_workers_report_one_set_of_metrics(tmp_path: Path) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_999999.db").write_bytes(b"left by an earlier run")  # must not be added in
    env = {
        "PRODTYPE_STORAGE_DIR": str(tmp_path / "storage"),
        "PRODTYPE_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
    }
    with running_server("serve", env, up=lambda r: r.status_code in (200, 503)) as server:
        assert "999999" not in worker_pids(folder)
        sent = 0
        deadline = time.monotonic() + 60
        # new connections until both workers have answered some (the kernel picks the worker)
        while (len(worker_pids(folder)) < 2 or sent < 20) and time.monotonic() < deadline:
            assert httpx.get(f"{server.url}/no-such-page-{sent}", timeout=10).status_code == 404
            sent += 1
        assert len(worker_pids(folder)) == 2, "one worker answered every request"
        counts = []
        for _ in range(8):  # each scrape on a new connection, answered by either worker
            response = httpx.get(f"{server.url}/metrics", timeout=10)
            assert response.status_code == 200
            counts.append(unmatched_count(response.text))
            assert "prodtype_model_loaded" in response.text
            assert "prodtype_alert_figures_ok 1.0" in response.text  # the figures from the database too
        assert counts == [float(sent)] * 8  # every scrape counts both workers' requests, exactly once
    assert folder.is_dir()  # a folder the user named is kept (emptied at the next start)


def test_a_folder_made_by_the_server_is_removed_when_it_stops(tmp_path: Path) -> None:
    from prodtype.serving.multiproc import ENV, multiprocess_dir

    with multiprocess_dir() as folder:
        assert folder.is_dir() and str(folder) == __import__("os").environ[ENV]
        (folder / "counter_1.db").write_bytes(b"x")
    assert not folder.exists() and ENV not in __import__("os").environ
