"""The suite's shared-fixture helper: built once however many worker processes ask at the same time, and built
again after a build that failed (never half a model reused)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from service_support.built_once import build_in

TESTS = Path(__file__).resolve().parent

WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from service_support.built_once import build_in

def build(folder):
    with open(Path({root!r}) / "builds.log", "a") as log:
        log.write("built\\n")
    time.sleep(1.0)  # long enough for every other process to reach the lock meanwhile
    (folder / "model.txt").write_text("whole")

folder = build_in(Path({root!r}), "thing", build)
print((folder / "model.txt").read_text())
"""


def test_concurrent_workers_build_once_and_all_see_the_whole_build(tmp_path: Path) -> None:
    code = WORKER.format(tests=str(TESTS), root=str(tmp_path))
    workers = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(3)
    ]
    outputs = [w.communicate(timeout=60)[0].strip() for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0]
    assert outputs == ["whole"] * 3
    assert (tmp_path / "builds.log").read_text() == "built\n"


def test_a_failed_build_is_cleared_and_built_again(tmp_path: Path) -> None:
    def broken(folder: Path) -> None:
        (folder / "half.txt").write_text("half")
        raise RuntimeError("killed half-way")

    with pytest.raises(RuntimeError):
        build_in(tmp_path, "thing", broken)

    started = time.monotonic()
    folder = build_in(tmp_path, "thing", lambda f: (f / "model.txt").write_text("whole"))
    assert time.monotonic() - started < 30  # the lock was released by the failed build
    assert sorted(p.name for p in folder.iterdir()) == [".built", "model.txt"]
    # Built: later calls reuse it without building.
    assert build_in(tmp_path, "thing", lambda f: pytest.fail("built twice")) == folder
