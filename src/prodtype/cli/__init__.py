"""The ``prodtype`` command line."""

from __future__ import annotations

import typer

from prodtype.cli import loop as cli_loop
from prodtype.cli import ml as cli_ml
from prodtype.cli import service as cli_service

app = typer.Typer(no_args_is_help=True, help="prodtype: product type classification for Rakuten France.")
cli_ml.register(app)
cli_service.register(app)
cli_loop.register(app)
