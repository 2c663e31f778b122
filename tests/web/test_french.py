"""Every page in French: every string the pages translate has a French entry with the same placeholders, no
template shows English outside ``_()``, and every page rendered in French (with data on it) shows no
English string of the catalogue."""

from __future__ import annotations

import io
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import prodtype.web
from prodtype.catalog import load_catalog
from prodtype.config import Settings
from prodtype.db.tables import JobStatus, Role, Status
from prodtype.loop.retrain import STEPS
from prodtype.loop.retrain_jobs import retrain_lock, update_job
from prodtype.web.french import FRENCH
from prodtype.web.i18n import LANG_COOKIE
from prodtype.web.routes import NO_MODEL_MESSAGE
from service_support.images import photo
from service_support.waiting import until

from .conftest import csrf_of, log_in, submit

WEB = Path(prodtype.web.__file__).parent
TEMPLATES = sorted((WEB / "templates").glob("*.html"))
CALL = re.compile(r"""\b_\(\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')\s*\)""")
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
# Shown from data through _(value): roles, statuses of predictions, model versions, retrains, bulk jobs,
# and the step a retrain job has reached (the loop's table of steps, so that a new step needs French too).
RETRAIN_STEPS = ["starting", *STEPS, "done"]
DATA_WORDS = (
    [r.value for r in Role]
    + [s.value for s in Status]
    + [s.value for s in JobStatus]
    + ["champion", "challenger", "rolled_back", "registered", "running", "succeeded", "failed"]
    + RETRAIN_STEPS
)
# Text a template may show outside _(): the brand, and each language's name in its own language.
NOT_ENGLISH = {"prodtype", "prod", "type", "English", "Français"}
VISIBLE_ATTRIBUTES = {"title", "alt", "placeholder", "aria-label", "data-confirm", "label"}


def _python_sources() -> list[Path]:
    return sorted(WEB.glob("*.py"))


def msgids() -> set[str]:
    """Every English string the pages pass to _(): in templates and in the web package's code."""
    found = set(DATA_WORDS) | {NO_MODEL_MESSAGE}
    for path in [*TEMPLATES, *_python_sources()]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".py":
            # adjacent string literals in Python code are one string: join them first
            text = re.sub(r'"\s*\n\s*"', "", text)
        for match in CALL.finditer(text):
            found.add(match.group(1) if match.group(1) is not None else match.group(2))
    found.discard("")
    return found


def test_every_string_has_a_french_entry_with_the_same_placeholders() -> None:
    ids = msgids()
    assert len(ids) > 150  # the extraction finds the templates' strings
    missing = sorted(i for i in ids if i not in FRENCH)
    assert not missing, f"strings without a French entry in web/french.py: {missing}"
    for english, french in FRENCH.items():
        assert sorted(PLACEHOLDER.findall(english)) == sorted(PLACEHOLDER.findall(french)), english
    stale = sorted(set(FRENCH) - ids)
    assert not stale, f"French entries that no page uses: {stale}"


class _Text(HTMLParser):
    """Visible text of a page (or a template with its Jinja parts removed): text nodes and the attributes
    a person reads."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in VISIBLE_ATTRIBUTES and value and value.strip():
                self.texts.append(value.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip and data.strip():
            self.texts.append(" ".join(data.split()))


def visible_text(html: str) -> list[str]:
    parser = _Text()
    parser.feed(html)
    return parser.texts


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_no_template_shows_english_outside_the_translation_calls(template: Path) -> None:
    source = template.read_text(encoding="utf-8")
    bare = re.sub(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", " ", source, flags=re.S)
    words = [
        (text, word)
        for text in visible_text(bare)
        for word in re.findall(r"[A-Za-zÀ-ÿ]{2,}", text)
        if word not in NOT_ENGLISH
    ]
    assert not words, f"{template.name} shows text outside _(): {words}"


def _pattern(english: str) -> re.Pattern[str]:
    parts = PLACEHOLDER.split(english)
    # split alternates text, placeholder name, text...: names become "anything"
    return re.compile("".join(re.escape(p) if i % 2 == 0 else ".+?" for i, p in enumerate(parts)))


USERNAMES = {"admin", "carl", "rita", "cora"}  # data, not text of the page (the header shows who is in)


def _left_in_english(html: str) -> list[str]:
    """Text nodes of a French page that are an English string of the catalogue (one whose French differs)."""
    english = [_pattern(e) for e, f in FRENCH.items() if e != f and len(e) > 3]
    texts = [t for t in visible_text(html) if t not in USERNAMES]
    return [t for t in texts if any(p.fullmatch(t) for p in english)]


def _chart_words_not_french(html: str) -> list[str]:
    """Words written in the page's charts (axis names, legends, labels) that no French text of the pages
    nor a French product type name holds: an axis named in English, say."""
    french = " ".join([*FRENCH.values(), *(c.name_fr for c in load_catalog().categories)])
    known = set(re.findall(r"[A-Za-zÀ-ÿ]{2,}", french)) | {"UTC", "PSI", "F1"}
    words = []
    for svg in re.findall(r"<svg.*?</svg>", html, re.S):
        for text in visible_text(svg):
            words += [w for w in re.findall(r"[A-Za-zÀ-ÿ]{2,}", text) if w not in known]
    return words


def _bulk_job(client: TestClient) -> str:
    photos = io.BytesIO()
    with zipfile.ZipFile(photos, "w") as archive:
        archive.writestr("image_2_product_1.jpg", photo(1))
    csv = ",designation,description,productid,imageid\n0,Verre à vin,,1,2\n1,,vide,3,4\n".encode()
    files = {"csv": ("p.csv", csv, "text/csv"), "photos": ("p.zip", photos.getvalue(), "application/zip")}
    response = client.post("/bulk", data={"csrf_token": csrf_of(client.get("/bulk"))}, files=files)
    assert response.status_code == 303, response.text
    url = response.headers["location"]
    until(lambda: client.get(f"{url}/status").json()["status"] == "done", timeout=120, every=0.2)
    return str(url)


def test_every_page_in_french_leaves_no_english_string(
    client: TestClient, app: FastAPI, settings: Settings
) -> None:
    client.cookies.set(LANG_COOKIE, "fr")
    assert "Se connecter" in client.get("/login").text
    assert not _left_in_english(client.get("/login").text)
    log_in(client, "admin")
    location = submit(client, "Piscine tubulaire ronde avec pompe", image=photo(2))[1]
    reviewed = int(submit(client, "Lot de 6 verres à vin")[1].rsplit("/", 1)[1])
    review = client.post(
        f"/review/{reviewed}", data={"action": "accept", "csrf_token": csrf_of(client.get("/review"))}
    )
    assert review.status_code == 303  # a review: the live accuracy is plotted too
    job = _bulk_job(client)
    customer = TestClient(app, follow_redirects=False)
    customer.cookies.set(LANG_COOKIE, "fr")
    log_in(customer, "carl")
    pages = {
        "/predict": client,
        "/predictions": client,
        location: client,
        "/review": client,
        "/monitoring": client,
        "/accounts": client,
        "/models": client,
        "/retrain": client,
        "/bulk": client,
        job: client,
        "/predictions/999999": client,  # the 404 page
        "/accounts?as=customer": customer,  # the 403 page
        "/login?signed=in": client,  # logged in already
    }
    french_names = {c.name_fr for c in load_catalog().categories}
    retrain_id = "20261202101500abcdef12"
    with retrain_lock(settings, "test"):  # a running retrain: its step is named in French
        update_job(settings, retrain_id, id=retrain_id, status="running", step="train", requested_by="admin")
        for url, who in pages.items():
            response = who.get(url)
            assert response.status_code in (200, 403, 404), (url, response.status_code)
            assert '<html lang="fr">' in response.text, url
            left = _left_in_english(response.text)
            assert not left, f"{url} in French still shows: {left}"
            assert not _chart_words_not_french(response.text), (url, _chart_words_not_french(response.text))
        assert 'id="job-step">entraînement<' in client.get("/retrain").text
        progress = client.get(f"/retrain/jobs/{retrain_id}").json()
        assert (progress["step"], progress["step_label"]) == ("train", "entraînement")
    monitoring = client.get("/monitoring").text
    assert monitoring.count("<svg") == 3  # accuracy, predictions, class mix: their axes were checked
    assert "jour (UTC)" in monitoring and "part des produits" in monitoring
    # product types are named in French
    review = client.get("/review").text
    assert any(name in review for name in french_names - {c.name for c in load_catalog().categories})


def test_the_switch_and_the_browser_language_choose_french() -> None:
    from prodtype.web.i18n import _from_accept_language

    assert _from_accept_language("fr-FR,fr;q=0.9,en;q=0.8") == "fr"
    assert _from_accept_language("en-GB,fr;q=0.5") == "en"
    assert _from_accept_language("de-DE") is None
