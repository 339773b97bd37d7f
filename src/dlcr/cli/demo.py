"""``dlcr demo``: DLCR end to end on the embedded synthetic world."""

from __future__ import annotations

import typer

from dlcr.cli.common import flag, int_list, positive


def demo_cmd(
    out: str = typer.Option("out/demo", "--out", help="output folder (resumable)"),
    quick: bool = flag(False, "--quick", help="~2-minute smoke version (small world, few epochs)"),
    seeds: str = typer.Option("0", "--seeds", help="training seeds, comma-separated, e.g. 0,1,2"),
    backend: str = typer.Option("recolor", "--backend",
                                help="inpainting backend: recolor (offline baseline) | tiny (real diffusers code, "
                                     "tiny random weights: plumbing only)"),
    ids: int = typer.Option(None, "--ids", callback=positive, help="identities in the world",
                            show_default="100; --quick: 40"),
    epochs: int = typer.Option(None, "--epochs", callback=positive, help="training epochs per arm",
                               show_default="12; --quick: 4"),
    k: int = typer.Option(None, "--k", callback=positive, help="generated variants per training image",
                          show_default="4"),
    l: int = typer.Option(None, "--l", callback=positive,  # noqa: E741
                          help="generated variants per query (refinement)", show_default="6; --quick: 3"),
    m: int = typer.Option(None, "--m", callback=positive, help="top-m retrievals ensembled by refinement",
                          show_default="5"),
    workers: int = typer.Option(None, "--workers", min=0, help="data-loading worker processes (0: in the main "
                                "process)", show_default="0"),
    threads: int = typer.Option(None, "--threads", callback=positive, help="torch threads", show_default="1"),
    jobs: int = typer.Option(None, "--jobs", callback=positive,
                             help="processes running the stages and trainings side by side (1: all in this one)",
                             show_default="2"),
    masks: str = typer.Option("pose", "--masks",
                              help="clothes masks: pose (the offline real parser, mediapipe; the ground truth with "
                                   "a warning when it is not installed) | truth (the world's label maps)"),
    ablation: bool = flag(True, "--ablation/--no-ablation",
                                  help="train the Table A1 rows 2-4 (no ID mask, random prompts, paired without "
                                       "curriculum) too; --no-ablation: baseline, concatenated, progressive only"),
    eval_every: int = typer.Option(None, "--eval-every", callback=positive,
                                   help="validate on the held-out training identities every that many epochs",
                                   show_default="2; --quick: 1"),
    sets: list[str] = typer.Option([], "--set", help="extra config override for every arm (repeatable)"),
) -> None:
    """Render synthcc → pose masks → descriptions → inpainting → train the Table A1 arms (validation curves)
    → evaluate once on the test set (+ refinement) → report."""
    from dlcr.ablation import results_table
    from dlcr.demo import DemoSettings, run_demo
    from dlcr.report import build_demo_report

    kw = {k_: v for k_, v in {"ids": ids, "epochs": epochs, "k": k, "l": l, "m": m, "workers": workers,
                                  "threads": threads, "eval_every": eval_every, "jobs": jobs}.items()
          if v is not None}
    if masks not in ("pose", "truth"):
        from dlcr.errors import ConfigError

        raise ConfigError(f"--masks must be pose or truth, got {masks!r}")
    kw.update(seeds=int_list(seeds, "--seeds"), backend=backend, extra_sets=tuple(sets), masks=masks, ablation=ablation)
    st = DemoSettings.quick_settings(**kw) if quick else DemoSettings(**kw)
    res = run_demo(out, st, report=build_demo_report)
    typer.echo(results_table(res))
    typer.echo(f"results: {out}/results.json  report: {out}/report.html")
