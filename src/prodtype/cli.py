"""The ``prodtype`` command line."""

from __future__ import annotations

import typer

from prodtype import cli_loop, cli_ml, cli_service

app = typer.Typer(no_args_is_help=True, help="prodtype: product type classification for Rakuten France.")
cli_ml.register(app)
cli_service.register(app)
cli_loop.register(app)
