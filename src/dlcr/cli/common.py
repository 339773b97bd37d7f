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
    from dlcr.data.datasets import create_dataset
    from dlcr.errors import ConfigError

    extra: dict[str, Any] = {}
    if cfg.data.csv:  # null or empty: unset
        if cfg.data.name != "custom":
            raise ConfigError(f"data.csv is read only by the 'custom' dataset, not by {cfg.data.name!r}")
        extra["csv"] = cfg.data.csv
    elif cfg.data.name == "custom":
        from dlcr.data.datasets.custom import COLUMNS

        raise ConfigError(f"dataset 'custom' needs config key data.csv: --set data.csv=<CSV with columns "
                          f"{','.join(COLUMNS)}> (a relative path is read from the working directory)")
    return create_dataset(cfg.data.name, root or cfg.data.root, strict=cfg.data.strict, **extra)


def work_dir(cfg: Config, work: str | None) -> Path:
    return Path(work) if work else Path("out") / cfg.data.name
