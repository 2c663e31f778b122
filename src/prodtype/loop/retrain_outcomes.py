"""How retrains ended, kept in the audit log so that every process (API, CLI, Airflow workers) sees it.

A retrain that trained something ends with ``retrain.succeeded`` or ``retrain.failed`` (entity ``retrain``,
the job id or the run folder's name as id). The figures for alerting (:mod:`prodtype.loop.alert_figures`)
read the latest of them: an operator hears of a failing retrain wherever it ran.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from prodtype.config import Settings
from prodtype.db.tables import AuditEvent
from prodtype.serving import audit

log = logging.getLogger(__name__)

ENTITY = "retrain"
SUCCEEDED = "retrain.succeeded"
FAILED = "retrain.failed"


def record_outcome(
    sessions: sessionmaker[Session], run_id: str, succeeded: bool, details: dict[str, Any] | None = None
) -> None:
    """Append one outcome to the audit log (committed at once)."""
    with sessions() as session:
        audit.record(session, SUCCEEDED if succeeded else FAILED, ENTITY, run_id, None, details or {})
        session.commit()


def record_with_settings(settings: Settings, run_id: str, succeeded: bool, details: dict[str, Any]) -> None:
    """:func:`record_outcome` from a process that has no session factory (the API's job reaper)."""
    from prodtype.db.engine import make_engine, make_sessionmaker

    engine = make_engine(settings.resolved_database_url)
    try:
        record_outcome(make_sessionmaker(engine), run_id, succeeded, details)
    finally:
        engine.dispose()


@dataclass
class Outcome:
    """What :func:`recorded` will record when its block completes; ``final = False`` records nothing
    (a step that is not the last one, or a retrain the trigger did not call for)."""

    final: bool = True


@contextmanager
def recorded(
    sessions: Callable[[], sessionmaker[Session]], run_id: str, *, final: bool = True
) -> Iterator[Outcome]:
    """Record ``retrain.failed`` when the block raises, and ``retrain.succeeded`` when it completes and is
    the retrain's last step (``final``). ``sessions`` is called only then."""
    outcome = Outcome(final)
    try:
        yield outcome
    except BaseException as exc:
        try:
            record_outcome(sessions(), run_id, False, {"error": f"{type(exc).__name__}: {exc}"[:2000]})
        except Exception:  # the database is down too: the original error matters more
            log.warning("could not record the failed retrain %s in the audit log", run_id)
        raise
    if outcome.final:
        record_outcome(sessions(), run_id, True)


@dataclass(frozen=True)
class RetrainOutcomes:
    succeeded: int
    failed: int
    last_outcome: str | None  # "succeeded", "failed", or None when no retrain has ended yet
    last_at: datetime | None
    last_run: str | None


def read_outcomes(session: Session) -> RetrainOutcomes:
    """Counts of each outcome and the latest one (two small queries on the audit log)."""
    counts = dict(
        session.execute(
            select(AuditEvent.action, func.count())
            .where(AuditEvent.entity == ENTITY, AuditEvent.action.in_((SUCCEEDED, FAILED)))
            .group_by(AuditEvent.action)
        ).all()
    )
    last = session.execute(
        select(AuditEvent.action, AuditEvent.at, AuditEvent.entity_id)
        .where(AuditEvent.entity == ENTITY, AuditEvent.action.in_((SUCCEEDED, FAILED)))
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    return RetrainOutcomes(
        succeeded=int(counts.get(SUCCEEDED, 0)),
        failed=int(counts.get(FAILED, 0)),
        last_outcome=None if last is None else str(last[0]).removeprefix("retrain."),
        last_at=None if last is None else last[1],
        last_run=None if last is None else str(last[2]),
    )
