"""The learning loop's parts the app holds (set up by :func:`prodtype.app.install_loop`), for the API's
routes and the pages."""

from __future__ import annotations

from fastapi import Request

from prodtype.loop.champion import ChampionFollower
from prodtype.loop.registry import Registry


def registry_of(request: Request) -> Registry:
    registry: Registry | None = getattr(request.app.state, "registry", None)
    if registry is None:
        registry = Registry.from_settings(request.app.state.settings)
        request.app.state.registry = registry
    return registry


def follower_of(request: Request) -> ChampionFollower | None:
    follower: ChampionFollower | None = getattr(request.app.state, "champion_follower", None)
    return follower
