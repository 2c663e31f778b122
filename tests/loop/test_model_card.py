"""Each registered version gets a model card, logged to its MLflow run and rebuilt from the registry: on a
real registry with a real bundle scored by the real evaluation, two retrains (the first promoted, the
second kept as challenger with its reason)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from loop.records import review, submit
from prodtype.catalog import load_catalog
from prodtype.data.challenge import Dataset
from prodtype.loop import retrain
from prodtype.loop.model_card import FEW_TRAINING_EXAMPLES, build_card, logged_card
from prodtype.loop.retrain import LoopContext


def test_cards_of_a_promoted_and_a_challenger_version(
    ctx: LoopContext, trained_bundle: Path, sessions: sessionmaker[Session]
) -> None:
    def copy_bundle(data: Dataset, out_dir: Path, progress: bool) -> Path:
        return Path(shutil.copytree(trained_bundle, out_dir))

    ctx.trainer = copy_bundle
    first = retrain.run_all(ctx, force=True)
    assert first.version == 1 and first.promoted is True
    with sessions() as s:
        for i, code in enumerate((2583, 10)):
            review(s, submit(s, f"Produit de test numero {i} pour la carte", code), "accept")
    second = retrain.run_all(ctx, force=True)
    assert second.version == 2 and second.promoted is False  # the same bundle does not beat itself

    catalog = load_catalog()
    report = json.loads((trained_bundle / "training_report.json").read_text())
    for outcome in (first, second):
        assert outcome.run_dir is not None and outcome.version is not None
        run_dir = Path(outcome.run_dir)
        state = json.loads((run_dir / "state.json").read_text())
        metrics: dict[str, Any] = json.loads((run_dir / "evaluation/candidate/metrics.json").read_text())
        card = logged_card(ctx.registry, outcome.version)
        assert card is not None, "no card logged with the version"
        assert card == build_card(ctx.registry, outcome.version, catalog).markdown  # nothing changed since

        assert f"# Model card: prodtype version {outcome.version}" in card
        assert f"Input fingerprint: `{state['input_fingerprint']}`" in card
        base, feedback = state["base_rows"], state["feedback_rows"]
        share = 100 * feedback / (base + feedback)
        assert f"{base:,} from the base data + {feedback:,} reviewed feedback products" in card
        assert f"(feedback share {share:.1f} %)" in card
        assert (
            f"| all | {metrics['n']:,} | {metrics['weighted_f1']:.4f} | {metrics['macro_f1']:.4f} |" in card
        )
        assert f"on the evaluation set: {metrics['ece']:.4f}" in card

        scored = {code: m for code, m in metrics["per_class"].items() if m["support"]}
        worst = sorted(scored, key=lambda c: (scored[c]["f1"], int(c)))[:3]
        line = re.search(r"Worst classes: (.*)\.", card)
        assert line, card
        named = [re.fullmatch(r"(\d+) .+ \(F1 ([0-9.]+)\)", part) for part in line.group(1).split("; ")]
        assert all(named), line.group(1)
        named = [(m.group(1), m.group(2)) for m in named if m]
        assert [code for code, _ in named] == worst
        assert [float(f1) for _, f1 in named] == [round(scored[c]["f1"], 2) for c in worst]
        for code in worst:
            assert catalog.name(int(code)) in line.group(1)

        few = [c for c, n in report["class_counts"].items() if n < FEW_TRAINING_EXAMPLES]
        limits = card.split("## Known limits")[1].split("## How to reproduce")[0]
        for code in few:
            assert f"- {code} " in limits
        assert "prodtype retrain --force" in card and str(ctx.settings.data_dir) in card

    first_card = logged_card(ctx.registry, 1) or ""
    second_card = logged_card(ctx.registry, 2) or ""
    assert "Status: **champion**" in first_card
    assert "Decision: **champion**. first model: there is no champion yet" in first_card
    assert "Status: **challenger**" in second_card
    assert "Decision: **challenger**. not promoted: weighted F1" in second_card
    assert "does not beat the champion's" in second_card
    assert "Against the champion of the time (version 1" in second_card
    assert "+ 2 reviewed feedback products" in second_card
