"""Shadow evaluation end to end: a challenger trained on shuffled labels runs in shadow beside the champion
in a real ``prodtype serve`` process; after a few dozen reviews its live accuracy on the same products is far
below the champion's, and the promotion rule (asked to look at live figures) keeps it out, naming them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from loop.tiny import TYPES
from prodtype.loop import retrain
from prodtype.loop.registry import CHAMPION
from prodtype.loop.retrain import LoopContext
from prodtype.loop.shadow import ShadowLedger
from service_support.databases import PASSWORD, both_databases
from service_support.server import running_server
from service_support.waiting import until

API = "/api/v1"
PER_TYPE = 5  # 30 reviewed products in all


def _products(data_dir: Path) -> pd.DataFrame:
    x = pd.read_csv(data_dir / "X_train.csv", index_col=0, keep_default_na=False)
    y = pd.read_csv(data_dir / "Y_train.csv", index_col=0)["prdtypecode"]
    x["label"] = y
    picked = x[x["label"].isin(TYPES)].groupby("label", group_keys=False).head(PER_TYPE)
    return picked.sample(frac=1.0, random_state=3)


def _token(client: httpx.Client, user: str) -> dict[str, str]:
    r = client.post(f"{API}/auth/token", data={"username": user, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


@both_databases
def test_a_shuffled_challenger_in_shadow_is_far_below_the_champion_live_and_is_not_promoted(
    tiny_ctx: LoopContext, tiny_data_dir: Path
) -> None:
    loop = tiny_ctx.loop.model_copy(
        update={"shadow_challenger": True, "promotion_require_live": True, "promotion_live_min_reviews": 20}
    )
    ctx = tiny_ctx
    ctx.settings = ctx.settings.model_copy(update={"loop": loop})
    champion = retrain.run_all(ctx, force=True)
    assert champion.promoted and champion.version == 1, champion
    shuffled = retrain.run_all(ctx, force=True, shuffle_labels=True)
    assert shuffled.version == 2 and not shuffled.promoted, shuffled
    assert (
        shuffled.reason is not None and "only 0 reviewed products with its shadow answer" in shuffled.reason
    )
    recorded = ShadowLedger(ctx.sessions()).current(ctx.registry.model_name)
    assert recorded is not None and recorded.version == 2 and recorded.actor == "retrain"

    s = ctx.settings
    env = {
        "PRODTYPE_ENVIRONMENT": "test",
        "PRODTYPE_STORAGE_DIR": str(s.storage_dir),
        "PRODTYPE_DATABASE_URL": s.resolved_database_url,
        "PRODTYPE_DATA_DIR": str(tiny_data_dir),
        "PRODTYPE_IMAGE_CACHE_DIR": str(s.resolved_image_cache_dir),
        "PRODTYPE_JWT_SECRET": "shadow-secret-" + "x" * 40,
        "PRODTYPE_CHAMPION_POLL_SECONDS": "0.2",
        "PRODTYPE_METRICS_REFRESH_SECONDS": "0",
        "PRODTYPE_THREADS": "1",
    }
    products = _products(tiny_data_dir)
    with running_server("serve", env) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        admin, carl, rita = (_token(client, u) for u in ("admin", "carl", "rita"))

        def shadow() -> dict[str, Any]:
            r = client.get(f"{API}/models/shadow", headers=admin)
            assert r.status_code == 200, r.text
            return dict(r.json())

        until(
            lambda: shadow()["scorer"]["version"] == 2, 120, lambda: f"not in shadow: {shadow()}", every=0.2
        )
        truth: dict[int, int] = {}
        for row in products.itertuples():
            form = {"designation": (None, row.designation), "description": (None, row.description)}
            r = client.post(f"{API}/predictions", files=form, headers=carl)
            assert r.status_code == 201, r.text
            assert r.json()["model_version"] == "prodtype/v1"
            truth[r.json()["id"]] = int(row.label)
        until(
            lambda: shadow()["scorer"]["scored"] == len(truth),
            120,
            lambda: f"the shadow answers were not all recorded: {shadow()['scorer']}",
            every=0.2,
        )
        assert shadow()["scorer"]["dropped"] == 0 and shadow()["scorer"]["failed"] == 0
        for prediction_id, code in truth.items():
            body = {"decision": "accept", "prdtypecode": code}
            r = client.post(f"{API}/predictions/{prediction_id}/review", json=body, headers=rita)
            assert r.status_code == 200, r.text

        live = shadow()["live"]
        assert live["version"] == 2 and live["n"] == len(truth) == 30
        assert live["champion"]["accuracy"] >= 0.8, live
        assert live["challenger"]["accuracy"] <= 0.5, live
        assert live["difference_high"] < 0 < live["champion"]["low"], live  # worse, beyond the noise
        assert live["challenger"]["high"] < live["champion"]["low"], live
        assert live["served_versions"] == ["prodtype/v1"]

        metrics = client.get("/metrics").text
        challenger = re.search(r'^prodtype_shadow_live_accuracy\{model="challenger"\} (\S+)$', metrics, re.M)
        assert (
            challenger is not None and abs(float(challenger.group(1)) - live["challenger"]["accuracy"]) < 1e-9
        )
        assert re.search(r"^prodtype_shadow_reviewed_products 30\.0$", metrics, re.M), metrics[-3000:]
        assert re.search(r'^prodtype_shadow_products_total\{outcome="scored"\} 30\.0$', metrics, re.M)

        # The promote step again, now that reviews have arrived: still not promoted, for the live figures.
        outcome = retrain.promote(ctx, Path(shuffled.run_dir or ""))
        assert not outcome.promoted and outcome.champion == 1
        assert "live, on the same 30 reviewed products" in outcome.reason, outcome.reason
        assert "worse than the champion" in outcome.reason, outcome.reason
        assert ctx.registry.alias_version(CHAMPION) == 1
        assert ctx.registry.get(2).tags["promotion_reason"] == outcome.reason

        # An admin stops the shadow: new predictions are no longer scored, the figures stay.
        r = client.delete(f"{API}/models/shadow", headers=admin)
        assert r.status_code == 200 and r.json()["version"] is None and r.json()["live"]["n"] == 30
        until(lambda: shadow()["scorer"]["version"] is None, 60, "the shadow model was not removed")
        r = client.post(f"{API}/predictions", files={"designation": (None, "Stylo bille")}, headers=carl)
        assert r.status_code == 201
        assert shadow()["scorer"]["submitted"] == len(truth)
        # Back in shadow over the API: this process installs it before answering; the champion cannot be.
        r = client.put(f"{API}/models/1/shadow", headers=admin)
        assert r.status_code == 409 and "is the champion" in r.json()["detail"]
        r = client.put(f"{API}/models/2/shadow", json={"reason": "again"}, headers=admin)
        assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["scorer"]["version"] == 2
        assert r.json()["reason"] == "again" and r.json()["by"] == "admin"
        # The bulk API's products are shadowed too.
        before = shadow()["scorer"]["scored"]
        items = [{"designation": "Piscine tubulaire"}, {"designation": "Lot de 6 verres à vin"}]
        r = client.post(f"{API}/predictions/batch", json=items, headers=carl)
        assert r.status_code == 200 and r.json()["created"] == 2
        until(lambda: shadow()["scorer"]["scored"] == before + 2, 60, lambda: f"{shadow()['scorer']}")
