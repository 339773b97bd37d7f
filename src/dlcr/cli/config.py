"""``dlcr config``: the packaged configurations, and any configuration fully resolved.

``show`` prints exactly what a run writes into ``<run>/config.yaml`` (defaults, the ``_base_`` chain
and ``--set`` overrides applied, validated), so what a command will use can be read before it runs.
"""

from __future__ import annotations

import json
import re

import typer

from dlcr.cli.common import ConfigOpt, SetOpt, flag, get_config

app = typer.Typer(help="Configurations: list the packaged ones, show one fully resolved.", no_args_is_help=True)


@app.command("show")
def show(
    config: str = ConfigOpt,
    sets: list[str] = SetOpt,
    as_json: bool = flag(False, "--json", help="print JSON instead of YAML"),
) -> None:
    """Print the resolved configuration (the same text every run writes to <run>/config.yaml)."""
    from dlcr.config import dump_yaml, to_dict

    cfg = get_config(config, sets)
    if as_json:
        typer.echo(json.dumps(to_dict(cfg), indent=2))
    else:
        typer.echo(dump_yaml(cfg), nl=False)


def _summary(path: object, width: int = 100) -> str:
    """The first sentence of a packaged YAML file's leading comment (its description), cut to ``width``."""
    from pathlib import Path

    block = []
    for line in Path(str(path)).read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        block.append(line.lstrip("#").strip())
    text = " ".join(block)
    text = re.split(r"\.\s+(?=[A-Z])", text)[0].rstrip(".")  # "i.e. the" does not end a sentence
    return text if len(text) <= width else text[: width - 1].rstrip() + "…"


@app.command("list")
def list_cmd() -> None:
    """The packaged configurations (use one with -c NAME), each with its description."""
    from dlcr.config import list_packaged_configs, packaged_config_dir

    names = list_packaged_configs()
    width = max(len(n) for n in names)
    for n in names:
        typer.echo(f"{n:<{width}}  {_summary(packaged_config_dir() / f'{n}.yaml')}")
