"""The audit log: one row per change, written in the same transaction as the change itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from prodtype.db.tables import AuditEvent, User


def record(
    session: Session,
    action: str,
    entity: str,
    entity_id: object,
    actor: User | None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add an event to the session; it is committed (or rolled back) with the change it describes."""
    event = AuditEvent(
        actor=actor.username if actor is not None else None,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        details=details or {},
    )
    session.add(event)
    return event


def list_events(
    session: Session,
    entity: str | None = None,
    entity_id: str | None = None,
    actor: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> tuple[Sequence[AuditEvent], int]:
    """Events, newest first, with the total count matching the filters."""
    query = select(AuditEvent)
    if entity is not None:
        query = query.where(AuditEvent.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEvent.entity_id == entity_id)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    count = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEvent.id.desc()).offset(offset).limit(limit)).all()
    return rows, count
