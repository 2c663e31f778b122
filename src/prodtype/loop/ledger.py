"""The champions prodtype itself chose, kept in its own database.

The MLflow registry holds the bundles and a ``champion`` alias, but whoever can reach an MLflow server
without authentication can move that alias. A running service therefore serves only the version that the
last promotion or rollback *made through prodtype* (the API, the CLI or the retrain job) recorded here,
with the sha256 of the bundle's manifest at that moment; an alias that points elsewhere is reported by the
champion follower and ignored. MLflow users cannot write to this table.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from prodtype.db.tables import AuditEvent, ModelPromotion

MANIFEST = "manifest.json"


def manifest_digest(bundle: Path) -> str | None:
    """sha256 of a bundle's manifest.json (which holds the sha256 of every other file), or None."""
    path = Path(bundle) / MANIFEST
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


@dataclass(frozen=True)
class RecordedChampion:
    version: int
    manifest_sha256: str | None
    action: str
    actor: str | None


def record_with_audit(
    sessions: sessionmaker[Session],
    row: object,
    actor: str | None,
    action: str,
    entity_id: str,
    details: Mapping[str, object],
) -> None:
    """``row`` and its audit event about the model, in one transaction."""
    with sessions() as session:
        session.add(row)
        audit = AuditEvent(actor=actor, action=action, entity="model", entity_id=entity_id, details=details)
        session.add(audit)
        session.commit()


class PromotionLedger:
    """Promotions and rollbacks recorded in the service's database (one session per call)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def record(
        self,
        model_name: str,
        action: str,
        version: int,
        *,
        previous: int | None,
        bundle: Path | None,
        actor: str | None,
        reason: str,
    ) -> None:
        digest = manifest_digest(bundle) if bundle is not None else None
        row = ModelPromotion(
            model_name=model_name,
            action=action,
            version=version,
            previous_version=previous,
            manifest_sha256=digest,
            actor=actor,
            reason=reason,
        )
        audit = "model.promoted" if action == "promote" else "model.rolled_back"
        details = {"model": model_name, "previous": previous, "reason": reason, "manifest": digest}
        record_with_audit(self.sessions, row, actor, audit, str(version), details)

    def champion(self, model_name: str) -> RecordedChampion | None:
        """The version the last recorded promotion or rollback chose, or None when there was none."""
        with self.sessions() as session:
            row = session.scalar(
                select(ModelPromotion)
                .where(ModelPromotion.model_name == model_name)
                .order_by(ModelPromotion.id.desc())
                .limit(1)
            )
            if row is None:
                return None
            return RecordedChampion(row.version, row.manifest_sha256, row.action, row.actor)

    def previous_champion(self, model_name: str) -> int | None:
        """The version a rollback restores: the champion before the current one, rolled-back reigns
        removed (the same rule as the registry's history, from records MLflow users cannot change)."""
        stack: list[int] = []
        for entry in self.history(model_name):
            if entry["action"] == "promote":
                stack.append(int(entry["version"]))
            elif stack:
                stack.pop()
        return stack[-2] if len(stack) >= 2 else None

    def history(self, model_name: str) -> list[dict[str, Any]]:
        with self.sessions() as session:
            rows = session.scalars(
                select(ModelPromotion)
                .where(ModelPromotion.model_name == model_name)
                .order_by(ModelPromotion.id)
            ).all()
            return [
                {
                    "action": r.action,
                    "version": r.version,
                    "previous": r.previous_version,
                    "at": r.at.isoformat(),
                    "by": r.actor,
                    "reason": r.reason,
                }
                for r in rows
            ]
