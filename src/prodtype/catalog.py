"""The product types: 27 `prdtypecode` values and their names, from one packaged file.

Users may point ``PRODTYPE_CATEGORIES_FILE`` (or pass a path) at their own CSV with the columns
``prdtypecode,name`` (``name_fr`` optional) to rename or extend the catalogue.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from pathlib import Path


class CatalogError(ValueError):
    """The categories file is malformed."""


@dataclass(frozen=True)
class Category:
    code: int
    name: str
    name_fr: str


@dataclass(frozen=True)
class Catalog:
    categories: tuple[Category, ...]

    @property
    def codes(self) -> list[int]:
        return [c.code for c in self.categories]

    def name(self, code: int) -> str:
        for c in self.categories:
            if c.code == code:
                return c.name
        return f"unknown type {code}"

    def __contains__(self, code: object) -> bool:
        return any(c.code == code for c in self.categories)

    def __len__(self) -> int:
        return len(self.categories)


def _read(text: str, source: str) -> Catalog:
    rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise CatalogError(f"{source}: no categories found (expected a header 'prdtypecode,name')")
    missing = {"prdtypecode", "name"} - set(rows[0])
    if missing:
        raise CatalogError(
            f"{source}: missing column(s) {sorted(missing)}; expected 'prdtypecode,name[,name_fr]'"
        )
    seen: set[int] = set()
    cats = []
    for lineno, row in enumerate(rows, start=2):
        raw = (row["prdtypecode"] or "").strip()
        try:
            code = int(raw)
        except ValueError:
            raise CatalogError(f"{source}, line {lineno}: prdtypecode {raw!r} is not an integer") from None
        if code in seen:
            raise CatalogError(f"{source}, line {lineno}: prdtypecode {code} appears twice")
        seen.add(code)
        name = (row["name"] or "").strip() or str(code)
        cats.append(Category(code, name, (row.get("name_fr") or name).strip()))
    return Catalog(tuple(sorted(cats, key=lambda c: c.code)))


@lru_cache(maxsize=8)
def load_catalog(path: Path | None = None) -> Catalog:
    """The packaged catalogue, or the one at ``path``."""
    if path is None:
        res = files("prodtype").joinpath("assets/categories.csv")
        return _read(res.read_text(encoding="utf-8"), "prodtype/assets/categories.csv")
    path = Path(path)
    if not path.is_file():
        raise CatalogError(f"categories file {path} does not exist")
    return _read(path.read_text(encoding="utf-8"), str(path))
