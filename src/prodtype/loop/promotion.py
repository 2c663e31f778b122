"""The promotion rule: when a candidate may replace the champion.

Both are scored on the same evaluation set in the same run. The candidate is promoted only if its weighted
F1 beats the champion's (by at least the configured margin) and no class with enough evaluation products
loses more F1 than the configured limit. The first model is promoted: there is nothing to compare with.

With ``PRODTYPE_PROMOTION_REQUIRE_LIVE`` the candidate must also have answered, in shadow, at least
``PRODTYPE_PROMOTION_LIVE_MIN_REVIEWS`` products that reviewers have since reviewed, and its accuracy on them
must not be below the champion's on the same products by more than ``PRODTYPE_PROMOTION_LIVE_MAX_DROP``
(:func:`with_live`; the figures come from :func:`prodtype.loop.shadow.compare_live`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from prodtype.config import LoopSettings

if TYPE_CHECKING:
    from prodtype.loop.shadow import LiveComparison


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
    live: dict[str, Any] | None = None  # the live comparison the decision used, when the rule asks for it

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


def with_live(
    decision: PromotionDecision, live: LiveComparison | None, loop: LoopSettings
) -> PromotionDecision:
    """The evaluation-set decision, held to the live rule too when the settings ask for it (a first model,
    with no champion to compare with, is left as it is)."""
    if not loop.promotion_require_live or decision.champion_weighted_f1 is None:
        return decision
    need, allowed = loop.promotion_live_min_reviews, loop.promotion_live_max_drop
    rule = (
        f"live rule: at least {need} reviewed products answered in shadow, accuracy at most "
        f"{allowed:.3f} below the champion's on them"
    )
    if live is None or live.n < need:
        n = 0 if live is None else live.n
        figures = live.describe() if live is not None and live.n else "no live figures yet"
        live_ok, why = False, f"only {n} reviewed products with its shadow answer ({figures}); {rule}"
    else:
        assert live.difference is not None
        live_ok = live.difference >= -allowed - 1e-12
        verdict = "not worse than" if live_ok else "worse than"
        why = f"{live.describe()}: {verdict} the champion ({rule})"
    dumped = live.model_dump() if live is not None else None
    if decision.promote and live_ok:
        reason = f"{decision.reason}; {why}"
    elif decision.promote:
        evaluation = decision.reason.removeprefix("promoted: ")
        reason = f"not promoted: {why}; on the evaluation set alone it would be ({evaluation})"
    else:
        reason = f"{decision.reason}; {why}"
    return replace(decision, promote=decision.promote and live_ok, reason=reason, live=dumped)
