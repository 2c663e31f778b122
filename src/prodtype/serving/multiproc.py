"""One set of Prometheus figures for ``prodtype serve --workers N`` (prometheus-client's multiprocess mode).

With several worker processes, each would otherwise count only the requests it answered, and a scrape would
see whichever worker the kernel handed the connection to. In multiprocess mode every worker writes its
counters and histograms to memory-mapped files in one folder, ``PROMETHEUS_MULTIPROC_DIR``, and a scrape of
any worker sums the files of all of them.

The server manages the folder: :func:`multiprocess_dir` makes a fresh one before the workers start (or
empties the one the environment names: files left by an earlier run would be added to this run's figures)
and removes the one it made when the server stops. The variable must be set before a worker imports
``prometheus_client``; uvicorn starts its workers as new processes that inherit it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.registry import Collector

ENV = "PROMETHEUS_MULTIPROC_DIR"


def enabled() -> bool:
    return bool(os.environ.get(ENV))


@contextmanager
def multiprocess_dir() -> Iterator[Path]:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty folder for the duration of a multi-worker server."""
    given = os.environ.get(ENV)
    if given:
        folder = Path(given)
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.glob("*.db"):
            stale.unlink()
    else:
        folder = Path(tempfile.mkdtemp(prefix="prodtype-metrics-"))
        os.environ[ENV] = str(folder)
    try:
        yield folder
    finally:
        if not given:
            os.environ.pop(ENV, None)
            shutil.rmtree(folder, ignore_errors=True)


def exposition(live: list[Collector]) -> bytes:
    """The figures of every worker (from the shared folder) plus ``live`` collectors read in this one
    (the served model, which every worker follows)."""
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    for collector in live:
        registry.register(collector)
    return generate_latest(registry)
