"""Latency of ``POST /api/v1/predictions`` against a real server (``prodtype run`` under uvicorn, SQLite).

For each kind of request (with a photo, text only) it sends ``--requests`` requests one after the other over
HTTP on localhost and reports p50 / p95 / mean in milliseconds. Baseline, measured in the same run on the
same products and interleaved with the requests: the model's ``predict`` called in this process (no HTTP, no
database, no storage); the ratio is what the service adds on top of inference.

    python benchmarks/bench_serving.py [--data ../shared/data/rakuten] [--model BUNDLE] [--requests 200]

Without ``--model`` (or PRODTYPE_MODEL_PATH) a model is trained on ``--data`` first, into a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pandas as pd
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PRODTYPE_DATA_DIR", ROOT.parent / "shared" / "data" / "rakuten"))
ADMIN_PASSWORD = "benchmark admin password"  # a throwaway server on a temporary database
console = Console()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def timed_pair(
    first: Callable[[int], object], second: Callable[[int], object], count: int, warmup: int = 10
) -> tuple[list[float], list[float]]:
    """Milliseconds per call of ``first`` and ``second``, called alternately on the same inputs."""
    for i in range(warmup):
        first(i)
        second(i)
    a, b = [], []
    for i in range(count):
        start = time.perf_counter()
        first(i)
        middle = time.perf_counter()
        second(i)
        a.append((middle - start) * 1000)
        b.append((time.perf_counter() - middle) * 1000)
    return a, b


def load_products(data: Path, count: int) -> tuple[list[tuple[str, str]], list[bytes]]:
    x = pd.read_csv(data / "X_train.csv", index_col=0, dtype={"designation": str, "description": str})
    x = x.fillna("")
    texts = list(zip(x["designation"], x["description"], strict=True))
    photos = [p.read_bytes() for p in sorted((data / "image_train").glob("*.jpg"))[:count]]
    if not photos:
        raise SystemExit(f"no photos in {data / 'image_train'}")
    return [texts[i % len(texts)] for i in range(count)], photos


def train_bundle(data: Path, out: Path) -> Path:
    from prodtype.data.challenge import find_challenge_files, load_dataset
    from prodtype.ml.train import train_model

    files = find_challenge_files(data)
    dataset = load_dataset(files["x"], files["y"], files["images"], files["image_only"])  # type: ignore[arg-type]
    console.print(f"training a model on {len(dataset)} products from {data} (no --model given)…")
    train_model(dataset, out)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, storage: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")}
    env |= {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_MODEL_PATH": str(model),
        "PRODTYPE_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }
    command = [str(Path(sys.executable).with_name("prodtype")), "run", "--port", str(port)]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited:\n" + "".join(lines))
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return process, url, lines
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start:\n" + "".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="challenge sample folder")
    env_model = os.environ.get("PRODTYPE_MODEL_PATH")
    parser.add_argument(
        "--model", type=Path, default=Path(env_model) if env_model else None, help="model bundle"
    )
    parser.add_argument("--requests", type=int, default=200, help="timed requests per row")
    args = parser.parse_args(argv)

    texts, photos = load_products(args.data, args.requests)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        model = args.model or train_bundle(args.data, Path(tmp) / "model")
        from prodtype.services.model_holder import load_model

        predictor = load_model(model)
        console.print(f"model {predictor.version} from {model}; {args.requests} requests per row")

        process, url, _lines = start_server(model, Path(tmp) / "storage")
        try:
            with httpx.Client(base_url=url, timeout=60) as client:
                login = client.post(
                    "/api/v1/auth/token", data={"username": "admin", "password": ADMIN_PASSWORD}
                )
                login.raise_for_status()
                headers = {"Authorization": f"Bearer {login.json()['access_token']}"}

                def post(i: int, with_image: bool) -> None:
                    designation, description = texts[i % len(texts)]
                    files: dict[str, object] = {
                        "designation": (None, designation),
                        "description": (None, description),
                    }
                    if with_image:
                        files["image"] = ("photo.jpg", photos[i % len(photos)], "image/jpeg")
                    response = client.post("/api/v1/predictions", files=files, headers=headers)
                    if response.status_code != 201:
                        raise SystemExit(f"request {i} failed: {response.status_code} {response.text}")

                # Interleaved, so that the load of the machine weighs on the figure and its baseline alike.
                http_image, direct_image = timed_pair(
                    lambda i: post(i, True),
                    lambda i: predictor.predict(*texts[i], image=photos[i % len(photos)]),
                    args.requests,
                )
                http_text, direct_text = timed_pair(
                    lambda i: post(i, False), lambda i: predictor.predict(*texts[i]), args.requests
                )
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)

    table = Table(title=f"POST /api/v1/predictions, {args.requests} sequential requests, localhost")
    for column in ("request", "p50 ms", "p95 ms", "mean ms", "baseline p50 ms (model.predict)", "ratio p50"):
        table.add_column(column, justify="right" if column != "request" else "left")
    for name, http, direct in (
        ("with image", http_image, direct_image),
        ("text only", http_text, direct_text),
    ):
        p50, base = percentile(http, 50), percentile(direct, 50)
        table.add_row(
            name,
            f"{p50:.1f}",
            f"{percentile(http, 95):.1f}",
            f"{statistics.fmean(http):.1f}",
            f"{base:.1f}",
            f"{p50 / base:.2f}x",
        )
    console.print(table)
    console.print(f"{os.cpu_count()} CPUs; SQLite database and image store in a temporary folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
