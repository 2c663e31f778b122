"""Importing a benchmark script (``benchmarks/*.py``) to test its hand-written parts."""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def benchmark_module(name: str, *folders: str) -> Iterator[ModuleType]:
    """``benchmarks/<name>.py``, imported with ``benchmarks/`` (where it finds ``sample_folds``) and the
    repository's ``folders`` on ``sys.path`` while the block runs."""
    paths = [str(ROOT / "benchmarks"), *(str(ROOT / folder) for folder in folders)]
    sys.path[:0] = paths
    try:
        yield importlib.import_module(name)
    finally:
        for path in paths:
            sys.path.remove(path)
