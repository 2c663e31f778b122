"""End to end over HTTP: ``prodtype run`` on a blank database serves; login → predict → review."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from prodtype.db.engine import make_engine
from service_support.images import photo
from service_support.server import running_server

pytestmark = pytest.mark.slow

API = "/api/v1"


def token(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = client.post(f"{API}/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_run_creates_the_admin_and_serves_login_predict_review(
    backend: object, blank_database_url: str, trained_bundle: Path, tmp_path: Path
) -> None:
    env = {
        "PRODTYPE_STORAGE_DIR": str(tmp_path / "storage"),
        "PRODTYPE_MODEL_PATH": str(trained_bundle),
        "PRODTYPE_DATABASE_URL": blank_database_url,
    }
    with running_server("run", env) as server:
        # No PRODTYPE_ADMIN_PASSWORD: a random one is printed once, on its own line.
        match = re.search(r"shown only this once.*\n\s+(\S+)\n", server.output)
        assert match, server.output
        admin_password = match.group(1)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            admin = token(client, "admin", admin_password)
            for name, role in [("seller", "customer"), ("checker", "reviewer")]:
                created = client.post(
                    f"{API}/users",
                    json={"username": name, "password": f"{name} password!", "role": role},
                    headers=admin,
                )
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
            reviewed = client.post(
                f"{API}/predictions/{pid}/review", json={"decision": "accept"}, headers=checker
            )
            assert reviewed.status_code == 200, reviewed.text
            assert reviewed.json()["status"] == "accepted"
            assert reviewed.json()["final_code"] == predicted.json()["prdtypecode"]
            assert client.get(f"{API}/predictions/{pid}", headers=seller).json()["reviewed_by"] == "checker"

            # Two reviewers at once on a new prediction: one wins, the other is told it was already done.
            second = client.post(
                f"{API}/predictions", files={"designation": (None, "Jeu PS4 FIFA 21")}, headers=seller
            )
            url = f"{API}/predictions/{second.json()['id']}/review"
            calls = [({"decision": "accept"}, checker), ({"decision": "reject"}, admin)]
            with ThreadPoolExecutor(2) as pool:
                statuses = sorted(
                    pool.map(lambda c: client.post(url, json=c[0], headers=c[1]).status_code, calls)
                )
            assert statuses == [200, 409]
    engine = make_engine(blank_database_url)
    try:
        with engine.connect() as conn:
            stored = conn.scalar(text("SELECT password_hash FROM users WHERE username = 'admin'"))
    finally:
        engine.dispose()
    assert stored.startswith("$argon2id$") and admin_password not in stored  # only the hash is kept


def test_run_takes_the_admin_password_from_the_environment(trained_bundle: Path, tmp_path: Path) -> None:
    env = {
        "PRODTYPE_STORAGE_DIR": str(tmp_path / "storage"),
        "PRODTYPE_MODEL_PATH": str(trained_bundle),
        "PRODTYPE_ADMIN_PASSWORD": "chosen admin password",
    }
    with running_server("run", env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert "chosen admin password" not in server.output
        assert "from PRODTYPE_ADMIN_PASSWORD" in server.output
        token(client, "admin", "chosen admin password")
        health = client.get(f"{API}/health").json()
        assert health["status"] == "ok" and health["model_version"]
    assert (tmp_path / "storage" / "prodtype.db").is_file()  # the SQLite default, under the storage folder
