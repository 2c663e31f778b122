"""The bulk page with the real app and model: upload, progress as JSON for the page's script, the bad rows
table, the result in the page's language; a bad file answered on the form; only the owner sees a job."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.catalog import load_catalog
from prodtype.web.i18n import LANG_COOKIE
from service_support.images import photo
from service_support.waiting import until

from .conftest import assert_security_headers, csrf_of, error_on, log_in

CSV = (
    ",designation,description,productid,imageid\n"
    "10,Piscine tubulaire ronde avec pompe,,1,2\n"
    "11,,sans titre,3,4\n"
    "12,Lot de 6 verres à vin en cristal,,5,6\n"
).encode()


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("image_2_product_1.jpg", photo(1))
    return out.getvalue()


def upload(client: TestClient, data: bytes, photos: bytes | None = None) -> Any:
    files: dict[str, Any] = {"csv": ("my products.csv", data, "text/csv")}
    files["photos"] = ("photos.zip", photos, "application/zip") if photos else ("", b"", "")
    return client.post("/bulk", data={"csrf_token": csrf_of(client.get("/bulk"))}, files=files)


def test_upload_follow_and_download_in_french(client: TestClient, app: FastAPI) -> None:
    log_in(client, "carl")
    response = upload(client, CSV, _zip())
    assert response.status_code == 303, response.text
    page_url = response.headers["location"]
    assert re.fullmatch(r"/bulk/[0-9a-f]{32}", page_url)

    status: dict[str, Any] = {}

    def finished() -> bool:
        nonlocal status
        reply = client.get(f"{page_url}/status")
        assert reply.headers["cache-control"] == "no-store"
        status = reply.json()
        return status["status"] == "done"

    until(finished, timeout=120, message=lambda: f"not done: {status}", every=0.2)
    assert (status["total"], status["done"], status["bad"]) == (3, 3, 1)

    page = client.get(page_url)
    assert page.status_code == 200
    assert_security_headers(page)
    assert 'id="bulk-result"' in page.text and "data-poll" not in page.text  # finished: no more polling
    bad_row = r'<td>3</td><td class="code">11</td><td class="text">designation is empty'
    assert re.search(bad_row, page.text)
    assert "my products.csv" in page.text

    client.cookies.set(LANG_COOKIE, "fr")
    result = client.get(f"{page_url}/result")
    assert result.status_code == 200 and "attachment" in result.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(result.text)))
    assert [r[0] for r in rows[1:]] == ["10", "12"]
    french = {c.code: c.name_fr for c in load_catalog().categories}
    assert all(r[2] == french[int(r[1])] for r in rows[1:]), rows
    assert "Tâche" in client.get(page_url).text  # the page itself in French
    # the list on the upload page
    listing = client.get("/bulk")
    assert page_url in listing.text and "my products.csv" in listing.text

    other = TestClient(app, follow_redirects=False)
    log_in(other, "cora")
    assert other.get(page_url).status_code == 404
    assert other.get(f"{page_url}/status").status_code == 404
    assert other.get(f"{page_url}/result").status_code == 404
    assert page_url not in other.get("/bulk").text
    admin = TestClient(app, follow_redirects=False)
    log_in(admin, "admin")
    assert admin.get(page_url).status_code == 200


def test_a_bad_file_is_answered_on_the_form(client: TestClient) -> None:
    log_in(client, "carl")
    response = upload(client, "désignation;prix\n".encode("latin-1"))
    assert response.status_code == 422
    assert error_on(response.text).startswith("the CSV is not UTF-8 text")
    assert_security_headers(response)
    evil = io.BytesIO()
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("../../image_2_product_1.jpg", photo(1))
    response = upload(client, CSV, evil.getvalue())
    assert response.status_code == 422
    assert "points outside the archive" in error_on(response.text)
    files = {"csv": ("", b"", "")}
    response = client.post("/bulk", data={"csrf_token": csrf_of(client.get("/bulk"))}, files=files)
    assert response.status_code == 422 and error_on(response.text) == "Choose a CSV file of products."
