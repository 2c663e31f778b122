"""Wires the learning loop into the app: the registry, the champion follower and its lifecycle."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from prodtype.loop.champion import ChampionFollower
from prodtype.loop.config import LoopSettings
from prodtype.loop.ledger import PromotionLedger
from prodtype.loop.registry import Registry
from prodtype.serving.model_holder import load_warm

log = logging.getLogger(__name__)


def install_loop(app: FastAPI, loop: LoopSettings | None = None) -> None:
    """Keep a registry on ``app.state`` and, while the app runs, follow the champion alias.

    The follower is created when the app starts (so tests may replace ``app.state.loop_settings`` before);
    its first look at the registry happens before the app serves, so a service started after a promotion
    answers with the champion from its first request.
    """
    app.state.loop_settings = loop or LoopSettings()
    app.state.champion_follower = None
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: FastAPI) -> AsyncIterator[Any]:
        async with inner(a) as state:
            loop_settings: LoopSettings = a.state.loop_settings
            registry = Registry.from_settings(a.state.settings, loop_settings)
            a.state.registry = registry
            settings = a.state.settings
            follower = ChampionFollower(
                a.state.model_holder,
                registry,
                loop_settings,
                known_codes=list(a.state.catalog.codes),
                # the settings' thread count and pixel limit, warmed up before it takes requests
                loader=lambda path: load_warm(path, settings),
                # only what prodtype recorded is served, never an alias moved in MLflow by someone else
                recorded=lambda: PromotionLedger(a.state.sessions).champion(registry.model_name),
            )
            a.state.champion_follower = follower
            if loop_settings.follow_champion and registry.store_exists():
                try:
                    await run_in_threadpool(follower.check_now)
                except Exception as exc:  # the registry must not keep the service from starting
                    log.warning("could not read the champion from %s: %s", registry, exc)
            if loop_settings.follow_champion:
                follower.start()
            try:
                yield state
            finally:
                follower.stop()

    app.router.lifespan_context = lifespan


def registry_of(request: Request) -> Registry:
    registry: Registry | None = getattr(request.app.state, "registry", None)
    if registry is None:
        registry = Registry.from_settings(request.app.state.settings, request.app.state.loop_settings)
        request.app.state.registry = registry
    return registry


def follower_of(request: Request) -> ChampionFollower | None:
    follower: ChampionFollower | None = getattr(request.app.state, "champion_follower", None)
    return follower
