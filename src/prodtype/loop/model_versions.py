"""The registered models, for people: list them, promote one, roll back to the previous champion.

A version is checked (its bundle loads and answers a smoke prediction) before it becomes the champion, so a
broken bundle is refused here and the alias never points to it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.registry import (
    CHAMPION,
    ModelVersionInfo,
    Registry,
    RegistryError,
    UnknownVersionError,
)
from prodtype.serving.errors import ConflictError, InvalidInputError, NotFoundError

Checker = Callable[[Path], Any]


class ModelVersionView(BaseModel):
    """One registered version as people see it (the API's ``ModelVersionPublic`` is this)."""

    version: int
    status: str = Field(description="champion, challenger, rolled_back, pending or registered")
    aliases: list[str]
    serving: bool = Field(description="Whether this service answers with this version now")
    reason: str | None = Field(description="Why it was or was not promoted")
    eval_weighted_f1: float | None = Field(description="Weighted F1 on the fixed evaluation set")
    created_at: str
    run_id: str | None
    source: str
    metrics: dict[str, float]
    tags: dict[str, str]


class ModelsListing(BaseModel):
    """Every registered version, newest first, with the champion and the champion history."""

    model: str
    champion: int | None
    serving_version: int | None
    data: Sequence[ModelVersionView]
    count: int
    history: list[dict[str, Any]]


def _describe(info: ModelVersionInfo, serving: int | None) -> ModelVersionView:
    return ModelVersionView(
        version=info.version,
        status="champion" if CHAMPION in info.aliases else info.tags.get("promotion", "registered"),
        aliases=list(info.aliases),
        serving=serving == info.version,
        reason=info.tags.get("promotion_reason"),
        eval_weighted_f1=info.metrics.get("eval_weighted_f1"),
        created_at=info.created_at.isoformat(),
        run_id=info.run_id,
        source=info.source,
        metrics=dict(info.metrics),
        tags=dict(info.tags),
    )


def list_models(registry: Registry, serving_version: int | None = None) -> ModelsListing:
    versions = registry.versions()
    champion = next((v.version for v in versions if CHAMPION in v.aliases), None)
    return ModelsListing(
        model=registry.model_name,
        champion=champion,
        serving_version=serving_version,
        data=[_describe(v, serving_version) for v in versions],
        count=len(versions),
        history=registry.history(),
    )


def _checked(registry: Registry, version: int, check: Checker | None) -> Path | None:
    """The version's bundle folder, checked with ``check``; None when there is nothing to check."""
    if check is None:
        return None
    try:
        path = registry.local_bundle(version)
    except UnknownVersionError as exc:
        raise NotFoundError(str(exc)) from None
    except RegistryError as exc:
        raise InvalidInputError(f"version {version} cannot be served: {exc}") from None
    try:
        check(path)
    except Exception as exc:
        raise InvalidInputError(
            f"version {version} was refused: its bundle failed the checks ({type(exc).__name__}: {exc}); "
            "the champion is unchanged"
        ) from None
    return path


def promote(
    registry: Registry,
    version: int,
    *,
    actor: str | None,
    reason: str | None = None,
    check: Checker | None = None,
    ledger: PromotionLedger | None = None,
) -> ModelVersionView:
    """Make ``version`` the champion after checking its bundle, and record it in ``ledger`` (prodtype's
    database: running services serve only what is recorded there)."""
    try:
        registry.get(version)
    except UnknownVersionError as exc:
        raise NotFoundError(str(exc)) from None
    bundle = _checked(registry, version, check)
    reason = reason or f"promoted by {actor or 'an operator'}"
    previous = registry.alias_version(CHAMPION)
    try:
        info = registry.promote(version, reason=reason, actor=actor)
    except RegistryError as exc:
        raise ConflictError(str(exc)) from None
    if ledger is not None:
        bundle = bundle or registry.local_bundle(version)
        ledger.record(
            registry.model_name,
            "promote",
            version,
            previous=previous,
            bundle=bundle,
            actor=actor,
            reason=reason,
        )
    return _describe(info, None)


def rollback(
    registry: Registry,
    *,
    actor: str | None,
    reason: str | None = None,
    check: Checker | None = None,
    ledger: PromotionLedger | None = None,
) -> ModelVersionView:
    """Give the champion alias back to the previous champion (after checking its bundle). With a ledger,
    the previous champion is the one prodtype recorded (the registry's own history is writable by
    anyone who can reach MLflow)."""
    recorded = ledger.champion(registry.model_name) if ledger is not None else None
    target = ledger.previous_champion(registry.model_name) if ledger is not None and recorded else None
    if recorded is not None and target is None:
        raise ConflictError(
            f"version {recorded.version} is the first champion prodtype recorded: there is no previous "
            "champion to roll back to (promote a version instead)"
        )
    stack_previous = target if target is not None else registry.previous_champion()
    bundle = _checked(registry, stack_previous, check) if stack_previous is not None else None
    reason = reason or f"rolled back by {actor or 'an operator'}"
    current = recorded.version if recorded is not None else registry.alias_version(CHAMPION)
    try:
        info = registry.rollback(reason=reason, actor=actor, to=target)
    except RegistryError as exc:
        raise ConflictError(str(exc)) from None
    if ledger is not None:
        bundle = bundle or registry.local_bundle(info.version)
        ledger.record(
            registry.model_name,
            "rollback",
            info.version,
            previous=current,
            bundle=bundle,
            actor=actor,
            reason=reason,
        )
    return _describe(info, None)
