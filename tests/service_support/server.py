"""Start ``prodtype run`` / ``prodtype serve`` as a real process on a free localhost port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prodtype_command() -> str:
    script = Path(sys.executable).with_name("prodtype")
    if not script.exists():
        raise FileNotFoundError(f"{script} is missing: install the project (pip install -e .)")
    return str(script)


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


@contextmanager
def running_server(
    command: str,
    env: dict[str, str],
    startup_timeout: float = 180.0,
    up: Callable[[httpx.Response], bool] = lambda r: r.status_code == 200,
) -> Iterator[Server]:
    """Run ``prodtype <command> --port N`` with ``env`` added; yield once /api/v1/health answers ``up``
    (healthy by default; a test of a server without a model takes any answer)."""
    port = free_port()
    workdir = env.get("PRODTYPE_STORAGE_DIR")
    if workdir:  # run from there, so that no .env of the developer's is read
        Path(workdir).mkdir(parents=True, exist_ok=True)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PRODTYPE_")}
    full_env |= {"PRODTYPE_DATA_DIR": os.environ.get("PRODTYPE_DATA_DIR", ""), **env}
    full_env = {k: v for k, v in full_env.items() if v}
    process = subprocess.Popen(
        [prodtype_command(), command, "--host", "127.0.0.1", "--port", str(port)],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=workdir,
    )
    server = Server(f"http://127.0.0.1:{port}", process)
    assert process.stdout is not None
    stdout = process.stdout
    reader = threading.Thread(target=lambda: server.lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode}:\n{server.output}")
            try:
                if up(httpx.get(f"{server.url}/api/v1/health", timeout=2)):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer within {startup_timeout} s:\n{server.output}")
            time.sleep(0.2)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
