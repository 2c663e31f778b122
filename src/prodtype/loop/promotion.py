"""The promotion rule: when a candidate may replace the champion.

Both are scored on the same evaluation set in the same run. The candidate is promoted only if its weighted
F1 beats the champion's (by at least the configured margin) and no class with enough evaluation products
loses more F1 than the configured limit. The first model is promoted: there is nothing to compare with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from prodtype.config import LoopSettings


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str
    candidate_weighted_f1: float
    champion_weighted_f1: float | None
    gain: float | None
    worst_class: str | None = None
    worst_class_drop: float | None = None
    class_drops: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _f1_by_class(metrics: dict[str, Any]) -> dict[str, tuple[float, int]]:
    per_class = metrics.get("per_class") or {}
    return {str(code): (float(m["f1"]), int(m.get("support", 0))) for code, m in per_class.items()}


def decide(
    candidate: dict[str, Any], champion: dict[str, Any] | None, loop: LoopSettings
) -> PromotionDecision:
    """``candidate`` and ``champion`` are evaluation results (``evaluate(...).to_dict()``) on one set."""
    cand_f1 = float(candidate["weighted_f1"])
    if champion is None:
        return PromotionDecision(True, "first model: there is no champion yet", cand_f1, None, None)
    champ_f1 = float(champion["weighted_f1"])
    gain = cand_f1 - champ_f1
    cand_classes = _f1_by_class(candidate)
    drops: dict[str, float] = {}
    for code, (f1, support) in _f1_by_class(champion).items():
        if support < loop.promotion_min_class_support:
            continue
        drops[code] = round(f1 - cand_classes.get(code, (0.0, 0))[0], 6)
    worst = max(drops, key=lambda c: drops[c], default=None)
    worst_drop = drops[worst] if worst is not None else None

    def decision(promote: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(promote, reason, cand_f1, champ_f1, gain, worst, worst_drop, drops)

    margin = loop.promotion_min_f1_gain
    if gain <= 0 or gain < margin:
        need = f"by at least {margin:.4f}" if margin > 0 else "(it must be higher)"
        reason = (
            f"not promoted: weighted F1 {cand_f1:.4f} does not beat the champion's {champ_f1:.4f} {need}; "
            f"gain {gain:+.4f}"
        )
        return decision(False, reason)
    if worst is not None and worst_drop is not None and worst_drop > loop.promotion_max_class_f1_drop:
        now = cand_classes.get(worst, (0.0, 0))[0]
        reason = (
            f"not promoted: class {worst} loses {worst_drop:.4f} F1 ({now:.4f} vs the champion's "
            f"{now + worst_drop:.4f}), more than the allowed {loop.promotion_max_class_f1_drop:.4f}, "
            f"although weighted F1 gains {gain:+.4f}"
        )
        return decision(False, reason)
    shown = f"; largest class drop {worst_drop:.4f} (class {worst})" if worst is not None else ""
    reason = f"promoted: weighted F1 {cand_f1:.4f} vs the champion's {champ_f1:.4f} (gain {gain:+.4f}){shown}"
    return decision(True, reason)
