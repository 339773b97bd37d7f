"""Which kind of folder ``dlcr report PATH`` was given (:func:`folder_kind`): a demo (or ablation)
folder, a generation work folder or a training run folder, told apart by the files their command
leaves (:mod:`dlcr.report.folders` says which)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from dlcr.errors import InputError
from dlcr.generation.stages import CAPTIONS, GENERATED, JOBS, MASKS, OUTFITS, QUERY_GENERATED, QUERY_JOBS

RUN_FILES = ("log.jsonl", "history.json", "checkpoints", "eval/metrics.json")
WORK_FILES = (MASKS, CAPTIONS, OUTFITS, JOBS, GENERATED, QUERY_JOBS, QUERY_GENERATED)

EXPECTED = ("results.json (a `dlcr demo --out DIR` folder); masks/, captions.parquet, jobs.parquet or "
            "generated/ (a `dlcr generate --work W` work folder, default out/<dataset>); or log.jsonl, "
            "history.json or checkpoints/ (a `dlcr train` run folder, default runs/<name>)")


def is_demo_folder(root: Path) -> bool:
    """A folder ``dlcr demo --out`` wrote: its ``results.json``, or (a demo still running or killed)
    its ``world/`` and ``work/`` folders."""
    return (root / "results.json").is_file() or ((root / "world").is_dir() and (root / "work").is_dir())


def _is_run(p: Path) -> bool:
    if any((p / f).exists() for f in RUN_FILES):
        return True
    cfg = p / "config.yaml"  # a run killed before its first epoch ended: only the resolved config
    if not cfg.is_file():
        return False
    try:
        import yaml

        d = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    except Exception:  # not a config of ours
        return False
    return isinstance(d, Mapping) and isinstance(d.get("train"), Mapping) and isinstance(d.get("data"), Mapping)


def _is_work(p: Path) -> bool:
    return any((p / f).exists() for f in WORK_FILES)


def _kind(p: Path) -> str | None:
    if is_demo_folder(p):
        return "demo"
    if _is_run(p):
        return "run"
    if _is_work(p):
        return "work"
    return None


def folder_kind(path: str | os.PathLike) -> str:
    """``"demo"``, ``"work"`` or ``"run"``; anything else is one :class:`InputError` line saying what
    was expected (and naming the report folders inside it, when it is their parent)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such folder: {p} (`dlcr report` takes a demo, work or run folder)")
    if not p.is_dir():
        raise InputError(f"{p} is a file; `dlcr report` takes a demo, work or run folder")
    kind = _kind(p)
    if kind is not None:
        return kind
    inside = []
    try:
        for d in sorted(p.iterdir()):
            if d.is_dir() and (k := _kind(d)) is not None:
                inside.append(f"{d} ({k})")
    except OSError:
        pass
    hint = ""
    if inside:
        more = f" and {len(inside) - 4} more" if len(inside) > 4 else ""
        hint = f"; it holds {', '.join(inside[:4])}{more}: point `dlcr report` at one of them"
    raise InputError(f"{p} is neither a demo, a work nor a run folder: expected {EXPECTED}{hint}")
