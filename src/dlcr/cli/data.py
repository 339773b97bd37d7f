"""`dlcr data ...`: dataset parsing, inspection, statistics and the synthetic world."""

from __future__ import annotations

import typer

app = typer.Typer(help="Datasets: inspect, stats, synth.", no_args_is_help=True)
