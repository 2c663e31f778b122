"""Nothing lost under load, nor when the server is killed in the middle of it: short versions of
benchmarks/soak.py (which sends 5,000 requests from 32 clients; see the README for its figures), against a
real server on SQLite and on PostgreSQL."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _load_soak() -> ModuleType:
    spec = importlib.util.spec_from_file_location("prodtype_soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


soak = _load_soak()


@pytest.fixture(scope="module")
def products(data_dir: Path) -> object:
    return soak.Products.load(data_dir, photos=30)


def test_nothing_is_lost_under_concurrent_load(
    blank_database_url: str, trained_bundle: Path, products: object, tmp_path: Path
) -> None:
    result = soak.soak(
        trained_bundle, tmp_path / "storage", blank_database_url, products, requests=160, clients=10
    )
    assert result.problems == [], result.problems
    statuses = result.record.statuses
    assert statuses[("predict_photo", 201)] > 0 and statuses[("predict_text", 201)] > 0
    assert statuses[("review", 200)] > 0 and statuses[("list", 200)] > 0
    assert result.checks["acknowledged"] == statuses[("predict_photo", 201)] + statuses[("predict_text", 201)]
    assert result.record.requests == 160


def test_a_server_killed_under_load_loses_no_acknowledged_prediction(
    blank_database_url: str, trained_bundle: Path, products: object, tmp_path: Path
) -> None:
    result = soak.soak(
        trained_bundle,
        tmp_path / "storage",
        blank_database_url,
        products,
        requests=400,
        clients=10,
        kill_after=25,
    )
    assert result.killed_after is not None and result.killed_after >= 25
    assert result.record.requests < 400  # the kill really cut the load short
    assert result.problems == [], result.problems  # after the restart too, and doctor --fix left it healthy
    assert result.doctor is not None and result.doctor["exit"] == 0 and result.doctor["healthy"]
