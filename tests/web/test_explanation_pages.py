"""Why the model said so, on the prediction page and in the review queue's fragments: decisive words marked
in the escaped text, a bar per branch, "the photo disagreed"; the real app with the real model."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from markupsafe import escape

from prodtype.app import create_app
from prodtype.config import Settings
from prodtype.data.text import clean_text
from prodtype.ml.bundle import ModelBundle
from prodtype.ml.explain import explain
from prodtype.serving.model_holder import ModelHolder

from .conftest import log_in, submit

# Cleaning removes the <script> tags but not a tag longer than it looks for, so the text the model reads
# (and the explanation shows) still holds a real <img onerror> tag: only the template's escaping stands
# between it and the page.
SNEAKY = (
    f'<script>alert("x")</script>Piscine <img src=x onerror=alert(1) {"a" * 510}> tubulaire ronde avec pompe'
)
SNEAKY_CLEAN = clean_text(SNEAKY)
MARK = re.compile(r'<mark class="toward-(predicted|runner-up) level-([123])" title="[^"]*">([^<]*)</mark>')


def section(page: str) -> str:
    match = re.search(r'<section class="card explanation".*?</section>', page, re.S)
    assert match, page[:3000]
    return match.group(0)


def field_html(html: str, name: str) -> str:
    match = re.search(rf'<dd class="explained-{name}[^"]*">(.*?)</dd>', html, re.S)
    assert match, html
    return match.group(1)


def test_the_prediction_page_marks_the_decisive_words_escaped(client: TestClient, app: FastAPI) -> None:
    log_in(client, "carl")
    description = 'Piscine hors sol 3 < 5 m & pompe "quiet"'
    status, location = submit(client, SNEAKY, description)
    assert status == 303
    page = client.get(location).text
    why = section(page)
    assert "<img src=x onerror=alert(1)" in SNEAKY_CLEAN  # what the explanation shows is still hostile
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;img src=x onerror=alert(1)" in why
    # the whole text, escaped; the only tags in it are the marks
    assert re.sub(r"</?mark[^>]*>", "", field_html(why, "title")) == escape(SNEAKY_CLEAN)
    assert re.sub(r"</?mark[^>]*>", "", field_html(why, "description")) == escape(description)
    marks = MARK.findall(why)
    assert marks, why
    bundle = app.state.model_holder.get()
    assert isinstance(bundle, ModelBundle)
    e = explain(bundle, SNEAKY, description)
    strongest = max(e.words, key=lambda w: abs(w.margin))
    assert ("predicted" if strongest.margin > 0 else "runner-up", "3", strongest.text) in marks
    # a bar per branch (no photo: no photo bar), with the signed contribution
    assert re.findall(r'<tr class="branch branch-(\w+)">', why) == ["text", "embedding"]
    assert why.count("<meter") == 2
    assert f"{e.branches[0].contribution:+.2f}" in why
    assert "The photo disagreed" not in why


@pytest.fixture(scope="module")
def other_photos(sample_dataset) -> list[bytes]:  # type: ignore[no-untyped-def]
    products: pd.DataFrame = sample_dataset.products
    pools = products[(products["label"] == 2583) & products["image_path"].notna()]["image_path"].head(2)
    others = products[(products["label"] != 2583) & products["image_path"].notna()]["image_path"].head(6)
    return [Path(p).read_bytes() for p in [*pools, *others]]


def test_the_photo_disagreed_is_said_exactly_when_it_did(
    client: TestClient, app: FastAPI, other_photos: list[bytes]
) -> None:
    bundle = app.state.model_holder.get()
    log_in(client, "carl")
    said = set()
    for image in other_photos:
        title = "Piscine tubulaire ronde avec pompe de filtration"
        e = explain(bundle, title, "", image)
        why = section(client.get(submit(client, title, "", image)[1]).text)
        assert ('id="photo-disagreed"' in why) == e.photo_disagrees
        if e.photo_disagrees:
            code = e.classes[e.photo.own_choice]  # type: ignore[union-attr]
            assert "on its own it points to <strong>" in why and f"({code})</strong>" in why
        assert re.findall(r'<tr class="branch branch-(\w+)">', why) == ["text", "embedding", "image"]
        said.add(e.photo_disagrees)
    assert said == {True, False}


def test_the_review_queue_loads_each_explanation_and_only_for_who_may_read_it(
    client: TestClient, app: FastAPI
) -> None:
    log_in(client, "carl")
    prediction_id = submit(client, SNEAKY, "")[1].rsplit("/", 1)[1]
    log_in(client, "rita")
    queue = client.get("/review").text
    assert f'data-explanation="/predictions/{prediction_id}/explanation"' in queue
    fragment = client.get(f"/predictions/{prediction_id}/explanation")
    assert fragment.status_code == 200
    assert fragment.text.lstrip().startswith('<section class="card explanation"')  # a fragment, no page
    assert "<script>alert" not in fragment.text and MARK.search(fragment.text)
    log_in(client, "cora")  # another customer: as for the prediction itself, it does not exist
    assert client.get(f"/predictions/{prediction_id}/explanation").status_code == 404
    assert client.get("/predictions/abc/explanation").status_code == 404
    log_in(client, "carl")
    assert client.get(f"/predictions/{prediction_id}/explanation").status_code == 200


def test_without_a_model_the_page_still_shows_and_says_why(settings: Settings, app: FastAPI) -> None:
    with TestClient(app, follow_redirects=False) as client:
        log_in(client, "carl")
        location = submit(client, SNEAKY, "")[1]
    bare = create_app(settings, model_holder=ModelHolder())
    with TestClient(bare, follow_redirects=False) as client:
        log_in(client, "carl")
        page = client.get(location)
    assert page.status_code == 200
    assert 'id="no-explanation"' in page.text and "no model is loaded" in page.text
