"""``dlcr report DIR``: (re)build the HTML report of a ``dlcr demo`` folder."""

from __future__ import annotations

import typer


def report_cmd(
    demo_dir: str = typer.Argument(..., help="folder written by `dlcr demo --out DIR`"),
) -> None:
    """Write DIR/report.html and DIR/figures/*.png from a demo folder (sections with missing inputs are noted)."""
    from dlcr.report import build_demo_report

    out = build_demo_report(demo_dir)
    typer.echo(f"report: {out}")
