"""The pages in English and French: the language is the ``prodtype_lang`` cookie (set by the switch in
the page's header), else the best of the browser's ``Accept-Language``, else English.

Templates write ``_(…)`` around their English text (``{{ _("Log out") }}``); the French text is looked
up in :data:`FRENCH` (in ``web/french.py``). ``tests/web/test_french.py`` fails when a string of a
template or of this package's messages has no French entry, or when a template shows English text
outside ``_()``, so no page is left half translated. Messages from the services (errors of
:mod:`prodtype.serving`) are shared with the API and stay in English.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from prodtype.catalog import Catalog
from prodtype.web.french import FRENCH

LANGUAGES = ("en", "fr")
LANG_COOKIE = "prodtype_lang"
Translate = Callable[[str], str]


def _from_accept_language(header: str) -> str | None:
    """The supported language the browser likes best (``fr-FR,fr;q=0.9,en;q=0.8`` → fr)."""
    best: tuple[float, str] | None = None
    for position, part in enumerate(header.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        if code not in LANGUAGES:
            continue
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        if quality <= 0:
            continue
        key = (quality - position * 1e-6, code)  # ties: the first listed
        if best is None or key[0] > best[0]:
            best = key
    return best[1] if best else None


def language(request: Request) -> str:
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in LANGUAGES:
        return chosen
    return _from_accept_language(request.headers.get("accept-language", "")) or "en"


def translator(lang: str) -> Translate:
    if lang == "fr":
        return lambda text: FRENCH.get(text, text)
    return lambda text: text


def category_names(catalog: Catalog, lang: str) -> dict[int, str]:
    """The product types' names in ``lang``: ``name_fr`` of categories.csv in French."""
    return {c.code: c.name_fr if lang == "fr" else c.name for c in catalog.categories}


def category_namer(catalog: Catalog, lang: str) -> Callable[[int], str]:
    """A function from a code to its name in ``lang`` (an unknown code named as the catalogue names it)."""
    names = category_names(catalog, lang)
    return lambda code: names.get(code) or catalog.name(code)
