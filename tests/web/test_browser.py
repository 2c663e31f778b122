"""The web page in a real browser: Debian's chromium, driven by Playwright, against ``prodtype serve``
(uvicorn) on a free localhost port, a fresh database and the real trained bundle.

A customer logs in, is told what is wrong with a bad file, submits a product whose title holds HTML and
script, and sees its type; a reviewer finds it in the queue and corrects it; the customer sees the review.
Screenshots of each page are written to the test's tmp folder (named in the output with -rA).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service_support.databases import PASSWORD, Backend, postgres_unreachable
from service_support.server import Server, running_server

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("PRODTYPE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE = (
    '<script>window.__injected = 1</script><img src=x onerror="window.__injected = 2">'
    "<b>Piscine</b> tubulaire ronde 3,05 x 0,76 m"
)
TIMEOUT_MS = 60_000  # a prediction on a busy 2-core machine can take seconds


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM}: `apt-get install chromium` (.ci/run installs it)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[dev]'"
    )
    with sync_api.sync_playwright() as playwright:
        # Debian's chromium, never a downloaded one (`playwright install` is not used).
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> Backend:
    """One database, not both: PostgreSQL (as deployed) when it is reachable, else SQLite. What the
    services do on each database is tested in tests/api and tests/web/test_review_page.py."""
    if postgres_unreachable() is None:
        return request.getfixturevalue("postgres_backend")  # type: ignore[no-any-return]
    return request.getfixturevalue("sqlite_backend")  # type: ignore[no-any-return]


@pytest.fixture
def server(database_url: str, trained_bundle: Path, tmp_path: Path) -> Iterator[Server]:
    storage = tmp_path / "storage"
    storage.mkdir()
    env = {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_MODEL_PATH": str(trained_bundle),
        "PRODTYPE_DATABASE_URL": database_url,
    }
    with running_server("serve", env) as server:
        yield server


class Tab:
    """One browser context (its own cookies) with one page, collecting script errors and CSP refusals."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.context = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 900})
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def _console(self, message: Any) -> None:
        # A page answered with an error status (the refused upload's 422) is expected; nothing else is.
        if message.type == "error" and "status of 422" not in message.text:
            self.errors.append(message.text)

    def log_in(self, username: str) -> None:
        self.page.goto("/login")
        self.page.fill("#username", username)
        self.page.fill("#password", PASSWORD)
        self.page.click("#login-form button[type=submit]")
        self.page.wait_for_load_state()

    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.page.url)

    def image_loaded(self, selector: str) -> bool:
        """Whether the image has loaded, waiting for it up to the timeout (a lazy thumbnail loads when the
        browser gets to it, and the queue's explanations are being fetched meanwhile)."""
        loaded = "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }"
        try:
            self.page.wait_for_function(loaded, arg=selector, timeout=TIMEOUT_MS)
        except Exception:  # playwright's TimeoutError: not loaded
            return False
        return True


def test_customer_submits_and_reviewer_corrects_in_chromium(
    browser: Any, server: Server, backend: Backend, data_dir: Path, tmp_path: Path
) -> None:
    photo = sorted((data_dir / "image_train").glob("*.jpg"))[0]
    shots = tmp_path / "screenshots"

    customer = Tab(browser, server.url)
    customer.page.goto("/")
    assert customer.path() == "/login"
    customer.log_in("carl")
    assert customer.path() == "/predict"
    page = customer.page

    # The script refuses a file that is not a photo before sending it ...
    page.fill("#designation", "Mug isotherme")
    page.set_input_files("#image", files=[{"name": "prices.csv", "mimeType": "text/csv", "buffer": b"a,b\n"}])
    assert page.inner_text("#image-error") == "The file “prices.csv” is not a JPEG, PNG or WebP photo."
    # ... and the server explains what it refuses when the browser believes the file is a photo.
    fake = {"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": b"name,price\nmug,12.50\n" * 20}
    page.set_input_files("#image", files=[fake])
    page.click("#predict-button")
    page.wait_for_load_state()
    assert page.inner_text("#error").startswith("the uploaded file is not an image: expected a JPEG, PNG")
    assert page.input_value("#designation") == "Mug isotherme"  # what was typed is kept
    page.screenshot(path=shots / "1-bad-input.png", full_page=True)

    page.fill("#designation", HOSTILE)
    page.fill("#description", "Avec pompe de filtration")
    page.set_input_files("#image", str(photo))
    assert page.is_visible("#preview")
    page.click("#predict-button")
    page.wait_for_url(re.compile(r"/predictions/\d+$"))
    prediction_id = int(customer.path().rsplit("/", 1)[1])
    category = page.inner_text("#predicted-category")
    assert re.fullmatch(r".+ \d+", category)
    assert re.fullmatch(r"\d{1,3}\.\d %", page.inner_text("#confidence"))
    assert page.locator("#top-k tbody tr").count() == 5
    # The title is shown as text: no element was made from it and no script of it ran.
    assert page.inner_text("#designation") == HOSTILE
    assert page.locator("#designation *").count() == 0
    assert page.evaluate("window.__injected") is None
    assert customer.image_loaded("img.photo")
    # Why: the decisive words marked in the text, as text; a bar per branch (text, embedding, photo).
    assert page.locator("#explanation .explained-title mark").count() > 0
    assert page.locator("#explanation mark *").count() == 0
    assert page.locator("#explanation tr.branch meter").count() == 3
    page.screenshot(path=shots / "2-prediction.png", full_page=True)

    reviewer = Tab(browser, server.url)
    reviewer.log_in("rita")
    assert reviewer.path() == "/review"
    item = reviewer.page.locator(f"#prediction-{prediction_id}")
    assert item.locator("h2.designation").inner_text() == HOSTILE
    assert item.locator("h2.designation *").count() == 0
    assert reviewer.image_loaded(f"#prediction-{prediction_id} img.thumb")
    assert item.locator("ol.candidates li").count() == 5
    # The queue's script loads each product's explanation after the page is shown (under the CSP).
    item.locator("div.why section.explanation").wait_for(timeout=30_000)
    assert item.locator("div.why .explained-title mark").count() > 0
    assert item.locator("div.why mark *").count() == 0
    assert reviewer.page.evaluate("window.__injected") is None
    reviewer.page.screenshot(path=shots / "3-review-queue.png", full_page=True)

    # Correct it to the model's second candidate.
    second = item.locator('optgroup[label="The model\'s candidates"] option').nth(1)
    code, label = second.get_attribute("value"), second.inner_text()
    item.locator("select").select_option(code)
    item.locator("button[value=correct]").click()
    reviewer.page.wait_for_load_state()
    name = label.split(" · ", 1)[1]
    assert reviewer.page.inner_text("#notice") == f"Prediction #{prediction_id} corrected: {name} ({code})."
    assert reviewer.page.locator(f"#prediction-{prediction_id}").count() == 0
    reviewer.page.screenshot(path=shots / "4-after-review.png", full_page=True)

    page.goto(f"/predictions/{prediction_id}")
    assert page.inner_text("#status") == "accepted"
    assert f"final type {name} ({code})" in page.inner_text(".verdict")
    page.goto("/predictions")
    assert page.locator("#my-predictions tbody tr").count() == 1
    page.click(".logout button")
    page.wait_for_url(re.compile(r"/login$"))
    page.goto("/predict")
    assert customer.path() == "/login"

    assert customer.errors == [] and reviewer.errors == []  # no script error, nothing refused by the CSP
    print(f"{backend.name}: screenshots in {shots}")
