"""Shadow evaluation's parts: the live rule of promotion, the intervals, the scorer's queue (real tiny
bundle, real database), and putting a version in shadow through the ledger."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import LoopSettings
from prodtype.db.tables import Prediction, ShadowPrediction, User
from prodtype.loop.promotion import decide, with_live
from prodtype.loop.registry import Registry
from prodtype.loop.shadow import (
    LiveComparison,
    ShadowLedger,
    compare_live,
    paired_difference,
    put_in_shadow,
    wilson,
)
from prodtype.serving.errors import ConflictError, NotFoundError
from prodtype.serving.model_holder import load_model
from prodtype.serving.shadow import QuietGate, ShadowScorer
from service_support.databases import both_databases

from .test_promotion import result, rules


def comparison(n: int, champion_right: int, challenger_right: int, only_champ: int, only_chall: int) -> Any:
    from prodtype.loop.shadow import _accuracy

    d, low, high = paired_difference(only_chall, only_champ, n)
    return LiveComparison(
        version=2,
        n=n,
        champion=_accuracy(champion_right, n),
        challenger=_accuracy(challenger_right, n),
        difference=d,
        difference_low=low,
        difference_high=high,
        only_champion_right=only_champ,
        only_challenger_right=only_chall,
        served_versions=["prodtype/v1"],
    )


LIVE = {"promotion_require_live": True, "promotion_live_min_reviews": 30}
GOOD_EVAL = (result(0.80), result(0.70))  # the evaluation set alone promotes


def test_without_the_setting_live_figures_change_nothing() -> None:
    d = decide(*GOOD_EVAL, rules())
    worse = comparison(40, 36, 8, 28, 0)
    assert with_live(d, worse, rules()) == d


def test_live_worse_blocks_a_candidate_the_evaluation_set_promotes_and_says_why() -> None:
    loop = rules(**LIVE)
    d = with_live(decide(*GOOD_EVAL, loop), comparison(40, 36, 8, 28, 0), loop)
    assert not d.promote
    assert d.reason.startswith("not promoted: live, on the same 40 reviewed products: accuracy 0.200")
    assert "the champion's 0.900" in d.reason and "worse than the champion" in d.reason
    assert "on the evaluation set alone it would be (weighted F1 0.8000" in d.reason
    assert d.live is not None and d.live["n"] == 40


def test_too_few_live_reviews_block_promotion() -> None:
    loop = rules(**LIVE)
    d = with_live(decide(*GOOD_EVAL, loop), comparison(29, 29, 29, 0, 0), loop)
    assert not d.promote and "only 29 reviewed products" in d.reason and "at least 30" in d.reason
    assert not with_live(decide(*GOOD_EVAL, loop), None, loop).promote


@pytest.mark.parametrize(
    ("max_drop", "champ", "chall", "only_champ", "only_chall", "promoted"),
    [
        (0.0, 30, 30, 0, 0, True),  # equal is not worse
        (0.0, 30, 29, 1, 0, False),  # one product worse
        (0.05, 30, 29, 1, 0, True),  # within the allowed drop (1/30 = 0.033)
        (0.0, 28, 30, 0, 2, True),  # better
    ],
)
def test_live_rule_threshold(
    max_drop: float, champ: int, chall: int, only_champ: int, only_chall: int, promoted: bool
) -> None:
    loop = rules(**LIVE, promotion_live_max_drop=max_drop)
    d = with_live(decide(*GOOD_EVAL, loop), comparison(30, champ, chall, only_champ, only_chall), loop)
    assert d.promote is promoted, d.reason
    if promoted:
        assert d.reason.startswith("promoted: weighted F1") and "not worse than the champion" in d.reason


def test_first_model_needs_no_live_figures() -> None:
    loop = rules(**LIVE)
    d = with_live(decide(result(0.3), None, loop), None, loop)
    assert d.promote and "first model" in d.reason


def test_wilson_and_paired_intervals() -> None:
    low, high = wilson(8, 40)
    assert low is not None and high is not None
    assert math.isclose(low, 0.1050, abs_tol=5e-4) and math.isclose(high, 0.3480, abs_tol=5e-4)
    assert wilson(0, 0) == (None, None)
    assert wilson(30, 30)[1] == pytest.approx(1.0) and 0.88 < (wilson(30, 30)[0] or 0) < 0.89
    d, dlow, dhigh = paired_difference(0, 28, 40)
    assert d == -0.7 and dlow is not None and dhigh is not None and dlow < -0.7 < dhigh < -0.55
    assert paired_difference(3, 3, 30) == (
        0.0,
        pytest.approx(-0.160, abs=1e-3),
        pytest.approx(0.160, abs=1e-3),
    )


def _prediction(session: Session, code: int, final: int | None) -> int:
    user = session.scalar(select(User).where(User.username == "carl"))
    assert user is not None
    row = Prediction(
        designation="Stylo",
        predicted_code=code,
        confidence=0.9,
        top_k=[],
        model_version="prodtype/v1",
        status="accepted" if final is not None else "pending",
        final_code=final,
        created_by_id=user.id,
    )
    session.add(row)
    session.commit()
    return row.id


@both_databases
def test_the_scorer_records_answers_and_drops_what_its_full_queue_cannot_take(
    sessions: sessionmaker[Session], tiny_bundles: dict[str, Path]
) -> None:
    model = load_model(tiny_bundles["b"], threads=1)  # answers 1300 or 2060
    outcomes: list[str] = []
    scorer = ShadowScorer(sessions, maxsize=2, on_outcome=outcomes.append)
    with sessions() as session:
        ids = [_prediction(session, 1300, 1300) for _ in range(4)]
    assert scorer.submit(ids[0], "Voiture", "", None) is False  # nothing in shadow: nothing queued
    scorer.install(model, 7)
    # The thread is not started yet: the queue holds two, the other two are dropped at once.
    accepted = [scorer.submit(i, "Voiture miniature de collection", "", None) for i in ids]
    assert accepted == [True, True, False, False] and outcomes == ["dropped", "dropped"]
    scorer.start()
    try:
        assert scorer.wait_idle(60)
    finally:
        scorer.stop()
    counts = scorer.counts()
    assert (counts.submitted, counts.scored, counts.dropped, counts.failed) == (4, 2, 2, 0)
    with sessions() as session:
        rows = session.scalars(select(ShadowPrediction).order_by(ShadowPrediction.prediction_id)).all()
        assert [(r.prediction_id, r.version) for r in rows] == [(ids[0], 7), (ids[1], 7)]
        assert all(r.code in (1300, 2060) and 0 <= r.confidence <= 1 for r in rows)
        live = compare_live(session, 7)
    assert live.n == 2 and live.champion.accuracy == 1.0
    assert live.challenger.correct == sum(r.code == 1300 for r in rows)


@both_databases
def test_shadow_answers_go_with_their_prediction_and_a_deleted_one_is_a_failure_not_a_crash(
    sessions: sessionmaker[Session], tiny_bundles: dict[str, Path]
) -> None:
    scorer = ShadowScorer(sessions)
    scorer.install(load_model(tiny_bundles["a"], threads=1), 3)
    with sessions() as session:
        kept, gone = _prediction(session, 2583, 2583), _prediction(session, 2583, None)
        session.delete(session.get(Prediction, gone))
        session.commit()
    scorer.start()
    try:
        assert scorer.submit(gone, "Piscine", "", None) and scorer.submit(kept, "Piscine", "", None)
        assert scorer.wait_idle(60)
    finally:
        scorer.stop()
    assert (scorer.failed, scorer.scored) == (1, 1)
    with sessions() as session:
        session.delete(session.get(Prediction, kept))
        session.commit()
        assert session.scalars(select(ShadowPrediction)).all() == []  # cascaded with its prediction


def test_the_scorer_waits_while_a_request_is_in_flight_and_scores_after_it(
    sessions: sessionmaker[Session], tiny_bundles: dict[str, Path]
) -> None:
    gate = QuietGate(quiet_seconds=0.01)
    scorer = ShadowScorer(sessions, gate=gate)
    scorer.install(load_model(tiny_bundles["a"], threads=1), 3)
    with sessions() as session:
        pid = _prediction(session, 2583, None)
    scorer.start()
    try:
        gate.enter()  # a request is being answered: the shadow must leave it the CPU
        assert scorer.submit(pid, "Piscine", "", None)
        assert not scorer.wait_idle(1.0) and scorer.scored == 0
        gate.leave()
        assert scorer.wait_idle(60) and scorer.scored == 1
    finally:
        scorer.stop()


def test_stopping_scores_what_was_accepted_even_under_load(
    sessions: sessionmaker[Session], tiny_bundles: dict[str, Path]
) -> None:
    gate = QuietGate()
    scorer = ShadowScorer(sessions, gate=gate)
    scorer.install(load_model(tiny_bundles["a"], threads=1), 3)
    with sessions() as session:
        pid = _prediction(session, 2583, None)
    gate.enter()  # never quiet again
    scorer.start()
    assert scorer.submit(pid, "Piscine", "", None)
    scorer.stop()  # does not wait for a quiet moment that will not come
    assert scorer.scored == 1


def test_put_in_shadow_refuses_the_champion_and_unknown_versions(
    registry: Registry, sessions: sessionmaker[Session], tiny_bundles: dict[str, Path], tmp_path: Path
) -> None:
    import shutil

    for name in ("a", "b"):
        shutil.copytree(tiny_bundles[name], tmp_path / name)
        registry.log_and_register(tmp_path / name, run_name=name, params={}, metrics={}, tags={})
    registry.promote(1, reason="test")
    ledger = ShadowLedger(sessions)
    with pytest.raises(ConflictError, match="version 1 is the champion"):
        put_in_shadow(registry, ledger, 1, actor="admin", reason="x")
    with pytest.raises(NotFoundError):
        put_in_shadow(registry, ledger, 9, actor="admin", reason="x")
    assert ledger.current(registry.model_name) is None
    shown = put_in_shadow(registry, ledger, 2, actor="admin", reason="try it")
    assert (shown.version, shown.actor, shown.reason) == (2, "admin", "try it")
    assert ledger.stop(registry.model_name, actor="admin", reason="done") == 2
    assert ledger.current(registry.model_name) is None and ledger.last_version(registry.model_name) == 2
    assert ledger.stop(registry.model_name, actor="admin", reason="again") is None


def test_loop_settings_refuse_a_bad_live_rule() -> None:
    with pytest.raises(ValueError, match="promotion_live_min_reviews"):
        LoopSettings(_env_file=None, promotion_live_min_reviews=0)  # type: ignore[call-arg]


@both_databases
def test_live_figures_count_only_reviewed_products_answered_by_that_version(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        right = _prediction(session, 10, 10)  # both right
        wrong = _prediction(session, 10, 2583)  # the served model wrong, the shadow right
        pending = _prediction(session, 10, None)  # not reviewed yet: left out
        rejected = _prediction(session, 10, None)
        session.get(Prediction, rejected).status = "rejected"  # type: ignore[union-attr]
        for pid, code, version in (
            (right, 10, 5),
            (wrong, 2583, 5),
            (pending, 40, 5),
            (rejected, 40, 5),
            (right, 40, 6),  # another version's answer: not this comparison
        ):
            session.add(ShadowPrediction(prediction_id=pid, version=version, code=code, confidence=0.5))
        session.commit()
        live = compare_live(session, 5)
        other = compare_live(session, 6)
    assert (live.n, live.champion.correct, live.challenger.correct) == (2, 1, 2)
    assert (live.only_champion_right, live.only_challenger_right, live.difference) == (0, 1, 0.5)
    assert (other.n, other.challenger.correct, other.champion.correct) == (1, 0, 1)
