"""French text of the pages, by their English text (see :mod:`prodtype.web.i18n`)."""

from __future__ import annotations

FRENCH: dict[str, str] = {}
