"""`dlcr data ...`: dataset parsing, inspection, statistics and the synthetic world."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import typer

from dlcr.cli.common import flag
from dlcr.errors import DlcrError, InputError

app = typer.Typer(help="Datasets: inspect, stats, prepare, synth.", no_args_is_help=True)

_ROOT = typer.Option(..., "--root", help="Folder that contains the dataset's top folder (e.g. LTCC_ReID/).")
_STRICT = flag(True, "--strict/--no-strict",
               help="Fail on a file that breaks the naming pattern (--no-strict: skip and warn).")
_CSV = typer.Option(None, "--csv", help="custom only: CSV with columns path,pid,camid,clothes,split.",
                   show_default="none")


def _load(name: str, root: Path, strict: bool, csv: Path | None, check: bool = False):
    from dlcr.data.datasets import create_dataset

    kwargs: dict[str, Any] = {"check_images": check}
    if csv is not None:
        kwargs["csv"] = csv
    return create_dataset(name, root, strict=strict, **kwargs)


@app.command()
def inspect(
    name: str = typer.Argument(..., help="Dataset name (prcc, ltcc, vcclothes, ..., synthcc, custom)."),
    root: Path = _ROOT,
    as_json: bool = flag(False, "--json", help="Print every record as JSON (docs/design.md §7)."),
    check: bool = flag(False, "--check", help="Decode every image; fail on unreadable ones."),
    strict: bool = _STRICT,
    csv: Path | None = _CSV,
) -> None:
    """Parse a dataset and print its records (--json) or a short summary."""
    from dlcr.data.datasets import split_stats

    ds = _load(name, root, strict, csv, check)
    if as_json:
        out = {
            "dataset": ds.name,
            "splits": {
                split: [{"path": s.path, "pid": s.pid, "camid": s.camid, "clothes_id": s.clothes_id} for s in samples]
                for split, samples in ds.splits.items()
            },
        }
        sys.stdout.write(json.dumps(out) + "\n")
        return
    kind = "video" if ds.video else "image"
    print(f"{ds.name} ({kind}) at {ds.root}")
    for split, samples in ds.splits.items():
        st = split_stats(samples, ds.video)
        items = ", ".join(f"{v} {k}" for k, v in st.items())
        print(f"  {split}: {items}")
    if ds.protocols:
        print("  protocols: " + "; ".join(f"{p.name} = {p.query} -> {p.gallery} ({p.mode})" for p in ds.protocols))
    if ds.skipped:
        print(f"  skipped {ds.skipped} file(s) that break the naming pattern")
    if check:
        print("  all images readable")


@app.command()
def stats(
    name: str = typer.Argument(..., help="Dataset name."),
    root: Path = _ROOT,
    strict: bool = _STRICT,
    csv: Path | None = _CSV,
) -> None:
    """Table per split: #ids, #images (video: #tracklets, #frames), #clothes, #cameras."""
    from rich.console import Console
    from rich.table import Table

    from dlcr.data.datasets import split_stats

    ds = _load(name, root, strict, csv)
    cols = ["ids", "tracklets", "frames"] if ds.video else ["ids", "images"]
    cols += ["clothes", "cameras"]
    table = Table(title=f"{ds.name} ({ds.root})")
    table.add_column("split")
    for c in cols:
        table.add_column(f"#{c}", justify="right")
    for split, samples in ds.splits.items():
        st = split_stats(samples, ds.video)
        table.add_row(split, *(str(st[c]) for c in cols))
    Console(file=sys.stdout).print(table)


@app.command()
def prepare(
    name: str = typer.Argument(..., help="Dataset name."),
    root: Path = _ROOT,
    out: Path = typer.Option(..., "--out", help="Output folder; samples.parquet is written there."),
    strict: bool = _STRICT,
    check: bool = flag(False, "--check", help="Decode every image first."),
    csv: Path | None = _CSV,
) -> None:
    """Parse a dataset and write OUT/samples.parquet (the input of every later stage)."""
    from dlcr.data.datasets import write_samples

    ds = _load(name, root, strict, csv, check)
    path = write_samples(ds, Path(out) / "samples.parquet")
    counts = ", ".join(f"{split} {len(s)}" for split, s in ds.splits.items())
    print(f"wrote {path} ({counts}); later stages read it with --set data.samples={path} "
          f"--set data.root={root}")


_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"128x64"`` -> (128, 64): height x width."""
    m = _SIZE_RE.match(text or "")
    if not m or int(m[1]) <= 0 or int(m[2]) <= 0:
        raise InputError(f"--size must be HEIGHTxWIDTH with positive integers, e.g. 128x64; got {text!r}")
    return int(m[1]), int(m[2])


@app.command()
def synth(
    out: Path = typer.Option(..., "--out", help="Output folder; the world is written to OUT/synthcc/."),
    ids: int = typer.Option(150, "--ids", min=2, help="Number of identities."),
    seed: int = typer.Option(0, "--seed", help="Random seed (the world is a function of it)."),
    size: str = typer.Option("128x64", "--size", help="Image size HEIGHTxWIDTH."),
) -> None:
    """Render the synthetic CC-ReID world; read it back with `dlcr data inspect synthcc --root OUT`."""
    height, width = parse_size(size)
    try:
        from dlcr.synth import render_world
    except ImportError as e:
        raise DlcrError(f"the synthetic world renderer (dlcr.synth) cannot be imported: {e}") from None
    summary = render_world(out, ids=ids, seed=seed, height=height, width=width)
    print(json.dumps(summary, indent=2, default=str))
