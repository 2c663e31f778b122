"""The command line's one way of failing on an error a user can act on: one red line on stderr naming what
was wrong, an exit status, no traceback. The message is escaped (a path or value like ``[Jeu PC]`` is not
rich markup) and never wrapped (paths and URLs stay whole)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True, soft_wrap=True)


@contextmanager
def exit_on(errors: tuple[type[BaseException], ...], code: int) -> Iterator[None]:
    """Turn ``errors`` raised in the block into their message and exit status ``code``."""
    try:
        yield
    except errors as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        raise typer.Exit(code) from None
