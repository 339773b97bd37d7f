"""Shared CLI plumbing: config loading, opening the configured dataset, the work folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dlcr.config import Config, load_config

ConfigOpt = typer.Option("synthcc", "--config", "-c", help="packaged config name (e.g. prcc) or a YAML path")
SetOpt = typer.Option([], "--set", help="override one config key, e.g. --set train.epochs=10 (repeatable)")
WorkOpt = typer.Option(None, "--work", help="work folder of the generation stages", show_default="out/<dataset>")


def flag(default: bool, *decls: str, help: str) -> Any:  # noqa: A002 - typer's own keyword
    """A boolean option that takes no value (``--resume``, or ``--queries/--no-queries``).

    The empty metavar keeps typer's help from printing ``<bool>`` next to it, which reads as if the
    flag took a value (``--resume true`` is rejected). Put a default shown in ``[default: …]`` in
    ``show_default`` of a value option instead of in its help text: rich markup eats bracketed text there.
    """
    return typer.Option(default, *decls, help=help, metavar="")


def positive(ctx: typer.Context, param: typer.CallbackParam, value: Any) -> Any:
    """Option callback: a number given on the command line must be >= 1 (0 never means "the default").

    A :class:`ConfigError`, so the CLI prints one ``error:`` line (exit 2), like every other bad setting.
    """
    if value is not None and value < 1:
        from dlcr.errors import ConfigError

        raise ConfigError(f"{param.opts[0]} must be a positive integer, got {value}")
    return value


def int_list(text: str, option: str) -> tuple[int, ...]:
    """``"0,1,2"`` given to ``option`` as a tuple of ints; anything else is one ``error:`` line."""
    from dlcr.errors import ConfigError

    try:
        values = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"{option} expects comma-separated integers, got {text!r}") from None
    if not values:
        raise ConfigError(f"{option} names no value")
    return values


DEVICE_HELP = "cpu | cuda | cuda:N"
DEVICE_DEFAULT = "this process's GPU when one is visible, else cpu"


def get_config(config: str, sets: list[str]) -> Config:
    return load_config(config, tuple(sets))


def open_dataset(cfg: Config, root: str | None = None) -> Any:
    """The configured dataset: read from ``data.samples`` (a ``dlcr data prepare`` table) when that is
    set, else parsed from the raw files under ``root`` (default ``data.root``)."""
    from dlcr.data.datasets import create_dataset
    from dlcr.errors import ConfigError

    if cfg.data.samples:  # null or empty: unset
        return prepared_dataset(cfg, root)
    extra: dict[str, Any] = {}
    if cfg.data.csv:  # null or empty: unset
        if cfg.data.name != "custom":
            raise ConfigError(f"data.csv is read only by the 'custom' dataset, not by {cfg.data.name!r}")
        extra["csv"] = cfg.data.csv
    elif cfg.data.name == "custom":
        from dlcr.data.datasets.custom import COLUMNS

        raise ConfigError(f"dataset 'custom' needs config key data.csv: --set data.csv=<CSV with columns "
                          f"{','.join(COLUMNS)}> (a relative path is read from the working directory), or "
                          "data.samples=<the samples.parquet of `dlcr data prepare`>")
    return create_dataset(cfg.data.name, root or cfg.data.root, strict=cfg.data.strict, **extra)


#: how many images of each split :func:`prepared_dataset` looks for under the root (spread evenly)
CHECKED_PER_SPLIT = 16


def prepared_dataset(cfg: Config, root: str | None = None) -> Any:
    """The dataset of the table ``data.samples`` (written by ``dlcr data prepare``), its images under
    ``root`` (default ``data.root``); the raw files are not parsed again and ``data.csv`` is not read.

    Refused with one line: a table made for another dataset than ``data.name``, and a root that lacks
    its images. That check is cheap on purpose: it looks for :data:`CHECKED_PER_SPLIT` images of each
    split (all of a smaller split), spread evenly over it, first and last included: enough to catch a
    wrong root or a table of another copy of the data; an image deleted since is found when it is read.
    """
    from dlcr.data.datasets import dataset_from_samples
    from dlcr.errors import ConfigError, DatasetError

    table, base = Path(cfg.data.samples), Path(root or cfg.data.root)
    ds = dataset_from_samples(table, base)
    if ds.name != cfg.data.name:
        raise ConfigError(f"data.samples {table} was prepared for dataset {ds.name!r}, not data.name "
                          f"{cfg.data.name!r}; use that dataset's config (-c {ds.name}) or prepare this one")
    missing = [f for f in _spread_files(ds) if not (base / f).exists()]
    if missing:
        raise DatasetError(f"{len(missing)} checked image(s) of data.samples {table} are not under data.root "
                           f"{base} (e.g. {missing[0]}); set data.root to the folder it was prepared from")
    return ds


def _spread_files(ds: Any) -> list[str]:
    """Up to :data:`CHECKED_PER_SPLIT` files of each split, evenly spaced (a video's first frame)."""
    out: list[str] = []
    for samples in ds.splits.values():
        n, k = len(samples), CHECKED_PER_SPLIT
        picks = range(n) if n <= k else sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
        out += [samples[i].frames[0] if samples[i].frames else samples[i].path for i in picks]
    return out


def work_dir(cfg: Config, work: str | None) -> Path:
    return Path(work) if work else Path("out") / cfg.data.name
