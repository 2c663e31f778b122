"""Serving speed: single requests, concurrent clients and bulk, against a real server, in one run.

What it measures (server and load generator on this machine, default model, 500x500 JPEG photos):

- ``POST /api/v1/predictions`` one request at a time, with a photo and text only: p50 / p95 / p99;
- with photos at 1, 8 and 32 concurrent clients: predictions per second, p50 and p99, errors;
- the bulk API (``POST /api/v1/predictions/batch``, 100 products per request) and ``prodtype predict-batch``
  on a challenge-format file: products per second;
- beside them, measured in the same run: the model in this process (``bundle.predict``, no HTTP, no
  database) and the floor, the sum of the stages that cannot go (decode + resize, the image encoder, the
  text features), each figure also as a ratio to them;
- that nothing was lost: every 201 has its record in the database and its photo in the store;
- with ``--shadow``: the same model registered as version 1 is put in shadow (``PUT
  /api/v1/models/1/shadow``) after the first rows, and the one-at-a-time and concurrent rows run again
  with every prediction also scored by it off the request path, so that both latencies come from the same
  run and server; then how many products the shadow scored and dropped (queue full).

The load generator is a small asyncio HTTP/1.1 client with keep-alive connections and pre-built requests,
so that it takes little of the CPU the server needs. Every photo is distinct (a random crop of a sample
photo, re-encoded), so the content-addressed store writes a file for each.

    python benchmarks/bench_serving.py [--data ../shared/data/rakuten] [--model BUNDLE] [--workers 1]
        [--clients 1,8,32] [--shadow]

Without ``--model`` (or PRODTYPE_MODEL_PATH) a model is trained on ``--data`` first, into a temporary folder.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import csv
import io
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from PIL import Image
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


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (5 min {five:.2f})"


# -- inputs ---------------------------------------------------------------------------------------


def distinct_photos(data: Path, count: int, seed: int = 0) -> list[bytes]:
    """``count`` different 500x500 JPEGs: random crops of the sample's photos, resized and re-encoded."""
    sources = sorted((data / "image_train").glob("*.jpg"))
    if not sources:
        raise SystemExit(f"no photos in {data / 'image_train'}")
    rng = random.Random(seed)
    out = []
    for i in range(count):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        side = rng.randint(400, img.width)
        x, y = rng.randint(0, img.width - side), rng.randint(0, img.height - side)
        img = img.crop((x, y, x + side, y + side)).resize((500, 500), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=rng.randint(85, 95))
        out.append(buf.getvalue())
    return out


def load_texts(data: Path) -> list[tuple[str, str]]:
    x = pd.read_csv(data / "X_train.csv", index_col=0, dtype={"designation": str, "description": str})
    x = x.fillna("")
    return list(zip(x["designation"], x["description"], strict=True))


# -- a light HTTP/1.1 load generator ---------------------------------------------------------------


def multipart(fields: dict[str, str], photo: bytes | None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    if photo is not None:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        )
        parts.append(head.encode() + photo + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def http_request(path: str, token: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


@dataclass
class Outcome:
    seconds: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    wall: float = 0.0


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    writer.write(request)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return status, await reader.readexactly(length)


async def _client(
    port: int, requests: list[bytes], next_index: Callable[[], int | None], out: Outcome
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while (i := next_index()) is not None:
            start = time.perf_counter()
            status, body = await _exchange(reader, writer, requests[i])
            out.seconds.append(time.perf_counter() - start)
            out.statuses.append(status)
            out.bodies.append(body)
    finally:
        writer.close()


def run_load(port: int, requests: list[bytes], clients: int) -> Outcome:
    """Send every request once, from ``clients`` concurrent keep-alive connections."""
    out = Outcome()
    counter = iter(range(len(requests)))

    async def main() -> None:
        start = time.perf_counter()
        await asyncio.gather(
            *(_client(port, requests, lambda: next(counter, None), out) for _ in range(clients))
        )
        out.wall = time.perf_counter() - start

    asyncio.run(main())
    return out


# -- the server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: Path, storage: Path, workers: int) -> tuple[subprocess.Popen[str], int, list[str]]:
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")}
    env |= {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_MODEL_PATH": str(model),
        "PRODTYPE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PRODTYPE_FOLLOW_CHAMPION": "false",
    }
    command = [
        str(Path(sys.executable).with_name("prodtype")),
        "run",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True).start()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server exited:\n" + "".join(lines))
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return process, port, lines
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise SystemExit("the server did not start:\n" + "".join(lines))


def train_bundle(data: Path, out: Path) -> Path:
    from prodtype.data.challenge import find_challenge_files
    from prodtype.ml.train import train_model

    dataset = find_challenge_files(data).load()
    console.print(f"training a model on {len(dataset)} products from {data} (no --model given)…")
    train_model(dataset, out, progress=False)
    return out


# -- shadow -----------------------------------------------------------------------------------------


def register_for_shadow(model: Path, storage: Path, copy: Path) -> None:
    """The bundle registered as version 1 of the server's embedded registry (not the champion: the server
    answers with PRODTYPE_MODEL_PATH), so that it can be put in shadow over the API."""
    import shutil

    from prodtype.config import Settings
    from prodtype.loop.registry import Registry

    settings = Settings(_env_file=None, storage_dir=storage)  # type: ignore[call-arg]
    shutil.copytree(model, copy)
    Registry.from_settings(settings).log_and_register(copy, run_name="shadow", params={}, metrics={}, tags={})


def _shadow_status(port: int, token: str) -> dict[str, object]:
    import httpx

    r = httpx.get(
        f"http://127.0.0.1:{port}/api/v1/models/shadow", headers={"Authorization": f"Bearer {token}"}
    )
    r.raise_for_status()
    answer: dict[str, object] = r.json()
    return answer


def shadow_on(port: int, token: str) -> dict[str, object]:
    import httpx

    r = httpx.put(
        f"http://127.0.0.1:{port}/api/v1/models/1/shadow",
        headers={"Authorization": f"Bearer {token}"},
        json={"reason": "serving benchmark"},
        timeout=300,
    )
    r.raise_for_status()
    deadline = time.monotonic() + 300
    while dict(_shadow_status(port, token)["scorer"]).get("version") != 1:  # type: ignore[call-overload]
        if time.monotonic() > deadline:
            raise SystemExit("the shadow model was not installed")
        time.sleep(0.2)
    return {"installed": True}


def shadow_off(port: int, token: str) -> dict[str, object]:
    """Wait until the shadow has dealt with every product, then stop it; its counts."""
    import httpx

    deadline = time.monotonic() + 600
    while True:
        scorer = dict(_shadow_status(port, token)["scorer"])  # type: ignore[call-overload]
        done = int(scorer["scored"]) + int(scorer["dropped"]) + int(scorer["failed"])
        if done >= int(scorer["submitted"]) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    httpx.request(
        "DELETE",
        f"http://127.0.0.1:{port}/api/v1/models/shadow",
        headers={"Authorization": f"Bearer {token}"},
    ).raise_for_status()
    return {k: scorer[k] for k in ("submitted", "scored", "dropped", "failed", "queue_size")}


def shadow_table(rows: list[tuple[str, Outcome, int]], figures: dict[str, object]) -> None:
    by_name = {name: out for name, out, _ in rows}
    table = Table(title="the same rows with a second model in shadow (same run, same server)")
    for column in ("what", "p50 ms", "p50 + shadow", "ratio", "p95 ms", "p95 + shadow", "ratio"):
        table.add_column(column, justify="left" if column == "what" else "right")
    for name, out in by_name.items():
        shadowed = by_name.get(f"{name} + shadow")
        if shadowed is None:
            continue
        a = [s * 1000 for s in out.seconds]
        b = [s * 1000 for s in shadowed.seconds]
        p50a, p50b, p95a, p95b = percentile(a, 50), percentile(b, 50), percentile(a, 95), percentile(b, 95)
        table.add_row(
            name,
            f"{p50a:.1f}",
            f"{p50b:.1f}",
            f"{p50b / p50a:.2f}x",
            f"{p95a:.1f}",
            f"{p95b:.1f}",
            f"{p95b / p95a:.2f}x",
        )
    console.print(table)
    console.print(f"shadow scorer: {figures.get('shadow')}")


# -- in-process baselines --------------------------------------------------------------------------


def in_process(
    model: Path, texts: list[tuple[str, str]], photos: list[bytes], count: int
) -> dict[str, float]:
    """p50 milliseconds of the model in this process, and of the stages that make the floor."""
    from prodtype.data.text import join_text
    from prodtype.ml.bundle import load_bundle

    bundle = load_bundle(model)
    bundle.warm_up()
    encoder = bundle.encoder
    joined = [join_text(d, s) for d, s in texts]

    def p50(fn: Callable[[int], object]) -> float:
        for i in range(10):
            fn(i)
        times = []
        for i in range(count):
            start = time.perf_counter()
            fn(i)
            times.append((time.perf_counter() - start) * 1000)
        return statistics.median(times)

    pixels = [encoder.prepare(p) for p in photos[:count]]
    return {
        "model_photo": p50(lambda i: bundle.predict(*texts[i % len(texts)], image=photos[i % len(photos)])),
        "model_text": p50(lambda i: bundle.predict(*texts[i % len(texts)])),
        "decode_resize": p50(lambda i: encoder.prepare(photos[i % len(photos)])),
        "image_encoder": p50(lambda i: encoder.encode_preprocessed(pixels[i % len(pixels)][None])),
        "text_features": p50(lambda i: bundle.model.tfidf.transform([joined[i % len(joined)]])),
    }


# -- checks ----------------------------------------------------------------------------------------


def check_records(storage: Path, created: set[int]) -> str:
    """Every created id is in the database, with its photo file when it has one."""
    with sqlite3.connect(storage / "prodtype.db") as db:
        rows = dict(db.execute("SELECT id, image_sha256 FROM predictions").fetchall())
    missing = sorted(created - set(rows))
    no_file = [
        i for i in created if rows.get(i) and not (storage / "images" / rows[i][:2] / rows[i]).is_file()
    ]
    if missing or no_file:
        return f"LOST: {len(missing)} records missing, {len(no_file)} photos missing"
    return f"all {len(created)} acknowledged predictions recorded, photos present"


def ids_of(out: Outcome) -> set[int]:
    return {
        json.loads(body)["id"] for status, body in zip(out.statuses, out.bodies, strict=True) if status == 201
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="challenge sample folder")
    env_model = os.environ.get("PRODTYPE_MODEL_PATH")
    parser.add_argument(
        "--model", type=Path, default=Path(env_model) if env_model else None, help="model bundle"
    )
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per kind")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes")
    parser.add_argument("--bulk-products", type=int, default=2000, help="products for predict-batch and bulk")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--clients", default="1,8,32", help="concurrent clients of the load rows, comma-separated"
    )
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="run the rows again with the model also in shadow, and compare (same run, same server)",
    )
    args = parser.parse_args(argv)
    client_counts = [int(c) for c in args.clients.split(",") if c.strip()]

    started_load = load()
    texts = load_texts(args.data)
    per_pass = 2 * args.requests + sum(max(args.requests, 25 * c) for c in client_counts)
    singles = 20 + per_pass * (2 if args.shadow else 1)
    bulk_api = min(args.bulk_products, 1000)
    photos = distinct_photos(args.data, max(singles + bulk_api, args.bulk_products))
    console.print(f"{len(photos)} distinct 500x500 photos; load {started_load}")
    figures: dict[str, object] = {"load_start": started_load, "workers": args.workers, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        tmp_path = Path(tmp)
        model = args.model or train_bundle(args.data, tmp_path / "model")
        baseline = in_process(model, texts, photos, 200)
        floor = baseline["decode_resize"] + baseline["image_encoder"] + baseline["text_features"]
        storage = tmp_path / "storage"
        if args.shadow:
            register_for_shadow(model, storage, tmp_path / "registered")
        process, port, _lines = start_server(model, storage, args.workers)
        try:
            import httpx

            login = httpx.post(
                f"http://127.0.0.1:{port}/api/v1/auth/token",
                data={"username": "admin", "password": ADMIN_PASSWORD},
            )
            login.raise_for_status()
            token = login.json()["access_token"]

            def single(i: int, with_photo: bool) -> bytes:
                designation, description = texts[i % len(texts)]
                body, ctype = multipart(
                    {"designation": designation, "description": description},
                    photos[i] if with_photo else None,
                )
                return http_request("/api/v1/predictions", token, body, ctype)

            n = args.requests
            cursor = 0

            def batch_of(count: int, with_photo: bool = True) -> list[bytes]:
                nonlocal cursor
                out = [single(cursor + i, with_photo) for i in range(count)]
                cursor += count
                return out

            run_load(port, batch_of(20), 2)  # warm the server's threads and connections
            created: set[int] = set()
            rows: list[tuple[str, Outcome, int]] = []

            def load_rows(suffix: str) -> None:
                seq_photo = run_load(port, batch_of(n), 1)
                seq_text = run_load(port, batch_of(n, with_photo=False), 1)
                rows.extend(
                    [
                        (f"one at a time, photo{suffix}", seq_photo, 1),
                        (f"one at a time, text only{suffix}", seq_text, 1),
                    ]
                )
                for clients in client_counts:
                    rows.append(
                        (
                            f"{clients} clients, photo{suffix}",
                            run_load(port, batch_of(max(n, 25 * clients)), clients),
                            clients,
                        )
                    )

            load_rows("")
            if args.shadow:
                figures["shadow"] = shadow_on(port, token)
                load_rows(" + shadow")
                figures["shadow"] |= shadow_off(port, token)
            for _, out, _ in rows:
                created |= ids_of(out)

            # bulk API: 100 products per request, photos as base64
            bulk_items = [
                {
                    "designation": texts[i % len(texts)][0],
                    "description": texts[i % len(texts)][1],
                    "image_base64": base64.b64encode(photos[singles + i]).decode(),
                }
                for i in range(bulk_api)
            ]
            bulk_requests = [
                http_request(
                    "/api/v1/predictions/batch",
                    token,
                    json.dumps(bulk_items[i : i + 100]).encode(),
                    "application/json",
                )
                for i in range(0, len(bulk_items), 100)
            ]
            bulk = run_load(port, bulk_requests, 2)
            bulk_created = 0
            for status, body in zip(bulk.statuses, bulk.bodies, strict=True):
                if status == 200:
                    answer = json.loads(body)
                    bulk_created += answer["created"]
                    created |= {item["prediction"]["id"] for item in answer["data"] if item["status"] == 201}
            bulk_rate = bulk_created / bulk.wall
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
        records = check_records(storage, created)

        # predict-batch on a challenge-format file of distinct photos
        images = tmp_path / "images"
        images.mkdir()
        with (tmp_path / "X.csv").open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["", "designation", "description", "productid", "imageid"])
            for i in range(args.bulk_products):
                (images / f"image_{i + 1}_product_{i + 1}.jpg").write_bytes(photos[i])
                writer.writerow([i, *texts[i % len(texts)], i + 1, i + 1])
        command = [
            str(Path(sys.executable).with_name("prodtype")),
            "predict-batch",
            "--model",
            str(model),
            "--x",
            str(tmp_path / "X.csv"),
            "--images",
            str(images),
            "--out",
            str(tmp_path / "out.csv"),
        ]
        start = time.perf_counter()
        subprocess.run(
            command,
            check=True,
            capture_output=True,
            env={**os.environ, "PRODTYPE_STORAGE_DIR": str(tmp_path / "cli")},
        )
        batch_rate = args.bulk_products / (time.perf_counter() - start)

    table = Table(
        title=f"prodtype serving, {args.workers} worker(s), {os.cpu_count()} CPUs, "
        f"load at start {started_load}"
    )
    for column in (
        "what",
        "requests",
        "errors",
        "per second",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "p50 / model",
        "p50 / floor",
    ):
        table.add_column(column, justify="left" if column == "what" else "right")
    for name, out, _ in rows:
        ms = [s * 1000 for s in out.seconds]
        errors = sum(1 for s in out.statuses if s != 201)
        base = baseline["model_text"] if "text" in name else baseline["model_photo"]
        p50 = percentile(ms, 50)
        table.add_row(
            name,
            str(len(ms)),
            str(errors),
            f"{len(ms) / out.wall:.0f}",
            f"{p50:.1f}",
            f"{percentile(ms, 95):.1f}",
            f"{percentile(ms, 99):.1f}",
            f"{p50 / base:.2f}x",
            f"{p50 / floor:.2f}x" if "photo" in name else "",
        )
        figures[name] = {
            "n": len(ms),
            "errors": errors,
            "per_s": len(ms) / out.wall,
            "p50": p50,
            "p95": percentile(ms, 95),
            "p99": percentile(ms, 99),
        }
    table.add_row(
        "bulk API, 100 per request",
        str(len(bulk.statuses)),
        str(sum(s != 200 for s in bulk.statuses)),
        f"{bulk_rate:.0f}",
        "",
        "",
        "",
        "",
        "",
    )
    table.add_row(
        f"prodtype predict-batch, {args.bulk_products}", "", "", f"{batch_rate:.0f}", "", "", "", "", ""
    )
    console.print(table)
    if args.shadow:
        shadow_table(rows, figures)
    stages = Table(title="in this process, p50 ms (same run)")
    for column in (
        "model, photo",
        "model, text only",
        "decode + resize",
        "image encoder",
        "text features",
        "floor",
    ):
        stages.add_column(column, justify="right")
    stages.add_row(
        *(
            f"{baseline[k]:.2f}"
            for k in ("model_photo", "model_text", "decode_resize", "image_encoder", "text_features")
        ),
        f"{floor:.2f}",
    )
    console.print(stages)
    console.print(records)
    console.print(
        f"bulk API {bulk_rate:.0f} products/s = {bulk_rate / batch_rate:.0%} of predict-batch; "
        f"load at end {load()}"
    )
    figures |= {
        "in_process_ms": baseline,
        "floor_ms": floor,
        "bulk_per_s": bulk_rate,
        "predict_batch_per_s": batch_rate,
        "records": records,
        "load_end": load(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if records.startswith("all") else 1


if __name__ == "__main__":
    sys.exit(main())
