"""The promotion rule: weighted F1 must beat the champion's by the margin; no class may drop too far."""

from __future__ import annotations

from typing import Any

import pytest

from prodtype.config import LoopSettings
from prodtype.loop.promotion import decide


def result(weighted: float, **per_class: tuple[float, int]) -> dict[str, Any]:
    classes = per_class or {"10": (weighted, 20), "2583": (weighted, 20)}
    return {
        "weighted_f1": weighted,
        "per_class": {
            code: {"f1": f1, "support": n, "precision": f1, "recall": f1} for code, (f1, n) in classes.items()
        },
    }


def rules(**kw: Any) -> LoopSettings:
    return LoopSettings(_env_file=None, **kw)  # type: ignore[call-arg]


def test_first_model_is_promoted() -> None:
    d = decide(result(0.3), None, rules())
    assert d.promote and "first model" in d.reason and d.champion_weighted_f1 is None


@pytest.mark.parametrize(
    ("candidate", "champion", "margin", "promoted"),
    [
        (0.80, 0.70, 0.0, True),
        (0.70, 0.70, 0.0, False),  # equal is not better
        (0.69, 0.70, 0.0, False),
        (0.705, 0.70, 0.01, False),  # better, but not by the margin
        (0.711, 0.70, 0.01, True),
    ],
)
def test_weighted_f1_must_beat_the_champion_by_the_margin(
    candidate: float, champion: float, margin: float, promoted: bool
) -> None:
    d = decide(result(candidate), result(champion), rules(promotion_min_f1_gain=margin))
    assert d.promote is promoted
    assert d.gain == pytest.approx(candidate - champion)
    if not promoted:
        assert "does not beat" in d.reason and f"{champion:.4f}" in d.reason


def test_a_class_that_drops_too_far_blocks_promotion() -> None:
    champion = result(0.70, **{"10": (0.90, 30), "2583": (0.60, 30)})
    candidate = result(0.75, **{"10": (0.60, 30), "2583": (0.90, 30)})
    d = decide(candidate, champion, rules(promotion_max_class_f1_drop=0.2, promotion_min_class_support=5))
    assert not d.promote
    assert d.worst_class == "10" and d.worst_class_drop == pytest.approx(0.3)
    assert "class 10 loses 0.3000" in d.reason


def test_small_classes_are_not_held_to_the_drop_limit() -> None:
    champion = result(0.70, **{"10": (0.90, 2), "2583": (0.60, 30)})
    candidate = result(0.75, **{"10": (0.0, 2), "2583": (0.65, 30)})
    d = decide(candidate, champion, rules(promotion_max_class_f1_drop=0.2, promotion_min_class_support=5))
    assert d.promote, d.reason
    assert "10" not in d.class_drops


def test_a_class_missing_from_the_candidate_counts_as_zero_f1() -> None:
    champion = result(0.70, **{"10": (0.50, 30), "2583": (0.60, 30)})
    candidate = result(0.80, **{"2583": (0.90, 30)})
    d = decide(candidate, champion, rules(promotion_max_class_f1_drop=0.3, promotion_min_class_support=5))
    assert not d.promote and d.worst_class == "10"


def test_a_drop_of_exactly_the_limit_is_allowed() -> None:
    champion = result(0.70, **{"10": (0.90, 30), "2583": (0.60, 30)})
    at_limit = result(0.75, **{"10": (0.70, 30), "2583": (0.90, 30)})  # class 10 loses exactly 0.2
    d = decide(at_limit, champion, rules(promotion_max_class_f1_drop=0.2, promotion_min_class_support=5))
    assert d.promote, d.reason
    assert d.worst_class == "10" and d.worst_class_drop == pytest.approx(0.2)
    over = result(0.75, **{"10": (0.69, 30), "2583": (0.90, 30)})
    assert not decide(
        over, champion, rules(promotion_max_class_f1_drop=0.2, promotion_min_class_support=5)
    ).promote
