"""The models page in a real browser (Debian's chromium, Playwright) against ``prodtype serve``: the chosen
version's model card is shown, rendered from its Markdown as text (a promotion reason holding HTML and
script shows as text, no script runs, the CSP refuses nothing), and a version is put in shadow with its
button."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from prodtype.config import Settings
from service_support.registries import mlflow_template, registry_in  # noqa: F401 (fixture)
from service_support.server import Server, running_server

from .test_browser import HOSTILE, Tab, backend, browser  # noqa: F401 (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture
def server(
    database_url: str,
    trained_bundle: Path,
    tmp_path: Path,
    mlflow_template: Path,  # noqa: F811
) -> Iterator[Server]:
    storage = tmp_path / "storage"
    settings = Settings(_env_file=None, environment="test", storage_dir=storage, database_url=database_url)  # type: ignore[call-arg]
    registry = registry_in(settings, mlflow_template)
    for name in ("v1", "v2"):
        shutil.copytree(trained_bundle, tmp_path / name)
        registry.log_and_register(
            tmp_path / name, run_name=name, params={}, metrics={"eval_weighted_f1": 0.7}, tags={}
        )
    registry.promote(1, reason=HOSTILE, actor="admin")
    env = {
        "PRODTYPE_STORAGE_DIR": str(storage),
        "PRODTYPE_MODEL_PATH": str(trained_bundle),
        "PRODTYPE_DATABASE_URL": database_url,
        "PRODTYPE_FOLLOW_CHAMPION": "false",
    }
    with running_server("serve", env) as server:
        yield server


def test_models_page_shows_the_model_card_as_text_and_puts_a_version_in_shadow(
    browser: Any,  # noqa: F811
    server: Server,
    tmp_path: Path,
) -> None:
    admin = Tab(browser, server.url)
    admin.log_in("admin")
    page = admin.page
    page.goto("/models?compare=1")
    card = page.locator("#model-card")
    assert card.locator("h3").first.inner_text() == "Model card: prodtype version 1"
    assert card.locator("h4", has_text="Evaluation").count() == 1
    assert card.locator("table").count() >= 2 and card.locator("table thead th").first.text_content() == "set"
    # The reason holds HTML and script: shown as text, nothing made of it, nothing run.
    decision = card.locator("p", has_text="Decision:")
    assert HOSTILE in decision.inner_text()
    assert decision.locator("img, script, b").count() == 0
    assert page.evaluate("window.__injected") is None
    assert "prodtype retrain" in card.locator("pre code").first.inner_text()  # how to reproduce it
    page.screenshot(path=tmp_path / "models-card.png", full_page=True)

    page.click("#version-2 form.shadow-form button[type=submit]")
    page.wait_for_load_state()
    assert "Version 2 runs in shadow" in page.inner_text("#notice")
    assert page.inner_text("#shadow-version").startswith("Version 2 runs in shadow")
    assert page.locator("#version-2 .badge.challenger", has_text="in shadow").count() == 1
    page.screenshot(path=tmp_path / "models-shadow.png", full_page=True)
    assert admin.errors == []
