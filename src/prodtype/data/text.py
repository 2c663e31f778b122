"""Cleaning product text: HTML entities and tags, whitespace; designation and description joined."""

from __future__ import annotations

import html
import re

# a tag opens with a name, "/" or "!" (sellers sometimes put spaces after "<"); "3 < 5 et 6 > 4" is text
_TAG = re.compile(r"<\s*[A-Za-z/!?][^>]{0,500}>")
_BREAK_TAG = re.compile(r"<\s*(br|/p|p|/div|div|li|/li|tr|/tr)\b[^>]{0,200}>", re.IGNORECASE)
_WS = re.compile(r"\s+")


def _as_str(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value != value:  # NaN from pandas
        return ""
    return str(value)


def clean_text(value: object) -> str:
    """Plain text from a seller's field: entities decoded (twice: sellers double-encode), tags removed."""
    text = _as_str(value)
    if not text:
        return ""
    for _ in range(2):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    text = _BREAK_TAG.sub(" ", text)
    text = _TAG.sub(" ", text)
    text = text.replace("\u00a0", " ")
    return _WS.sub(" ", text).strip()


def join_text(designation: object, description: object) -> str:
    """The text the model reads: the title, then the description when it adds anything."""
    title = clean_text(designation)
    desc = clean_text(description)
    if not desc or desc == title:
        return title
    return f"{title} . {desc}"
