"""The single-file feature cache: round trips, the old per-file layout, and real concurrent processes.

Readers and writers here are separate Python processes (``subprocess``), as in production: API workers read
while a retrain writes, and a training can be killed at any point.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prodtype.ml.feature_store import STORE_FILE, FeatureStore, migrate_legacy
from service_support.waiting import until

DIM = 64
SRC = str(Path(__file__).resolve().parents[2] / "src")

# A vector is a function of its key, so any process can check that what it read is whole and right.
_VECTOR = "np.random.default_rng(int(k)).standard_normal({dim}).astype(np.float32)"


def vector_of(key: str) -> np.ndarray:
    return np.random.default_rng(int(key)).standard_normal(DIM).astype(np.float32)


WRITER = f"""
import sys, numpy as np
from pathlib import Path
from prodtype.ml.feature_store import FeatureStore
root, start, stop, batch = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
store = FeatureStore(root, "ns", {DIM})
print("ready", flush=True)
for first in range(start, stop, batch):
    keys = [str(k) for k in range(first, min(first + batch, stop))]
    store.put_many((k, {_VECTOR.format(dim=DIM)}) for k in keys)
"""

READER = f"""
import sys, time, numpy as np
from pathlib import Path
from prodtype.ml.feature_store import FeatureStore
root, total, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
store = FeatureStore(root, "ns", {DIM})
keys = [str(k) for k in range(total)]
counts, deadline = [], time.monotonic() + seconds
while time.monotonic() < deadline:
    found = store.get_many(keys)
    for k, v in found.items():
        if not np.array_equal(v, {_VECTOR.format(dim=DIM)}):
            raise SystemExit(f"wrong vector for key {{k}}")
    counts.append(len(found))
    if len(found) == total:
        break
print(" ".join(map(str, counts)))
"""


def _python(code: str, *args: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_round_trip_and_wrong_length(tmp_path: Path) -> None:
    with FeatureStore(tmp_path, "ns", DIM) as store:
        assert store.get("1") is None and len(store) == 0
        assert store.put_many({"1": vector_of("1"), "2": vector_of("2")}) == 2
        np.testing.assert_array_equal(store.get("1"), vector_of("1"))
        assert set(store.get_many(["1", "2", "3"])) == {"1", "2"}
        with pytest.raises(ValueError, match="length 3 for a store of dimension 64"):
            store.put("4", np.zeros(3, np.float32))
        assert len(store) == 2  # the failed batch left nothing
    # another namespace (another encoder version) does not see these vectors; another dim reads them as absent
    with FeatureStore(tmp_path, "other", DIM) as other:
        assert other.get("1") is None
    with FeatureStore(tmp_path, "ns", DIM + 1) as wider:
        assert wider.get("1") is None
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".sqlite") == [STORE_FILE]


def test_old_per_file_cache_is_read_and_migrated(tmp_path: Path) -> None:
    for key in ("11", "12", "13"):
        path = tmp_path / "ns" / key[:2] / f"{key}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, vector_of(key))
    (tmp_path / "ns" / "13" / "13.npy").write_bytes(b"damaged")  # unreadable: treated as absent
    with FeatureStore(tmp_path, "ns", DIM) as store:
        found = store.get_many(["11", "13"])
        assert list(found) == ["11"]
        np.testing.assert_array_equal(found["11"], vector_of("11"))
    with FeatureStore(tmp_path, "ns", DIM, legacy=False) as store:
        assert list(store.keys()) == ["11"]  # copied into the store on first use

    assert migrate_legacy(tmp_path, "ns", DIM, remove=True) == 2  # 11 again (harmless) and 12
    assert not (tmp_path / "ns" / "12" / "12.npy").exists()
    assert (tmp_path / "ns" / "13" / "13.npy").exists()  # a damaged file is left for a person to see
    with FeatureStore(tmp_path, "ns", DIM, legacy=False) as store:
        assert list(store.keys()) == ["11", "12"]
        np.testing.assert_array_equal(store.get("12"), vector_of("12"))


def test_concurrent_readers_and_writers_in_separate_processes(tmp_path: Path) -> None:
    total = 6000
    FeatureStore(tmp_path, "ns", DIM).close()  # the file exists before readers start
    readers = [_python(READER, tmp_path, total, 120) for _ in range(2)]
    # two writers at once, on overlapping key ranges: they wait for each other, neither fails
    writers = [_python(WRITER, tmp_path, 0, 4000, 50), _python(WRITER, tmp_path, 2000, total, 50)]
    for proc in writers:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    outputs = []
    for proc in readers:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err  # no reader ever saw a wrong or partial vector
        outputs.append([int(c) for c in out.split()])
    for counts in outputs:
        assert counts[-1] == total
        assert counts == sorted(counts)  # what a reader saw only grew
    # the reads really overlapped the writes: some reader saw a store neither empty nor full
    assert any(0 < c < total for counts in outputs for c in counts), outputs
    with FeatureStore(tmp_path, "ns", DIM) as store:
        assert len(store) == total


def test_a_writer_killed_mid_way_leaves_a_consistent_store(tmp_path: Path) -> None:
    FeatureStore(tmp_path, "ns", DIM).close()
    writer = _python(WRITER, tmp_path, 0, 10_000_000, 100)
    assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    with FeatureStore(tmp_path, "ns", DIM) as store:
        until(lambda: len(store) >= 2000, 60, "the writer did not write 2,000 vectors", every=0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    conn = sqlite3.connect(tmp_path / STORE_FILE)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    with FeatureStore(tmp_path, "ns", DIM) as store:
        keys = list(store.keys())
        assert len(keys) >= 2000 and len(keys) % 100 == 0  # whole batches only
        found = store.get_many(keys)
        for key in keys:
            np.testing.assert_array_equal(found[key], vector_of(key))
        store.put("x1", vector_of("1"))  # and it still takes writes
