"""Checks shared by the tests of embedders that put several vectors side by side."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_side_by_side(vectors: np.ndarray, parts: list[tuple[Any, list[str]]], atol: float) -> None:
    """``vectors`` (float32) is each part's ``embedder.encode(texts)``, side by side in the order given."""
    assert vectors.dtype == np.float32
    start = 0
    for embedder, texts in parts:
        block = embedder.encode(texts)
        assert len(texts) == len(vectors)
        np.testing.assert_allclose(vectors[:, start : start + block.shape[1]], block, atol=atol)
        start += block.shape[1]
    assert vectors.shape[1] == start, f"{vectors.shape[1]} columns, the parts give {start}"
