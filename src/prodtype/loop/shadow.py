"""Shadow evaluation: a registered version answers every new prediction beside the champion, unseen.

Which version is in shadow is recorded in prodtype's database (:class:`ShadowLedger`, one at a time), by an
admin (API, models page) or by the retrain job (``PRODTYPE_SHADOW_CHALLENGER``: a candidate that is not
promoted goes into shadow). Each serving process follows that record (:class:`ShadowFollower`) and installs
the version's bundle in its :class:`~prodtype.serving.shadow.ShadowScorer`, which scores off the request path.

As reviews arrive, :func:`compare_live` puts both answers against the reviewers' on the *same* products:
accuracy with a 95 % Wilson interval each, and the paired difference (challenger minus served model) with a
95 % interval from the discordant pairs (the normal approximation behind McNemar's test).
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import LoopSettings
from prodtype.db.tables import ModelShadow, Prediction, ShadowPrediction, Status
from prodtype.loop.ledger import manifest_digest, record_with_audit
from prodtype.loop.polling import Poller
from prodtype.loop.registry import CHAMPION, Registry, RegistryError, UnknownVersionError
from prodtype.ml.predictor import Predictor
from prodtype.serving.errors import ConflictError, InvalidInputError, NotFoundError
from prodtype.serving.shadow import ShadowScorer

log = logging.getLogger(__name__)

Z95 = 1.959963984540054


# -- which version is in shadow ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedShadow:
    version: int
    manifest_sha256: str | None
    actor: str | None
    reason: str
    since: str


class ShadowLedger:
    """Start and stop records of the shadow version, in the service's database (one session per call)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def _write(
        self,
        model_name: str,
        action: str,
        version: int | None,
        digest: str | None,
        actor: str | None,
        reason: str,
    ) -> None:
        row = ModelShadow(
            model_name=model_name,
            action=action,
            version=version,
            manifest_sha256=digest,
            actor=actor,
            reason=reason,
        )
        record_with_audit(
            self.sessions,
            row,
            actor,
            f"model.shadow_{'started' if action == 'start' else 'stopped'}",
            str(version) if version is not None else "-",
            {"model": model_name, "reason": reason, "manifest": digest},
        )

    def start(
        self, model_name: str, version: int, *, bundle: Path | None, actor: str | None, reason: str
    ) -> None:
        digest = manifest_digest(bundle) if bundle is not None else None
        self._write(model_name, "start", version, digest, actor, reason)

    def stop(self, model_name: str, *, actor: str | None, reason: str) -> int | None:
        """Stop the shadow; the version that was in shadow (None when there was none: nothing recorded)."""
        current = self.current(model_name)
        if current is None:
            return None
        self._write(model_name, "stop", current.version, None, actor, reason)
        return current.version

    def current(self, model_name: str) -> RecordedShadow | None:
        with self.sessions() as session:
            row = session.scalar(
                select(ModelShadow)
                .where(ModelShadow.model_name == model_name)
                .order_by(ModelShadow.id.desc())
                .limit(1)
            )
            if row is None or row.action != "start" or row.version is None:
                return None
            return RecordedShadow(row.version, row.manifest_sha256, row.actor, row.reason, row.at.isoformat())

    def last_version(self, model_name: str) -> int | None:
        """The version most recently put in shadow, even if stopped since (its figures stay readable)."""
        with self.sessions() as session:
            return session.scalar(
                select(ModelShadow.version)
                .where(ModelShadow.model_name == model_name, ModelShadow.action == "start")
                .order_by(ModelShadow.id.desc())
                .limit(1)
            )


def put_in_shadow(
    registry: Registry,
    ledger: ShadowLedger,
    version: int,
    *,
    actor: str | None,
    reason: str,
    check: Callable[[Path], object] | None = None,
) -> RecordedShadow:
    """Put ``version`` in shadow (replacing any other) after checking its bundle loads and answers."""
    try:
        registry.get(version)
    except UnknownVersionError as exc:
        raise NotFoundError(str(exc)) from None
    if registry.alias_version(CHAMPION) == version:
        raise ConflictError(f"version {version} is the champion: only another version can run in shadow")
    try:
        bundle = registry.local_bundle(version)
    except RegistryError as exc:
        raise InvalidInputError(f"version {version} cannot run in shadow: {exc}") from None
    if check is not None:
        try:
            check(bundle)
        except Exception as exc:
            raise InvalidInputError(
                f"version {version} was refused: its bundle failed the checks ({type(exc).__name__}: {exc})"
            ) from None
    ledger.start(registry.model_name, version, bundle=bundle, actor=actor, reason=reason)
    current = ledger.current(registry.model_name)
    assert current is not None
    return current


# -- live figures -------------------------------------------------------------------------------------------


class LiveAccuracy(BaseModel):
    correct: int
    n: int
    accuracy: float | None = Field(description="Share of the reviewed products it got right")
    low: float | None = Field(description="95 % Wilson interval, lower bound")
    high: float | None = Field(description="95 % Wilson interval, upper bound")


class LiveComparison(BaseModel):
    """Both models on the same reviewed products: those with a shadow answer and an accepted review."""

    version: int = Field(description="The version in shadow")
    n: int = Field(description="Reviewed products that both models answered")
    champion: LiveAccuracy = Field(description="The served model's answers (recorded with the predictions)")
    challenger: LiveAccuracy = Field(description="The shadow version's answers")
    difference: float | None = Field(description="Challenger accuracy minus the served model's (paired)")
    difference_low: float | None
    difference_high: float | None
    only_champion_right: int
    only_challenger_right: int
    served_versions: list[str] = Field(description="Which served versions made those predictions")

    def describe(self) -> str:
        """One line for decision reasons and logs."""
        if self.n == 0:
            return f"no reviewed product has an answer of version {self.version} in shadow yet"
        c, s = self.champion, self.challenger
        return (
            f"live, on the same {self.n} reviewed products: accuracy {s.accuracy:.3f} "
            f"[{s.low:.3f}, {s.high:.3f}] vs the champion's {c.accuracy:.3f} [{c.low:.3f}, {c.high:.3f}], "
            f"difference {self.difference:+.3f} [{self.difference_low:+.3f}, {self.difference_high:+.3f}]"
        )


def wilson(correct: int, n: int, z: float = Z95) -> tuple[float, float] | tuple[None, None]:
    if n == 0:
        return None, None
    p = correct / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def paired_difference(
    only_b: int, only_a: int, n: int, z: float = Z95
) -> tuple[float, float, float] | tuple[None, None, None]:
    """B's accuracy minus A's on the same ``n`` items, from the discordant counts, with a 95 % interval."""
    if n == 0:
        return None, None, None
    d = (only_b - only_a) / n
    variance = max((only_b + only_a) / n - d * d, 0.0) / n
    half = z * math.sqrt(variance)
    return d, max(-1.0, d - half), min(1.0, d + half)


def _accuracy(correct: int, n: int) -> LiveAccuracy:
    low, high = wilson(correct, n)
    return LiveAccuracy(correct=correct, n=n, accuracy=correct / n if n else None, low=low, high=high)


def compare_live(session: Session, version: int) -> LiveComparison:
    rows = session.execute(
        select(
            Prediction.predicted_code, Prediction.final_code, ShadowPrediction.code, Prediction.model_version
        )
        .join(ShadowPrediction, ShadowPrediction.prediction_id == Prediction.id)
        .where(
            ShadowPrediction.version == version,
            Prediction.status == Status.ACCEPTED.value,
            Prediction.final_code.is_not(None),
        )
    ).all()
    n = len(rows)
    champion_right = sum(1 for served, final, _, _ in rows if served == final)
    challenger_right = sum(1 for _, final, shadow, _ in rows if shadow == final)
    only_champion = sum(1 for served, final, shadow, _ in rows if served == final and shadow != final)
    only_challenger = sum(1 for served, final, shadow, _ in rows if shadow == final and served != final)
    diff, low, high = paired_difference(only_challenger, only_champion, n)
    return LiveComparison(
        version=version,
        n=n,
        champion=_accuracy(champion_right, n),
        challenger=_accuracy(challenger_right, n),
        difference=diff,
        difference_low=low,
        difference_high=high,
        only_champion_right=only_champion,
        only_challenger_right=only_challenger,
        served_versions=sorted({str(v) for *_, v in rows}),
    )


def live_comparison(sessions: sessionmaker[Session], version: int) -> LiveComparison:
    with sessions() as session:
        return compare_live(session, version)


# -- each serving process follows the record ---------------------------------------------------------------


class ShadowFollower(Poller):
    """Installs the recorded shadow version in ``scorer`` (after checking its manifest is the one recorded
    and that it answers), and removes it when the shadow is stopped. Polled like the champion."""

    name = "shadow-follower"
    following = "the shadow version"

    def __init__(
        self,
        scorer: ShadowScorer,
        registry: Registry,
        ledger: ShadowLedger,
        loader: Callable[[Path], Predictor],
        *,
        poll_seconds: float,
        known_codes: Collection[int] | None = None,
    ) -> None:
        super().__init__()
        self.scorer = scorer
        self.registry = registry
        self.ledger = ledger
        self.loader = loader
        self.poll_seconds = poll_seconds
        self.known_codes = known_codes
        self.refused: dict[int, str] = {}
        self._check_lock = threading.Lock()

    def check_now(self) -> bool:
        """Follow the record once; True when the shadow model changed."""
        from prodtype.loop.champion import smoke_check

        with self._check_lock:
            record = self.ledger.current(self.registry.model_name)
            wanted = record.version if record is not None else None
            if wanted == self.scorer.version:
                return False
            if record is None:
                self.scorer.install(None, None)
                log.info("shadow scoring stopped")
                return True
            if record.version in self.refused:
                return False
            try:
                path = self.registry.local_bundle(record.version)
                if record.manifest_sha256 is not None and manifest_digest(path) != record.manifest_sha256:
                    raise ValueError("its bundle changed in the registry since it was put in shadow")
                predictor = self.loader(path)
                smoke_check(predictor, self.known_codes)
            except Exception as exc:
                self.refused[record.version] = f"{type(exc).__name__}: {exc}"
                log.error("refused version %s in shadow: %s", record.version, exc)
                self.scorer.install(None, None)
                return False
            self.scorer.install(predictor, record.version)
            log.info("version %s now runs in shadow", record.version)
            return True

    def follow_now(self, retry: int | None = None) -> None:
        """Follow a change made in this process at once (others see it at their next poll); an error is
        kept in :attr:`last_error` and logged, never raised to the admin who made the change."""
        if retry is not None:
            self.refused.pop(retry, None)
        self.check_logged()

    def interval(self) -> float:
        return self.poll_seconds


# -- what people see ----------------------------------------------------------------------------------------


class ShadowStatus(BaseModel):
    """The version in shadow, how it fares on live reviewed products, and this process's scorer."""

    version: int | None = Field(description="The version in shadow now (None: none)")
    since: str | None
    by: str | None
    reason: str | None
    live: LiveComparison | None = Field(
        description="Figures of the version in shadow, or of the last one when none is in shadow now"
    )
    scorer: dict[str, Any] = Field(
        description="This serving process: the version it scores with, queued, scored, dropped, failed"
    )
    refused: dict[str, str] = Field(description="Versions this process refused to run in shadow, and why")
    rule: str = Field(description="The promotion rule's live part, as configured")
    require_live: bool = Field(description="Whether promotion requires the live figures")
    min_reviews: int = Field(description="Reviewed products answered in shadow needed to be promoted")
    max_drop: float = Field(description="How far below the champion's its live accuracy may be")


def shadow_status(
    model_name: str,
    ledger: ShadowLedger,
    sessions: sessionmaker[Session],
    scorer: ShadowScorer | None,
    follower: ShadowFollower | None,
    loop: LoopSettings,
) -> ShadowStatus:
    record = ledger.current(model_name)
    version = record.version if record is not None else ledger.last_version(model_name)
    rule = (
        f"a candidate is promoted only with at least {loop.promotion_live_min_reviews} reviewed products "
        f"answered in shadow and a live accuracy at most {loop.promotion_live_max_drop:.3f} below the "
        "champion's on them"
        if loop.promotion_require_live
        else "live figures are shown, not required (PRODTYPE_PROMOTION_REQUIRE_LIVE=false)"
    )
    return ShadowStatus(
        version=record.version if record is not None else None,
        since=record.since if record is not None else None,
        by=record.actor if record is not None else None,
        reason=record.reason if record is not None else None,
        live=live_comparison(sessions, version) if version is not None else None,
        scorer=scorer.status() if scorer is not None else {},
        refused={str(k): v for k, v in (follower.refused if follower is not None else {}).items()},
        rule=rule,
        require_live=loop.promotion_require_live,
        min_reviews=loop.promotion_live_min_reviews,
        max_drop=loop.promotion_live_max_drop,
    )
