"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def loop_image_cache(feature_cache_dir: Path) -> Path:
    """The image feature cache the session's other trainings use: features are computed once per image."""
    return feature_cache_dir / "image"
