"""End to end over HTTP: ``prodtype run`` on a blank database serves; login → predict → review."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from prodtype.db.engine import make_engine
from service_support.databases import PostgresBackend
from service_support.images import photo
from service_support.server import running_server

pytestmark = pytest.mark.slow

API = "/api/v1"


def token(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def stored_admin_hash(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return str(conn.scalar(text("SELECT password_hash FROM users WHERE username = 'admin'")))
    finally:
        engine.dispose()


def review_flow(client: httpx.Client, admin: dict[str, str]) -> None:
    """The admin creates a customer and a reviewer; the customer predicts; the reviewer accepts."""
    for name, role in [("seller", "customer"), ("checker", "reviewer")]:
        body = {"username": name, "password": f"{name} password!", "role": role}
        created = client.post(f"{API}/users", json=body, headers=admin)
        assert created.status_code == 201, created.text

    seller = token(client, "seller", "seller password!")
    files = {
        "designation": (None, "Piscine tubulaire ronde 3,05 x 0,76 m"),
        "description": (None, "Avec pompe de filtration"),
        "image": ("photo.jpg", photo(0), "image/jpeg"),
    }
    predicted = client.post(f"{API}/predictions", files=files, headers=seller)
    assert predicted.status_code == 201, predicted.text
    pid = predicted.json()["id"]
    assert predicted.json()["status"] == "pending" and len(predicted.json()["top_k"]) == 5

    checker = token(client, "checker", "checker password!")
    queue = client.get(f"{API}/predictions", params={"status": "pending"}, headers=checker).json()
    assert [p["id"] for p in queue["data"]] == [pid]
    reviewed = client.post(f"{API}/predictions/{pid}/review", json={"decision": "accept"}, headers=checker)
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["status"] == "accepted"
    assert reviewed.json()["final_code"] == predicted.json()["prdtypecode"]
    assert client.get(f"{API}/predictions/{pid}", headers=seller).json()["reviewed_by"] == "checker"
    assert client.get(f"{API}/predictions/{pid}/image", headers=seller).content == photo(0)

    # Two reviewers at once on a new prediction: one wins, the other is told it was already done.
    files = {"designation": (None, "Jeu PS4 FIFA 21")}
    second = client.post(f"{API}/predictions", files=files, headers=seller)
    url = f"{API}/predictions/{second.json()['id']}/review"
    calls = [({"decision": "accept"}, checker), ({"decision": "reject"}, admin)]
    with ThreadPoolExecutor(2) as pool:
        statuses = sorted(pool.map(lambda c: client.post(url, json=c[0], headers=c[1]).status_code, calls))
    assert statuses == [200, 409]


def test_run_on_a_fresh_storage_folder(trained_bundle: Path, tmp_path: Path) -> None:
    """The default set-up: SQLite under the storage folder, created on start; the admin's random password
    is printed once and only its hash is stored."""
    storage = tmp_path / "storage"
    env = {"PRODTYPE_STORAGE_DIR": str(storage), "PRODTYPE_MODEL_PATH": str(trained_bundle)}
    with running_server("run", env) as server:
        match = re.search(r"shown only this once.*\n\s+(\S+)\n", server.output)
        assert match, server.output
        admin_password = match.group(1)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            review_flow(client, token(client, "admin", admin_password))
            health = client.get(f"{API}/health").json()
            assert health["status"] == "ok" and health["model_version"]
    stored = stored_admin_hash(f"sqlite:///{storage / 'prodtype.db'}")
    assert stored.startswith("$argon2id$") and admin_password not in stored


@pytest.mark.postgres
def test_run_on_postgresql_with_the_admin_password_from_the_environment(
    postgres_backend: PostgresBackend, trained_bundle: Path, tmp_path: Path
) -> None:
    url = postgres_backend.blank(tmp_path)
    try:
        env = {
            "PRODTYPE_STORAGE_DIR": str(tmp_path / "storage"),
            "PRODTYPE_MODEL_PATH": str(trained_bundle),
            "PRODTYPE_DATABASE_URL": url,
            "PRODTYPE_ADMIN_PASSWORD": "chosen admin password",
        }
        with running_server("run", env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
            assert "chosen admin password" not in server.output
            assert "from PRODTYPE_ADMIN_PASSWORD" in server.output
            review_flow(client, token(client, "admin", "chosen admin password"))
        assert not (tmp_path / "storage" / "prodtype.db").exists()  # everything went to PostgreSQL
        assert stored_admin_hash(url).startswith("$argon2id$")
    finally:
        postgres_backend.drop(url)
