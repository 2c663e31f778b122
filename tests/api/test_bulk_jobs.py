"""Bulk jobs through the API: a CSV in the challenge's X format and a zip of photos, classified in the
background by the real model on SQLite and PostgreSQL; bad rows listed with their line and reason while the
good rows are classified; only the owner (and admins) see a job; every unusable file is a 4xx that says
what was wrong, never a 500."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from prodtype.config import Settings
from prodtype.db.tables import BulkJob, BulkJobRow, JobStatus, Prediction, utcnow
from prodtype.serving.bulk_jobs import STALE_AFTER
from service_support import images
from service_support.waiting import until

from .conftest import API, Headers

HEADER = ",designation,description,productid,imageid\n"
# 4 good rows (two with a photo in the zip, one with a description over two lines), 3 bad ones.
GOOD_AND_BAD = (
    HEADER + '0,"Piscine tubulaire ronde 3,05 m",Avec pompe,101,201\n'
    '1,"Lot de 6 verres à vin","Verres en cristal,\nlavables au lave-vaisselle",102,202\n'
    "2,,sans titre,103,203\n"
    "3,Jeu PS4 FIFA 19,,104,abc\n"
    "4,Peluche ourson 30 cm,,105\n"
    "5,Tapis de souris gamer XXL,,106,206\n"
    "6,Coque iPhone 12 silicone,,107,207\n"
)


def zip_of(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return out.getvalue()


def post_job(client: TestClient, headers: Headers, csv_text: str | bytes, photos: bytes | None = None) -> Any:
    data = csv_text.encode() if isinstance(csv_text, str) else csv_text
    files: dict[str, Any] = {"csv": ("products.csv", data, "text/csv")}
    if photos is not None:
        files["photos"] = ("photos.zip", photos, "application/zip")
    return client.post(f"{API}/jobs/bulk", files=files, headers=headers)


def wait_done(client: TestClient, headers: Headers, job_id: str) -> dict[str, Any]:
    job: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal job
        job = client.get(f"{API}/jobs/{job_id}", headers=headers).json()
        return job["status"] in ("done", "failed")

    until(finished, timeout=120, message=lambda: f"the job did not finish: {job}", every=0.2)
    return job


def test_a_job_classifies_the_good_rows_and_lists_the_bad_ones(
    client: TestClient, auth: Callable[[str], Headers], app: FastAPI
) -> None:
    photos = zip_of(
        {
            "photos/image_201_product_101.jpg": images.photo(1),
            "photos/image_202_product_102.jpg": images.png_of(images.photo(2)),
            "image_999_product_999.jpg": images.photo(3),  # no row of the CSV: unused
        }
    )
    response = post_job(client, auth("carl"), GOOD_AND_BAD, photos)
    assert response.status_code == 202, response.text
    queued = response.json()
    assert queued["total"] == 7 and queued["photos"] == 2
    assert queued["bad"] >= 3  # the bad rows are known at once (the worker may have started already)
    assert queued["status"] in ("queued", "running", "done")

    job = wait_done(client, auth("carl"), queued["id"])
    assert job["status"] == "done", job
    assert (job["total"], job["done"], job["classified"], job["bad"]) == (7, 7, 4, 3)
    # line numbers are the file's: the header is line 1, row 1 spans lines 3-4
    assert [(b["line"], b["index"]) for b in job["bad_rows"]] == [(5, "2"), (6, "3"), (7, "4")]
    reasons = [b["reason"] for b in job["bad_rows"]]
    assert "designation is empty" in reasons[0]
    assert "imageid 'abc' is not a whole number" in reasons[1]
    assert "4 fields where the header has 5" in reasons[2]
    assert job["result_url"] == f"/api/v1/jobs/{job['id']}/result"

    result = client.get(job["result_url"], headers=auth("carl"))
    assert result.status_code == 200
    assert result.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(result.text)))
    assert rows[0] == ["", "prdtypecode", "category", "confidence"]
    assert [r[0] for r in rows[1:]] == ["0", "1", "5", "6"]
    codes = {
        c["prdtypecode"]: c["name"]
        for c in client.get(f"{API}/categories", headers=auth("carl")).json()["data"]
    }
    for _index, code, name, confidence in rows[1:]:
        assert codes[int(code)] == name
        assert 0 < float(confidence) <= 1

    # The products are in the review queue, like single predictions, two of them with their photo.
    queue = client.get(f"{API}/predictions", params={"status": "pending", "limit": 50}, headers=auth("rita"))
    items = queue.json()["data"]
    assert sorted(i["designation"] for i in items) == sorted(
        [
            "Piscine tubulaire ronde 3,05 m",
            "Lot de 6 verres à vin",
            "Tapis de souris gamer XXL",
            "Coque iPhone 12 silicone",
        ]
    )
    assert sum(1 for i in items if i["has_image"]) == 2
    by_title = {i["designation"]: i for i in items}
    assert by_title["Lot de 6 verres à vin"]["description"].startswith("Verres en cristal,\nlavables")
    # the result says what the recorded predictions say
    assert {(str(i["prdtypecode"])) for i in items} == {r[1] for r in rows[1:]}


def test_only_the_owner_and_admins_see_a_job(client: TestClient, auth: Callable[[str], Headers]) -> None:
    job = post_job(client, auth("carl"), HEADER + "0,Verre à vin,,1,2\n").json()
    wait_done(client, auth("carl"), job["id"])
    for who, status in (("carl", 200), ("admin", 200), ("cora", 404), ("rita", 404)):
        assert client.get(f"{API}/jobs/{job['id']}", headers=auth(who)).status_code == status, who
        assert client.get(f"{API}/jobs/{job['id']}/result", headers=auth(who)).status_code == status, who
    missing = client.get(f"{API}/jobs/{'0' * 32}", headers=auth("admin"))
    assert missing.status_code == 404 and "no bulk job" in missing.json()["detail"]
    assert client.get(f"{API}/jobs/../../etc", headers=auth("admin")).status_code == 404


@pytest.fixture
def idle_client(app: FastAPI) -> TestClient:
    """A client whose app never started (no lifespan): no worker runs, jobs stay queued until the test
    runs the worker itself."""
    return TestClient(app, raise_server_exceptions=False)


def test_the_result_waits_for_the_job_and_a_stale_job_is_taken_over(
    idle_client: TestClient, auth: Callable[[str], Headers], app: FastAPI
) -> None:
    csv_text = HEADER + "".join(f"{i},Verre à vin numéro {i},,{i},{i}\n" for i in range(5))
    job = post_job(idle_client, auth("carl"), csv_text).json()
    assert job["status"] == "queued"
    early = idle_client.get(f"{API}/jobs/{job['id']}/result", headers=auth("carl"))
    assert early.status_code == 409 and "0 of 5 rows done" in early.json()["detail"]

    # Two workers race for the job: exactly one claims it.
    worker = app.state.bulk_worker
    with app.state.sessions() as session:
        claims: list[str | None] = []
        barrier = threading.Barrier(2)

        def claim() -> None:
            barrier.wait()
            with app.state.sessions() as own:
                claims.append(worker._claim(own))

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(claims, key=str) == sorted([job["id"], None], key=str)
        # ... then its worker died after two rows: the job is running with an old heartbeat.
        rows = session.scalars(select(BulkJobRow).where(BulkJobRow.job_id == job["id"])).all()
        assert len(rows) == 5
        session.execute(
            update(BulkJob)
            .where(BulkJob.id == job["id"])
            .values(status=JobStatus.RUNNING.value, heartbeat_at=utcnow() - STALE_AFTER / 2)
        )
        session.commit()
    assert worker.run_once() is False  # its heartbeat is recent enough: still its worker's
    with app.state.sessions() as session:
        session.execute(
            update(BulkJob).where(BulkJob.id == job["id"]).values(heartbeat_at=utcnow() - STALE_AFTER * 2)
        )
        session.commit()
    assert worker.run_once() is True
    done = idle_client.get(f"{API}/jobs/{job['id']}", headers=auth("carl")).json()
    assert done["status"] == "done" and done["classified"] == 5
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Prediction)) == 5
    assert worker.run_once() is False  # nothing left: a done job is never taken again


def _limits(**values: Any) -> Callable[[Settings], Settings]:
    return lambda settings: settings.model_copy(update=values)


def _bomb() -> bytes:
    return zip_of({"image_1_product_2.jpg": images.photo(1)[:200] + b"\x00" * 3_000_000})


BAD_FILES: list[tuple[str, Any, bytes | None, dict[str, Any], int, str]] = [
    ("latin-1", (HEADER + "0,Verre à vin,,1,2\n").encode("latin-1"), None, {}, 422, "not UTF-8 text"),
    ("utf-16", (HEADER + "0,Verre,,1,2\n").encode("utf-16"), None, {}, 422, "NUL byte"),
    ("empty", b"", None, {}, 422, "the CSV is empty"),
    ("header-only", HEADER.encode(), None, {}, 422, "no products"),
    ("wrong-header", b"designation;description\nVerre;x\n", None, {}, 422, "expected ',designation"),
    ("binary", images.photo(1), None, {}, 422, "NUL byte"),
    (
        "unclosed-quote",
        (HEADER + '0,"Verre,,1,2\n' + "x" * 10).encode(),
        None,
        {"bulk_job_max_csv_bytes": 10_000},
        422,
        "cannot be read from line 2 on",
    ),
    (
        "too-many-rows",
        (HEADER + "".join(f"{i},V{i},,1,2\n" for i in range(4))).encode(),
        None,
        {"bulk_job_max_rows": 3},
        413,
        "at most 3 are accepted",
    ),
    (
        "csv-too-big",
        (HEADER + "0," + "x" * 2000 + ",,1,2\n").encode(),
        None,
        {"bulk_job_max_csv_bytes": 1000},
        413,
        "over 1000 bytes",
    ),
    ("not-a-zip", HEADER.encode() + b"0,V,,1,2\n", b"PK but not really a zip", {}, 415, "not a zip archive"),
    (
        "traversal",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"../../etc/image_1_product_2.jpg": images.photo(1)}),
        {},
        422,
        "outside the archive",
    ),
    (
        "absolute",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"/tmp/image_1_product_2.jpg": images.photo(1)}),
        {},
        422,
        "outside the archive",
    ),
    (
        "not-a-photo-name",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"notes.txt": b"hello"}),
        {},
        422,
        "not a photo named as the challenge",
    ),
    (
        "gif-content",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"image_1_product_2.jpg": b"GIF89a" + b"\x00" * 50}),
        {},
        415,
        "GIF; the photos must be JPEG or PNG",
    ),
    (
        "text-content",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"image_1_product_2.png": b"<html>hi</html>"}),
        {},
        415,
        "not an image",
    ),
    ("bomb-ratio", HEADER.encode() + b"0,V,,1,2\n", _bomb(), {}, 422, "looks like a zip bomb"),
    (
        "too-many-entries",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({f"image_{i}_product_{i}.jpg": images.photo(1) for i in range(3)}),
        {"bulk_job_max_zip_entries": 2},
        422,
        "at most 2 are accepted",
    ),
    (
        "too-much-unzipped",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({f"image_{i}_product_{i}.jpg": images.photo(1) for i in range(3)}),
        {"bulk_job_max_unzipped_bytes": 1000},
        413,
        "once uncompressed",
    ),
    (
        "zip-too-big",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"image_1_product_2.jpg": images.photo(1)}),
        {"bulk_job_max_zip_bytes": 100},
        413,
        "the zip is",
    ),
    (
        "photo-too-big",
        HEADER.encode() + b"0,V,,1,2\n",
        zip_of({"image_1_product_2.jpg": images.photo(1)}),
        {"upload_limit_bytes": 100},
        413,
        "at most 100 are accepted",
    ),
]


@pytest.mark.parametrize(
    ("name", "csv_data", "photos", "limits", "status", "phrase"), BAD_FILES, ids=[b[0] for b in BAD_FILES]
)
def test_unusable_files_are_refused_with_a_message(
    app: FastAPI,
    auth: Callable[[str], Headers],
    name: str,
    csv_data: bytes,
    photos: bytes | None,
    limits: dict[str, Any],
    status: int,
    phrase: str,
) -> None:
    app.state.settings = app.state.settings.model_copy(update=limits)
    client = TestClient(app, raise_server_exceptions=False)
    response = post_job(client, auth("carl"), csv_data, photos)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert phrase in response.json()["detail"], response.json()["detail"]
    with app.state.sessions() as session:
        assert session.scalar(select(func.count()).select_from(BulkJob)) == 0
    kept = app.state.settings.bulk_jobs_dir
    assert not kept.exists() or not list(kept.iterdir())  # no zip is kept for a refused job


def test_a_request_without_the_csv_part_is_a_422_and_json_a_415(
    client: TestClient, auth: Callable[[str], Headers]
) -> None:
    response = client.post(
        f"{API}/jobs/bulk", files={"photos": ("p.zip", b"x", "application/zip")}, headers=auth("carl")
    )
    assert response.status_code == 422 and "csv" in str(response.json()["detail"])
    response = client.post(f"{API}/jobs/bulk", json={"csv": "0,a,b,1,2"}, headers=auth("carl"))
    assert response.status_code == 415 and "multipart/form-data" in response.json()["detail"]


def test_a_csv_of_bad_rows_only_is_done_at_once(client: TestClient, auth: Callable[[str], Headers]) -> None:
    job = post_job(client, auth("carl"), HEADER + "0,,x,1,2\n0,,y,1,2\n").json()
    assert job["status"] == "done" and job["bad"] == 2 and job["classified"] == 0
    assert job["bad_rows"][0]["reason"].startswith("designation is empty")
    result = client.get(f"{API}/jobs/{job['id']}/result", headers=auth("carl"))
    assert result.text == ",prdtypecode,category,confidence\n"
