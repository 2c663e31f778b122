"""The audit log, read-only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from prodtype.api.deps import AdminUser
from prodtype.api.schemas import AuditEventPublic, AuditEventsPublic
from prodtype.serving import audit
from prodtype.serving.deps import SessionDep

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("")
def list_audit_events(
    session: SessionDep,
    _admin: AdminUser,
    entity: Annotated[str | None, Query(description="'prediction' or 'user'")] = None,
    entity_id: Annotated[str | None, Query(description="A prediction id or a username")] = None,
    actor: Annotated[str | None, Query()] = None,
    offset: Annotated[int, Query(ge=0, le=2_147_483_647)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> AuditEventsPublic:
    """Changes, newest first (admins only)."""
    rows, count = audit.list_events(session, entity, entity_id, actor, offset, limit)
    return AuditEventsPublic(data=[AuditEventPublic.from_row(e) for e in rows], count=count)
