"""The `dlcr` command line (Typer)."""

from dlcr.cli.main import app, main

__all__ = ["app", "main"]
