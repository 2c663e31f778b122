"""Expensive session fixtures built once per test run, however many pytest-xdist workers ask for them.

``make test`` runs the suite on several workers (``-n``); each is its own process with its own session
fixtures, so a model trained "once per session" would be trained once per worker, all at the same time on
the same cores. :func:`built_once` builds into a folder shared by the run's workers, under a file lock: the
first worker builds, the others wait for it and reuse what it wrote. Without xdist it is a plain build in the
session's temporary folder. What is built must be read-only for the tests (they copy it to change it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

DONE = ".built"


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder of the whole run: the parent of the worker's own under xdist."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The folder ``shared-<name>`` of this run, filled by ``build(folder)`` the first time it is needed."""
    return build_in(run_folder(tmp_path_factory), name, build)


def build_in(root: Path, name: str, build: Callable[[Path], object]) -> Path:
    """``root/shared-<name>``, built by the first process to ask while the others wait on the lock.

    A build that failed (an exception, or a worker killed half-way) leaves no ``.built`` mark, so the next
    process to ask clears the folder and builds again rather than reuse half a model."""
    folder = root / f"shared-{name}"
    with FileLock(str(root / f"shared-{name}.lock")):
        if not (folder / DONE).is_file():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            build(folder)
            (folder / DONE).touch()
    return folder
