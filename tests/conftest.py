"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The challenge sample: ``$PRODTYPE_DATA_DIR``, else ``../shared/data/rakuten`` beside the repository."""
    env = os.environ.get("PRODTYPE_DATA_DIR")
    path = Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data" / "rakuten"
    if not (path / "X_train.csv").is_file():
        pytest.fail(f"no challenge sample at {path} (expected X_train.csv there): set PRODTYPE_DATA_DIR")
    return path
