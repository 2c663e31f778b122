"""A tiny Markdown subset for the model card on the models page: headings, paragraphs, ``-`` lists, pipe
tables, fenced code, and inline ``code`` and **strong**.

It never produces HTML: it returns blocks of plain-text segments that the template renders, so Jinja's
autoescaping handles every character (a product type name or a promotion reason holding ``<script>`` shows
as text). The card escapes ``& < >`` as entities for Markdown viewers; they are turned back into the
characters here, and escaped again, once, by the template.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

Segment = tuple[str, str]  # (kind, text): kind is "text", "code" or "strong"

_INLINE = re.compile(r"(`[^`]+`|\*\*[^*]+\*\*)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


@dataclass
class Block:
    kind: str  # heading, paragraph, list, table, code
    level: int = 0
    segments: list[Segment] = field(default_factory=list)  # heading, paragraph
    items: list[list[Segment]] = field(default_factory=list)  # list
    header: list[list[Segment]] = field(default_factory=list)  # table
    rows: list[list[list[Segment]]] = field(default_factory=list)  # table
    text: str = ""  # code


def inline(text: str) -> list[Segment]:
    segments: list[Segment] = []
    for part in _INLINE.split(text):
        if not part:
            continue
        if part.startswith("`") and part.endswith("`") and len(part) > 1:
            segments.append(("code", html.unescape(part[1:-1]).replace("\\|", "|")))
        elif part.startswith("**") and part.endswith("**") and len(part) > 3:
            segments.append(("strong", html.unescape(part[2:-2]).replace("\\|", "|")))
        else:
            segments.append(("text", html.unescape(part).replace("\\|", "|")))
    return segments


def _cells(line: str) -> list[list[Segment]]:
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [inline(cell.strip()) for cell in _CELL_SPLIT.split(body)]


def parse(markdown: str) -> list[Block]:
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
        elif stripped.startswith("```"):
            end = i + 1
            while end < len(lines) and not lines[end].strip().startswith("```"):
                end += 1
            blocks.append(Block("code", text="\n".join(lines[i + 1 : end])))
            i = end + 1
        elif m := _HEADING.match(stripped):
            blocks.append(Block("heading", level=len(m.group(1)), segments=inline(m.group(2))))
            i += 1
        elif stripped.startswith("|"):
            table: list[str] = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                table.append(lines[i])
                i += 1
            rows = [r for r in table if not _SEPARATOR.match(r.strip())]
            has_header = len(table) > 1 and _SEPARATOR.match(table[1].strip()) is not None
            header = _cells(rows[0]) if has_header and rows else []
            body = rows[1:] if has_header else rows
            blocks.append(Block("table", header=header, rows=[_cells(r) for r in body]))
        elif stripped.startswith("- "):
            items: list[list[Segment]] = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(inline(lines[i].strip()[2:]))
                i += 1
            blocks.append(Block("list", items=items))
        else:
            paragraph: list[str] = []
            while i < len(lines) and lines[i].strip() and not _starts_block(lines[i].strip()):
                paragraph.append(lines[i].strip())
                i += 1
            blocks.append(Block("paragraph", segments=inline(" ".join(paragraph))))
    return blocks


def _starts_block(stripped: str) -> bool:
    return stripped.startswith(("```", "|", "- ")) or _HEADING.match(stripped) is not None
