"""The learning loop's parts the app holds, for the routes (shared with the pages:
:mod:`prodtype.loop.deps`)."""

from __future__ import annotations

from prodtype.loop.deps import follower_of, registry_of

__all__ = ["follower_of", "registry_of"]
