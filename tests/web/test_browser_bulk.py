"""The bulk page in a real browser (Debian's chromium, Playwright) against ``prodtype serve``: a customer
uploads a small CSV and a zip of photos, the page follows the job by itself until it is done, shows the bad
row with its line and reason, the result downloads, and the switch shows the page in French."""

from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest

from service_support.databases import Backend
from service_support.server import Server

from .test_browser import Tab, backend, browser, server  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow

CSV = (
    ",designation,description,productid,imageid\n"
    "100,Piscine tubulaire ronde 3.05 m avec pompe,,11,21\n"
    "101,,sans titre,12,22\n"
    '102,Lot de 6 verres à vin,"Cristal, lavables",13,23\n'
).encode()


def test_customer_classifies_a_file_in_chromium(
    browser: Any,  # noqa: F811 (the imported fixture)
    server: Server,  # noqa: F811
    backend: Backend,  # noqa: F811
    data_dir: Path,
    tmp_path: Path,
) -> None:
    photo = sorted((data_dir / "image_train").glob("*.jpg"))[0].read_bytes()
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as archive:
        archive.writestr("image_21_product_11.jpg", photo)
    shots = tmp_path / "screenshots"

    tab = Tab(browser, server.url)
    tab.log_in("carl")
    page = tab.page
    page.click("nav a[href='/bulk']")
    page.wait_for_url(re.compile(r"/bulk$"))
    page.set_input_files("#csv", files=[{"name": "products.csv", "mimeType": "text/csv", "buffer": CSV}])
    zipped = {"name": "photos.zip", "mimeType": "application/zip", "buffer": photos.getvalue()}
    page.set_input_files("#photos", files=[zipped])
    page.screenshot(path=shots / "1-bulk-form.png", full_page=True)
    page.click("#bulk-button")
    page.wait_for_url(re.compile(r"/bulk/[0-9a-f]{32}$"))
    # The page polls the job and reloads itself once it is done: the download link appears.
    page.wait_for_selector("#bulk-result", timeout=120_000)
    assert page.inner_text("#bulk-done") == "3 / 3"
    assert page.get_attribute("#bulk-job", "data-status") == "done"
    cells = page.locator("#bad-rows tbody tr td")
    assert [cells.nth(i).inner_text() for i in range(2)] == ["3", "101"]
    assert cells.nth(2).inner_text().startswith("designation is empty")
    page.screenshot(path=shots / "2-bulk-done.png", full_page=True)

    with page.expect_download() as download:
        page.click("#bulk-result")
    content = Path(download.value.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(content)))
    assert rows[0] == ["", "prdtypecode", "category", "confidence"]
    assert [r[0] for r in rows[1:]] == ["100", "102"]

    page.click("#languages a")
    page.wait_for_load_state()
    assert page.inner_text("h1").startswith("Tâche de classement en masse")
    assert page.inner_text("#bulk-status") == "terminé"
    page.screenshot(path=shots / "3-bulk-french.png", full_page=True)
    assert tab.errors == []  # no script error, nothing refused by the CSP
    print(f"{backend.name}: screenshots in {shots}")
