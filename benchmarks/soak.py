"""Soak test: nothing lost under load, and nothing lost when the server is killed in the middle of it.

A real server (``prodtype run``, its own process) on SQLite or PostgreSQL takes a mix of requests from
many concurrent clients: 60 % predictions (half with a photo), 20 % lists, 15 % reviews (several clients
often review the same prediction at once: one wins, the others get 409), 5 % photo downloads. Then the
database and the image store are checked against what the clients were told:

- no response >= 500 (and no connection error, outside a deliberate kill);
- every prediction answered 201 is in the database, with its photo file when it had one;
- every review answered 200 is applied exactly once (the row says that decision and reviewer, the audit
  log has one review event for it) and no prediction was reviewed by two clients;
- no orphan image file and no half-written one (``prodtype doctor``).

With ``--kill-after N`` the server gets SIGKILL once N predictions have been acknowledged, is started
again on the same storage, and the same checks run (acknowledged predictions must all be there; what was
in flight may or may not be); ``prodtype doctor --fix`` then cleans the image store.

    python benchmarks/soak.py --model BUNDLE [--requests 5000] [--clients 32]
                              [--database sqlite|postgres|both] [--kill-after N]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("PRODTYPE_DATA_DIR", ROOT.parent / "shared" / "data" / "rakuten"))
DEFAULT_POSTGRES = os.environ.get(
    "PRODTYPE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
API = "/api/v1"
ADMIN_PASSWORD = "soak admin password"
USER_PASSWORD = "soak user password"
MIX = (("predict_photo", 30), ("predict_text", 30), ("list", 20), ("review", 15), ("image", 5))


# -- the server --------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def kill(self) -> None:
        """SIGKILL the server and everything it started: no shutdown code runs."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)


def prodtype_command() -> str:
    return str(Path(sys.executable).with_name("prodtype"))


@contextmanager
def running_server(env: dict[str, str], log: Path, timeout: float = 240) -> Iterator[Server]:
    """``prodtype run`` on a free port in its own process group; yields once /api/v1/health says ok."""
    port = _free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")} | env
    with log.open("ab") as out:
        process = subprocess.Popen(
            [prodtype_command(), "run", "--host", "127.0.0.1", "--port", str(port)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=env["PRODTYPE_STORAGE_DIR"],
            start_new_session=True,
        )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}: see {log}")
            try:
                if httpx.get(f"{server.url}{API}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer within {timeout} s: see {log}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


# -- the load ----------------------------------------------------------------------------------------


@dataclass
class Products:
    texts: list[tuple[str, str]]
    photos: list[bytes]

    @classmethod
    def load(cls, data: Path, photos: int = 60) -> Products:
        x = pd.read_csv(data / "X_train.csv", index_col=0, dtype={"designation": str, "description": str})
        x = x.fillna("")
        texts = list(zip(x["designation"], x["description"].str.slice(0, 2000), strict=True))
        files = sorted((data / "image_train").glob("*.jpg"))[:photos]
        return cls(texts, [p.read_bytes() for p in files])


@dataclass
class Record:
    """What the clients were told, to be checked against the database."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    transport_errors: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    created: dict[int, str | None] = field(default_factory=dict)  # id -> sha256 of the photo served back
    with_photo: list[int] = field(default_factory=list)
    reviews: dict[int, list[tuple[str, str]]] = field(default_factory=lambda: defaultdict(list))
    images_checked: int = 0
    image_mismatches: list[int] = field(default_factory=list)

    def note(self, kind: str, response: httpx.Response, seconds: float) -> None:
        with self.lock:
            self.statuses[(kind, response.status_code)] += 1
            self.latencies[kind].append(seconds * 1000)
            if response.status_code >= 500:
                self.server_errors.append(f"{kind}: {response.status_code} {response.text[:300]}")

    @property
    def requests(self) -> int:
        return sum(self.statuses.values()) + sum(self.transport_errors.values())


def _token(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def make_users(url: str, customers: int, reviewers: int) -> dict[str, list[str]]:
    names: dict[str, list[str]] = {"customer": [], "reviewer": []}
    with httpx.Client(base_url=url, timeout=60) as client:
        admin = _token(client, "admin", ADMIN_PASSWORD)
        for role, count in (("customer", customers), ("reviewer", reviewers)):
            for i in range(count):
                name = f"soak-{role}-{i}"
                body = {"username": name, "password": USER_PASSWORD, "role": role}
                response = client.post(f"{API}/users", json=body, headers=admin)
                if response.status_code not in (201, 409):
                    response.raise_for_status()
                names[role].append(name)
    return names


class Load:
    """``clients`` threads sending ``requests`` requests in all, each thread with its own connection."""

    def __init__(
        self,
        url: str,
        products: Products,
        users: dict[str, list[str]],
        record: Record,
        *,
        requests: int,
        clients: int,
        seed: int = 0,
        stop_when: Any = None,
    ) -> None:
        self.url, self.products, self.users, self.record = url, products, users, record
        self.remaining = requests
        self.clients = clients
        self.seed = seed
        self.stop_when = stop_when
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self.errors: list[BaseException] = []

    def _take(self) -> bool:
        with self._lock:
            if self.remaining <= 0 or self.stop.is_set():
                return False
            self.remaining -= 1
            return True

    def run(self) -> None:
        threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(self.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.errors:
            raise self.errors[0]

    def _client(self, index: int) -> None:
        try:
            rng = random.Random(self.seed * 1000 + index)
            customer = self.users["customer"][index % len(self.users["customer"])]
            reviewer = self.users["reviewer"][index % len(self.users["reviewer"])]
            with httpx.Client(base_url=self.url, timeout=120) as client:
                headers = {
                    "customer": _token(client, customer, USER_PASSWORD),
                    "reviewer": _token(client, reviewer, USER_PASSWORD),
                }
                kinds, weights = zip(*MIX, strict=True)
                while self._take():
                    kind = rng.choices(kinds, weights)[0]
                    try:
                        self._one(client, rng, kind, headers, reviewer)
                    except httpx.TransportError as exc:
                        with self.record.lock:
                            self.record.transport_errors[f"{kind}: {type(exc).__name__}"] += 1
                        if self.stop.is_set():
                            return
                        time.sleep(0.05)
                    if self.stop_when is not None and self.stop_when(self.record):
                        self.stop.set()
        except BaseException as exc:
            if not self.stop.is_set():  # after a deliberate kill, a failed login is expected
                self.errors.append(exc)

    def _one(
        self, client: httpx.Client, rng: random.Random, kind: str, headers: dict[str, dict[str, str]], me: str
    ) -> None:
        record = self.record
        if kind in ("review", "image"):
            with record.lock:
                if not (record.created if kind == "review" else record.with_photo):
                    kind = "predict_photo" if kind == "image" else "predict_text"  # nothing to act on yet
        if kind.startswith("predict"):
            designation, description = rng.choice(self.products.texts)
            files: dict[str, Any] = {"designation": (None, designation), "description": (None, description)}
            photo = rng.choice(self.products.photos) if kind == "predict_photo" else None
            if photo is not None:
                files["image"] = ("photo.jpg", photo, "image/jpeg")
            start = time.perf_counter()
            response = client.post(f"{API}/predictions", files=files, headers=headers["customer"])
            record.note(kind, response, time.perf_counter() - start)
            if response.status_code == 201:
                with record.lock:
                    pid = int(response.json()["id"])
                    record.created[pid] = hashlib.sha256(photo).hexdigest() if photo is not None else None
                    if photo is not None:
                        record.with_photo.append(pid)
            return
        if kind == "list":
            params = {
                "status": rng.choice(["pending", "accepted", "rejected", None]),
                "sort": rng.choice(["confidence", "-created_at", "id"]),
                "limit": rng.choice([5, 20, 100]),
            }
            start = time.perf_counter()
            response = client.get(
                f"{API}/predictions",
                params={k: v for k, v in params.items() if v is not None},
                headers=headers[rng.choice(["customer", "reviewer"])],
            )
            record.note(kind, response, time.perf_counter() - start)
            return
        with record.lock:
            known = list(record.created) if kind == "review" else list(record.with_photo)
        if kind == "review":
            # From the most recent ones, so that several clients often review the same prediction at once.
            pid = rng.choice(known[-8:])
            decision = rng.choice(["accept", "accept", "reject"])
            start = time.perf_counter()
            response = client.post(
                f"{API}/predictions/{pid}/review", json={"decision": decision}, headers=headers["reviewer"]
            )
            record.note(kind, response, time.perf_counter() - start)
            if response.status_code == 200:
                with record.lock:
                    record.reviews[pid].append((decision, me))
            return
        pid = rng.choice(known)
        start = time.perf_counter()
        response = client.get(f"{API}/predictions/{pid}/image", headers=headers["reviewer"])
        record.note(kind, response, time.perf_counter() - start)
        if response.status_code == 200:
            with record.lock:
                record.images_checked += 1
                expected = record.created.get(pid)
                if expected is not None and hashlib.sha256(response.content).hexdigest() != expected:
                    record.image_mismatches.append(pid)


# -- the checks ----------------------------------------------------------------------------------------


def verify(database_url: str, storage: Path, record: Record, *, killed: bool = False) -> dict[str, Any]:
    """Compare the database and the image store with what the clients were told; the problems found."""
    from sqlalchemy import func, select

    from prodtype.db.engine import make_engine, make_sessionmaker
    from prodtype.db.tables import AuditEvent, Prediction, Status, User
    from prodtype.serving.doctor import examine
    from prodtype.serving.storage import LocalImageStore

    problems: list[str] = list(record.server_errors[:20])
    if record.server_errors:
        problems.insert(0, f"{len(record.server_errors)} response(s) >= 500")
    if record.transport_errors and not killed:
        problems.append(f"connection errors: {dict(record.transport_errors)}")
    if record.image_mismatches:
        problems.append(f"photos served back with other bytes: {record.image_mismatches[:10]}")
    store = LocalImageStore(storage / "images")
    engine = make_engine(database_url)
    try:
        with make_sessionmaker(engine)() as session:
            rows = {
                p.id: p
                for p in session.scalars(select(Prediction).where(Prediction.id.in_(list(record.created))))
            }
            missing = sorted(set(record.created) - set(rows))
            if missing:
                problems.append(f"{len(missing)} acknowledged prediction(s) missing: {missing[:10]}")
            no_file = [
                pid
                for pid, digest in record.created.items()
                if pid in rows
                and digest is not None
                and (rows[pid].image_sha256 is None or not store.exists(rows[pid].image_sha256))
            ]
            if no_file:
                problems.append(f"{len(no_file)} acknowledged prediction(s) without photo: {no_file[:10]}")
            names = dict(session.execute(select(User.id, User.username)).all())
            events = Counter(
                int(entity_id)
                for (entity_id,) in session.execute(
                    select(AuditEvent.entity_id).where(
                        AuditEvent.action.in_(["prediction.accepted", "prediction.rejected"])
                    )
                ).all()
            )
            twice = [pid for pid, done in record.reviews.items() if len(done) > 1]
            if twice:
                problems.append(f"{len(twice)} prediction(s) reviewed by two clients: {twice[:10]}")
            wrong = []
            for pid, done in record.reviews.items():
                decision, reviewer = done[0]
                row = rows.get(pid)
                status = Status.ACCEPTED.value if decision == "accept" else Status.REJECTED.value
                if (
                    row is None
                    or row.status != status
                    or names.get(row.reviewed_by_id or -1) != reviewer
                    or events[pid] != 1
                ):
                    wrong.append(pid)
            if wrong:
                problems.append(f"{len(wrong)} review(s) not applied exactly once: {wrong[:10]}")
            total = session.scalar(select(func.count()).select_from(Prediction)) or 0
            report = examine(engine, session, store)
    finally:
        engine.dispose()
    if report.integrity != "ok":
        problems.append(f"database integrity: {report.integrity}")
    if report.missing_images:
        problems.append(f"predictions whose photo file is missing: {report.missing_images[:10]}")
    if not killed and (report.orphan_files or report.temporary_files):
        problems.append(f"orphan files: {report.orphan_files[:5]}, temporary: {report.temporary_files[:5]}")
    return {
        "problems": problems,
        "predictions_in_database": total,
        "acknowledged": len(record.created),
        "reviews_applied": len(record.reviews),
        "orphan_files": len(report.orphan_files),
        "temporary_files": len(report.temporary_files),
    }


# -- a whole run ---------------------------------------------------------------------------------------


@dataclass
class SoakResult:
    database: str
    requests: int
    clients: int
    seconds: float
    record: Record
    checks: dict[str, Any]
    killed_after: int | None = None
    doctor: dict[str, Any] | None = None
    after_restart: dict[str, Any] | None = None

    @property
    def problems(self) -> list[str]:
        found = list(self.checks["problems"])
        if self.after_restart is not None:
            found += [f"after restart: {p}" for p in self.after_restart["problems"]]
        return found


def server_env(storage: Path, model: Path, database_url: str) -> dict[str, str]:
    return {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_MODEL_PATH": str(model),
        "PRODTYPE_DATABASE_URL": database_url,
        "PRODTYPE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "PRODTYPE_JWT_SECRET": "soak-" + uuid.uuid4().hex * 2,
        "PRODTYPE_ENVIRONMENT": "test",
    }


def soak(
    model: Path,
    storage: Path,
    database_url: str,
    products: Products,
    *,
    requests: int,
    clients: int,
    kill_after: int | None = None,
    seed: int = 0,
) -> SoakResult:
    """Run the load against a fresh server; with ``kill_after``, SIGKILL it once that many predictions
    were acknowledged, restart it, check, run ``prodtype doctor --fix`` and send the rest of the load."""
    storage.mkdir(parents=True, exist_ok=True)
    env = server_env(storage, model, database_url)
    log = storage / "server.log"
    record = Record()
    start = time.perf_counter()
    with running_server(env, log) as server:
        users = make_users(server.url, customers=max(2, clients // 4), reviewers=max(2, clients // 8))
        stop_when = (lambda r: len(r.created) >= kill_after) if kill_after is not None else None
        load = Load(server.url, products, users, record, requests=requests, clients=clients, seed=seed)
        if kill_after is None:
            load.run()
        else:
            load.stop_when = stop_when
            runner = threading.Thread(target=load.run, daemon=True)
            runner.start()
            while runner.is_alive() and not load.stop.is_set():
                time.sleep(0.01)
            server.kill()  # while the other clients' requests are in flight
            runner.join(timeout=180)
    seconds = time.perf_counter() - start
    killed = kill_after is not None
    result = SoakResult(
        database_url.split(":", 1)[0],
        record.requests,
        clients,
        seconds,
        record,
        verify(database_url, storage, record, killed=killed),
        killed_after=len(record.created) if killed else None,
    )
    if killed:
        with running_server(env, log) as server:  # the database opens cleanly after the kill
            result.after_restart = verify(database_url, storage, record, killed=True)
            doctor = subprocess.run(
                [prodtype_command(), "doctor", "--fix", "--json"],
                env={k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")} | env,
                cwd=storage,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            import json

            result.doctor = {"exit": doctor.returncode, **json.loads(doctor.stdout or "{}")}
            if doctor.returncode != 0:
                result.after_restart["problems"].append(f"prodtype doctor --fix: {result.doctor['problems']}")
            after = Record()
            rest = Load(server.url, products, users, after, requests=max(20, requests // 10), clients=clients)
            rest.run()
            after_checks = verify(database_url, storage, after)
            result.after_restart["problems"] += after_checks["problems"]
    return result


# -- the command line ----------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))] if ordered else 0.0


def _postgres_database(url: str) -> tuple[str, Any]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"prodtype_soak_{uuid.uuid4().hex[:10]}"
    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return make_url(url).set(database=name).render_as_string(hide_password=False), drop


def print_result(result: SoakResult) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    record = result.record
    title = (
        f"{result.database}: {result.requests} requests from {result.clients} clients in "
        f"{result.seconds:.0f} s ({result.requests / result.seconds:.1f} req/s); "
        f"load average {os.getloadavg()[0]:.1f} at the end"
    )
    table = Table(title=title)
    for column in ("kind", "count", "statuses", "p50 ms", "p95 ms"):
        table.add_column(column)
    for kind, _weight in MIX:
        statuses = {s: n for (k, s), n in sorted(record.statuses.items()) if k == kind}
        lat = record.latencies.get(kind, [])
        table.add_row(
            kind,
            str(sum(statuses.values())),
            ", ".join(f"{s}: {n}" for s, n in statuses.items()),
            f"{_percentile(lat, 50):.0f}",
            f"{_percentile(lat, 95):.0f}",
        )
    console.print(table)
    checks = result.checks
    lost = result.after_restart is not None and result.after_restart["problems"]
    restarted = "PROBLEMS" if lost else "all there"
    console.print(
        f"responses >= 500: {len(record.server_errors)}; "
        f"connection errors: {sum(record.transport_errors.values())}"
        f"; acknowledged predictions: {checks['acknowledged']} (all in the database with their photo: "
        f"{'yes' if not any('missing' in p or 'without' in p for p in checks['problems']) else 'NO'}); "
        f"reviews applied: {checks['reviews_applied']} (exactly once: "
        f"{'yes' if not any('review' in p for p in checks['problems']) else 'NO'}); photos checked: "
        f"{record.images_checked}; orphan files: {checks['orphan_files']}"
    )
    if result.killed_after is not None:
        doctor = result.doctor or {}
        console.print(
            f"killed with SIGKILL after {result.killed_after} acknowledged predictions; restarted: "
            f"{restarted}; "
            f"doctor --fix removed {doctor.get('removed_files_count')} file(s), exit {doctor.get('exit')}"
        )
    for problem in result.problems:
        console.print(f"[red]problem:[/red] {problem}")
    console.print("[green]nothing lost[/green]" if not result.problems else "[red]FAILED[/red]")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", type=Path, default=os.environ.get("PRODTYPE_MODEL_PATH"), required=False)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument(
        "--kill-after", type=int, default=None, help="SIGKILL the server after N acknowledged predictions"
    )
    args = parser.parse_args()
    if args.model is None:
        parser.error("--model (or PRODTYPE_MODEL_PATH): a model bundle, e.g. from `prodtype train`")
    products = Products.load(args.data)
    failed = False
    for database in ("sqlite", "postgres") if args.database == "both" else (args.database,):
        with tempfile.TemporaryDirectory(prefix=f"soak-{database}-") as tmp:
            storage = Path(tmp) / "storage"
            drop = None
            url = f"sqlite:///{storage / 'prodtype.db'}"
            if database == "postgres":
                url, drop = _postgres_database(args.postgres_url)
            try:
                print(f"uptime before: {os.getloadavg()}", flush=True)
                result = soak(
                    args.model,
                    storage,
                    url,
                    products,
                    requests=args.requests,
                    clients=args.clients,
                    kill_after=args.kill_after,
                )
                print_result(result)
                failed |= bool(result.problems)
            finally:
                if drop is not None:
                    drop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
