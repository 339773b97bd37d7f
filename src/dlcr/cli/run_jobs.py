"""``dlcr generate run-jobs``: run a job table outside a work folder (tests, ``torchrun``, scripts).

``dlcr generate inpaint`` runs the jobs of a work folder with the configured backend; this command
takes every path explicitly instead, so any job table can be run against any image and label-map
root, for example on N processes::

    torchrun --nproc_per_node=N -m dlcr generate run-jobs --jobs jobs.parquet --image-root R \\
        --label-root L --out O --driver torchrun

It records the same generation signature as ``inpaint`` (refusing, or with ``--overwrite`` replacing,
outputs in ``--out`` made otherwise) and prints one summary line (under torchrun, one per rank).
"""

from __future__ import annotations

from typing import Any

import typer

from dlcr.cli.common import flag, positive


def parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` of ``--option``: the value read as YAML (``3`` an int, ``null`` None, ``a`` a string)."""
    import yaml

    from dlcr.errors import ConfigError

    if "=" not in text:
        raise ConfigError(f"--option expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as e:
        raise ConfigError(f"--option {key.strip()}: the value {value!r} is not valid YAML "
                          f"({str(e).splitlines()[0]})") from None


def _choice(value: str, option: str, known: tuple[str, ...]) -> str:
    if value not in known:
        from dlcr.errors import ConfigError

        raise ConfigError(f"{option} must be one of {', '.join(known)}, got {value!r}")
    return value


def run_jobs_cmd(
    jobs: str = typer.Option(..., "--jobs", help="a job table (jobs.parquet written by `dlcr generate plan`)"),
    image_root: str = typer.Option(..., "--image-root", help="the folder the jobs' source paths are relative to"),
    label_root: str = typer.Option(..., "--label-root",
                                   help="LIP label maps at <label-root>/<source path with .png suffix>"),
    out: str = typer.Option(..., "--out", help="output folder (images, part tables, manifest.parquet)"),
    backend: str = typer.Option("recolor", "--backend", help="inpainting backend (recolor, diffusers, tiny, ...)"),
    options: list[str] = typer.Option([], "--option", metavar="KEY=VALUE",
                                      help="backend constructor argument, the value read as YAML (repeatable)"),
    batch_size: int = typer.Option(8, "--batch-size", callback=positive, help="jobs per worker call"),
    driver: str = typer.Option("local", "--driver", help="local | torchrun | ray"),
    masks_table: str = typer.Option(None, "--masks-table", show_default="<label-root>/masks.parquet",
                                    help="the masks table whose 'empty' flags mark sources to skip"),
    no_consolidate: bool = flag(False, "--no-consolidate",
                                help="leave the per-batch part tables (no manifest.parquet at the end)"),
    ray_concurrency: int = typer.Option(1, "--ray-concurrency", callback=positive,
                                        help="actors of the ray driver"),
    mask_region: str = typer.Option("clothes", "--mask-region",
                                    help="what may be repainted: clothes (the paper) | person (ablation)"),
    overwrite: bool = flag(False, "--overwrite", help="replace outputs in --out made with another signature"),
) -> None:
    """Generate the pending jobs of a job table (resumable): images into OUT, records into its manifest."""
    import functools

    from dlcr.generation.inpainters import INPAINTERS, create_inpainter
    from dlcr.generation.planning import read_jobs
    from dlcr.generation.runner import DRIVERS, inpaint_signature, run_jobs
    from dlcr.generation.worker import MASK_REGIONS

    _choice(driver, "--driver", DRIVERS)
    _choice(mask_region, "--mask-region", MASK_REGIONS)
    opts = dict(parse_option(o) for o in options)
    INPAINTERS.get(backend)  # an unknown name fails now, before the job table is read
    table = read_jobs(jobs)
    rep = run_jobs(table, make_worker=functools.partial(create_inpainter, backend, **opts), image_root=image_root,
                   label_root=label_root, out_dir=out, batch_size=batch_size, driver=driver,
                   masks_table=masks_table, consolidate=not no_consolidate, ray_concurrency=ray_concurrency,
                   signature=inpaint_signature(backend, opts, table, label_root, mask_region=mask_region),
                   overwrite=overwrite, mask_region=mask_region)
    where = ""
    if driver == "torchrun":
        from dlcr.distributed.env import dist_env

        env = dist_env()
        where = f"rank {env.rank}/{env.world_size}: "
    typer.echo(f"{where}{rep.summary()}")
