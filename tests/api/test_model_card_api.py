"""GET /api/v1/models/{version}/card: a registered version's model card, for admins, as Markdown or as
JSON facts; built from the registry for versions registered by hand too."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from prodtype.loop.registry import Registry
from service_support.registries import mlflow_template  # noqa: F401 (fixture)

from .conftest import API, Headers
from .test_models_api import app, backend, client, registry  # noqa: F401 (fixtures)

METRICS = {
    "weighted_f1": 0.7123,
    "macro_f1": 0.6501,
    "accuracy": 0.7222,
    "n": 36,
    "ece": 0.0456,
    "with_image": {"n": 10, "weighted_f1": 0.8, "macro_f1": 0.7, "accuracy": 0.8},
    "text_only": {"n": 26, "weighted_f1": 0.69, "macro_f1": 0.6, "accuracy": 0.7},
    "per_class": {
        "10": {"precision": 0.9, "recall": 0.8, "f1": 0.85, "support": 20},
        "2583": {"precision": 0.5, "recall": 0.4, "f1": 0.44, "support": 12},
        "1280": {"precision": 0.2, "recall": 0.1, "f1": 0.13, "support": 4},
    },
}


def register(store: Registry, trained_bundle: Path, tmp_path: Path) -> int:
    bundle = Path(shutil.copytree(trained_bundle, tmp_path / "bundle"))
    evaluation = tmp_path / "evaluation" / "candidate"
    evaluation.mkdir(parents=True)
    (evaluation / "metrics.json").write_text(json.dumps(METRICS))
    info = store.log_and_register(
        bundle,
        run_name="by-hand",
        params={"base_rows": 900, "feedback_rows": 100, "input_fingerprint": "abc123", "eval_rows": 36},
        metrics={"eval_weighted_f1": 0.7123},
        tags={},
        artifacts={"evaluation": tmp_path / "evaluation"},
        version_tags={"promotion": "challenger", "promotion_reason": "not promoted: <b>kept</b> for a test"},
    )
    return info.version


def test_the_card_of_a_version(
    client: TestClient,  # noqa: F811
    registry: Registry,  # noqa: F811
    auth: Callable[[str], Headers],
    trained_bundle: Path,
    tmp_path: Path,
) -> None:
    version = register(registry, trained_bundle, tmp_path)
    response = client.get(f"{API}/models/{version}/card", headers=auth("admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/markdown; charset=utf-8"
    card = response.text
    assert card.startswith(f"# Model card: prodtype version {version}\n")
    assert "Input fingerprint: `abc123`" in card
    assert "900 from the base data + 100 reviewed feedback products (feedback share 10.0 %)" in card
    assert "| all | 36 | 0.7123 | 0.6501 | 0.7222 |" in card
    assert "on the evaluation set: 0.0456" in card
    assert "Worst classes: 1280 " in card and "(F1 0.13); 2583 " in card
    assert "Decision: **challenger**. not promoted: &lt;b&gt;kept&lt;/b&gt; for a test" in card  # no HTML
    limits = card.split("## Known limits")[1]
    assert "- 1280 " in limits  # 4 evaluation products

    facts = client.get(f"{API}/models/{version}/card", params={"format": "json"}, headers=auth("admin"))
    assert facts.status_code == 200
    assert facts.json()["worst_classes"] == [1280, 2583, 10]
    assert facts.json()["data"]["feedback_share"] == 0.1


def test_who_may_read_a_card_and_bad_versions(
    client: TestClient,  # noqa: F811
    registry: Registry,  # noqa: F811
    auth: Callable[[str], Headers],
    trained_bundle: Path,
    tmp_path: Path,
) -> None:
    assert client.get(f"{API}/models/1/card", headers=auth("admin")).status_code == 404  # nothing registered
    version = register(registry, trained_bundle, tmp_path)
    url = f"{API}/models/{version}/card"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=auth("rita")).status_code == 403
    assert client.get(url, headers=auth("carl")).status_code == 403
    missing = client.get(f"{API}/models/{version + 1}/card", headers=auth("admin"))
    assert missing.status_code == 404 and "has no version" in missing.json()["detail"]
    for bad in ("0", "abc"):
        assert client.get(f"{API}/models/{bad}/card", headers=auth("admin")).status_code == 422
    wrong = client.get(url, params={"format": "html"}, headers=auth("admin"))
    assert wrong.status_code == 422
