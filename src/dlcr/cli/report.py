"""``dlcr report PATH``: (re)build the HTML report of a demo folder, a work folder or a run folder."""

from __future__ import annotations

import typer


def report_cmd(
    path: str = typer.Argument(..., help="a `dlcr demo --out` folder, a `dlcr generate` work folder "
                                         "(default out/<dataset>) or a `dlcr train` run folder (runs/<name>)"),
    root: str = typer.Option(None, "--root", help="dataset root holding the original images of a work or run "
                                                  "folder (they are not stored in it); for a work folder, by "
                                                  "default its demo's world/, the folder itself or the packaged "
                                                  "config's data.root of its dataset",
                             show_default="a run's data.root"),
) -> None:
    """Write PATH/report.html and PATH/figures/*.png from what the folder holds (a section whose inputs
    are missing says which, with the path it looked for); a folder of no known kind is an error."""
    from dlcr.config_args import packaged_data_root
    from dlcr.report import build_report

    rep = build_report(path, images=root, packaged_root=packaged_data_root)
    typer.echo(f"report: {rep.path}")
    typer.echo(f"{rep.kind} folder: built {', '.join(rep.built) or 'no section'}"
               + (f"; skipped {', '.join(sid for sid, _ in rep.skipped)}" if rep.skipped else ""))
    for sid, why in rep.skipped:
        typer.echo(f"  {sid}: {why}")
