"""The admin pages (accounts, models, retraining) and the monitoring page over HTTP, on the real app with
a real MLflow registry and real bundles: what each shows, what its forms change, and bad input answered on
the form."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from prodtype.config import LoopSettings, Settings
from prodtype.loop.registry import CHAMPION, Registry
from prodtype.loop.retrain_jobs import retrain_lock, update_job
from service_support.databases import SqliteBackend
from service_support.images import photo
from service_support.registries import mlflow_template, registry_in  # noqa: F401 (fixture)

from .conftest import csrf_of, error_on, log_in, submit

LOOP = LoopSettings(_env_file=None, follow_champion=False)  # type: ignore[call-arg]


@pytest.fixture
def backend(sqlite_backend: SqliteBackend) -> SqliteBackend:
    return sqlite_backend


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"loop": LOOP})


@pytest.fixture
def registry(settings: Settings, mlflow_template: Path) -> Registry:  # noqa: F811
    return registry_in(settings, mlflow_template)


def notice_on(page: str) -> str:
    match = re.search(r'<div class="alert notice" role="status" id="notice">(.*?)</div>', page, re.S)
    assert match, page[:3000]
    return match.group(1)


def post(client: TestClient, page: str, url: str, **data: str) -> tuple[int, str]:
    response = client.post(url, data={**data, "csrf_token": csrf_of(client.get(page))})
    return response.status_code, response.text


def test_accounts_create_change_role_disable_and_reset_password(client: TestClient) -> None:
    log_in(client, "admin")
    page = client.get("/accounts")
    assert page.status_code == 200 and 'id="account-carl"' in page.text
    status, text = post(client, "/accounts", "/accounts", username="nina", password="short", role="reviewer")
    assert status == 422 and "too short" in error_on(text)
    assert 'value="nina"' in text  # the form keeps what was typed
    status, text = post(client, "/accounts", "/accounts", username="n!na", password="long enough", role="x")
    assert status == 422 and "not allowed" in error_on(text)
    status, _ = post(
        client, "/accounts", "/accounts", username="nina", password="long enough", role="customer"
    )
    assert status == 303
    assert (
        post(client, "/accounts", "/accounts", username="nina", password="long enough", role="customer")[0]
        == 409
    )
    status, text = post(client, "/accounts", "/accounts/nina", action="role", role="reviewer")
    assert status == 200 and "nina is now reviewer" in notice_on(text)
    nina = TestClient(client.app, follow_redirects=False)
    log_in(nina, "nina", "long enough")
    assert nina.get("/review").status_code == 200  # the new role applies at once
    status, text = post(client, "/accounts", "/accounts/nina", action="disable")
    assert status == 200 and "disabled" in notice_on(text)
    assert nina.get("/review").status_code == 303  # the session is gone: to the login page
    assert post(client, "/accounts", "/accounts/nina", action="enable")[0] == 200
    status, text = post(client, "/accounts", "/accounts/nina", action="password", password="2short")
    assert status == 422 and "too short" in error_on(text)
    assert post(client, "/accounts", "/accounts/nina", action="password", password="a new password")[0] == 200
    log_in(nina, "nina", "a new password")
    status, text = post(client, "/accounts", "/accounts/admin", action="role", role="customer")
    assert status == 409 and "last active admin" in error_on(text)
    assert post(client, "/accounts", "/accounts/nobody", action="disable")[0] == 404
    assert post(client, "/accounts", "/accounts/nina", action="explode")[0] == 422


def add_version(registry: Registry, bundle: Path, folder: Path, f1: dict[int, float]) -> int:
    shutil.copytree(bundle, folder)
    metrics = {f"eval_f1_{code}": value for code, value in f1.items()}
    metrics |= {"eval_weighted_f1": sum(f1.values()) / len(f1), "eval_macro_f1": min(f1.values())}
    info = registry.log_and_register(folder, run_name=folder.name, params={}, metrics=metrics, tags={})
    return info.version


def test_models_page_lists_versions_charts_per_class_f1_promotes_and_rolls_back(
    app: FastAPI, registry: Registry, trained_bundle: Path, tmp_path: Path
) -> None:
    first = add_version(registry, trained_bundle, tmp_path / "v1", {10: 0.5, 2583: 0.9, 1280: 0.7})
    second = add_version(registry, trained_bundle, tmp_path / "v2", {10: 0.8, 2583: 0.85, 1280: 0.7})
    with TestClient(app, follow_redirects=False) as client:
        log_in(client, "admin")
        page = client.get("/models").text
        assert f'id="version-{first}"' in page and f'id="version-{second}"' in page
        assert "0.5000" in page  # macro F1 of version 1
        status, text = post(client, "/models", f"/models/{first}/promote", reason="  ")
        assert status == 422 and "say why" in error_on(text)
        assert registry.alias_version(CHAMPION) is None
        status, text = post(client, "/models", f"/models/{first}/promote", reason="first <b>one</b>")
        assert status == 200 and f"Version {first} is the champion" in notice_on(text)
        assert registry.alias_version(CHAMPION) == first
        assert "first &lt;b&gt;one&lt;/b&gt;" in text  # the reason is shown, as text
        # the chart: version 2 against the champion, a gain on class 10, a loss on 2583
        page = client.get(f"/models?compare={second}").text
        svg = page[page.index("<svg") : page.index("</svg>")]
        assert "+0.300" in svg and "-0.050" in svg and "+0.000" in svg
        assert svg.count('class="gain"') == 2 and svg.count('class="loss"') == 1
        assert post(client, "/models", f"/models/{second}/promote", reason="better on 10")[0] == 200
        status, text = post(client, "/models", "/models/rollback", reason="worse on 2583")
        assert status == 200 and f"version {first} is the champion again" in notice_on(text)
        assert registry.alias_version(CHAMPION) == first
        assert post(client, "/models", "/models/99/promote", reason="x")[0] == 404
        assert post(client, "/models", "/models/abc/promote", reason="x")[0] == 404


def test_retrain_page_shows_the_trigger_and_jobs_and_refuses_a_second_retrain(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    log_in(client, "admin")
    page = client.get("/retrain")
    assert page.status_code == 200 and 'id="no-jobs"' in page.text
    assert re.search(r'id="new-reviews">0<', page.text)
    job_id = "20261202101500abcdef12"
    log = settings.storage_dir / "job.log"
    log.write_text("fold 2 of 5 <done>\n")
    with retrain_lock(settings, "test"):
        update_job(
            settings, job_id, id=job_id, status="running", step="train", requested_by="admin", log=str(log)
        )
        page = client.get("/retrain").text
        assert f'data-poll="/retrain/jobs/{job_id}"' in page and 'id="job-step">train<' in page
        assert "fold 2 of 5 &lt;done&gt;" in page  # the end of the job's log, escaped
        assert 'id="retrain-button" disabled' in page
        record = client.get(f"/retrain/jobs/{job_id}").json()
        assert (record["status"], record["step"]) == ("running", "train")
        status, text = post(client, "/retrain", "/retrain")
        assert status == 409 and "already running" in error_on(text)
    # the lock is free and no process holds the job: said to have failed, not running forever
    assert client.get(f"/retrain/jobs/{job_id}").json()["status"] == "failed"
    assert client.get("/retrain/jobs/..%2F..%2Fetc").status_code == 404


def test_monitoring_page_plots_accuracy_predictions_and_the_class_mix(client: TestClient) -> None:
    log_in(client, "carl")
    ids = [submit(client, f"Verre à vin {i}", image=photo(i))[1].rsplit("/", 1)[1] for i in range(3)]
    assert client.get("/monitoring").status_code == 403
    log_in(client, "rita")
    for prediction_id, action in zip(ids[:2], ("accept", "correct"), strict=True):
        data = {"action": action, "prdtypecode": "10", "csrf_token": csrf_of(client.get("/review"))}
        assert client.post(f"/review/{prediction_id}", data=data).status_code == 303
    page = client.get("/monitoring?days=7")
    assert page.status_code == 200
    text = page.text
    assert re.search(r'id="predicted">3<', text) and re.search(r'id="backlog">1<', text)
    # one accepted unchanged, one corrected (unless the model said 10 for the second: then both unchanged)
    assert re.search(r'id="accuracy">(50\.0|100\.0) %<', text)
    assert text.count("<svg") == 3 and "<polyline" in text
    assert client.get("/monitoring?days=abc").status_code == 200


def _reviewed_with_shadow(app: FastAPI, version: int, answers: list[tuple[int, int, int]]) -> None:
    """Reviewed predictions with a shadow answer: (served code, shadow code, reviewed code) each."""
    from sqlalchemy import select

    from prodtype.db.tables import Prediction, ShadowPrediction, User

    with app.state.sessions() as session:
        carl = session.scalar(select(User).where(User.username == "carl"))
        for served, shadow, final in answers:
            row = Prediction(
                designation="Stylo",
                predicted_code=served,
                confidence=0.8,
                top_k=[],
                model_version="prodtype/v1",
                status="accepted",
                final_code=final,
                created_by_id=carl.id,
            )
            session.add(row)
            session.flush()
            session.add(ShadowPrediction(prediction_id=row.id, version=version, code=shadow, confidence=0.5))
        session.commit()


def test_models_page_puts_a_version_in_shadow_shows_live_figures_and_the_model_card(
    app: FastAPI, registry: Registry, trained_bundle: Path, tmp_path: Path
) -> None:
    first = add_version(registry, trained_bundle, tmp_path / "v1", {10: 0.5, 2583: 0.9, 1280: 0.7})
    second = add_version(registry, trained_bundle, tmp_path / "v2", {10: 0.8, 2583: 0.85, 1280: 0.7})
    with TestClient(app, follow_redirects=False) as client:
        log_in(client, "admin")
        assert post(client, "/models", f"/models/{first}/promote", reason="first <b>one</b> & co")[0] == 200
        status, text = post(client, "/models", f"/models/{first}/shadow")
        assert status == 409 and "is the champion" in error_on(text)
        assert post(client, "/models", "/models/abc/shadow")[0] == 404
        status, text = post(client, "/models", f"/models/{second}/shadow", reason="try it")
        assert status == 200 and f"Version {second} runs in shadow" in notice_on(text)
        assert f"Version {second} runs in shadow: each new prediction" in text
        # 4 reviewed products: the champion right on 3, the shadow on 2 (both right on one)
        _reviewed_with_shadow(app, second, [(10, 10, 10), (10, 40, 10), (10, 40, 10), (40, 10, 10)])
        page = client.get(f"/models?compare={first}").text
        live = page[page.index('id="shadow-live"') : page.index('id="shadow-difference"')]
        assert "0.750" in live and "0.500" in live
        difference = page[page.index('id="shadow-difference"') :]
        assert difference[: difference.index("</tr>")].count("-0.250") == 1
        # The champion's card, its promotion reason shown as text, escaped once.
        card = page[page.index('id="model-card"') :]
        card = card[: card.index("</section>")]
        assert f"<h3>Model card: prodtype version {first}</h3>" in card and "<h4>Data</h4>" in card
        assert (
            "first &lt;b&gt;one&lt;/b&gt; &amp; co" in card
            and "<b>one" not in card
            and "&amp;lt;" not in card
        )
        assert "<th>weighted F1</th>" in card and "## " not in card and "|---" not in card
        status, text = post(client, "/models", "/models/shadow/stop")
        assert status == 200 and f"Version {second} no longer runs in shadow" in notice_on(text)
        assert "No version runs in shadow" in text and "0.750" in text  # the figures stay
        assert "No version was in shadow" in notice_on(post(client, "/models", "/models/shadow/stop")[1])


def test_the_card_renderer_makes_no_html_of_its_input() -> None:
    from prodtype.web.markdown import parse

    blocks = parse(
        "# Card &lt;x&gt;\n\nSome **bold** and `co|de` text\nwrapped.\n\n| a | b \\| c |\n|---|---|\n"
        "| 1 | <script>x</script> |\n\n- one\n- **two**\n\n```bash\nprodtype retrain\n```\n"
    )
    assert [b.kind for b in blocks] == ["heading", "paragraph", "table", "list", "code"]
    assert blocks[0].level == 1 and blocks[0].segments == [("text", "Card <x>")]
    assert blocks[1].segments == [
        ("text", "Some "),
        ("strong", "bold"),
        ("text", " and "),
        ("code", "co|de"),
        ("text", " text wrapped."),
    ]
    assert blocks[2].header == [[("text", "a")], [("text", "b | c")]]
    assert blocks[2].rows == [[[("text", "1")], [("text", "<script>x</script>")]]]
    assert blocks[3].items == [[("text", "one")], [("strong", "two")]]
    assert blocks[4].text == "prodtype retrain"
