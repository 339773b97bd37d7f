"""The tables of the description stage (see :mod:`dlcr.generation.describe`, which re-exports
these names): ``captions.parquet`` and ``outfits.parquet`` with their schemas, the resumable table
grown in committed part files (:class:`_CommittedTable`), their readers (:func:`read_outfits`,
:func:`read_captions`), and what the stage reports (:class:`DescribeReport`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from dlcr.errors import InputError, examples_note
from dlcr.generation.parsing import MASKS_TABLE
from dlcr.io.tables import read_table, write_table
from dlcr.types import Outfit
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


CAPTIONS_TABLE = "captions.parquet"
OUTFITS_TABLE = "outfits.parquet"
CAPTIONS_SCHEMA = pa.schema(
    [("path", pa.string()), ("clothes_key", pa.string()), ("caption", pa.string()), ("model", pa.string())]
)
OUTFITS_SCHEMA = pa.schema(
    [
        ("clothes_key", pa.string()),
        ("upper", pa.string()),
        ("lower", pa.string()),
        ("footwear", pa.string()),
        ("prompt", pa.string()),
        ("n_images", pa.int32()),
        ("model", pa.string()),
        ("captions_sha", pa.string()),  # which captions it summarises (re-runs reuse matching rows)
    ]
)


class _CommittedTable:
    """A table grown in committed parts, for resumable stages.

    ``commit`` writes one part file atomically under ``.<stem>.parts/``; ``load`` merges the main
    table and the parts (a later part overrides earlier rows with the same key); ``consolidate``
    writes the main table atomically and only then deletes the parts, so a kill at any point loses
    nothing that was committed.
    """

    def __init__(self, folder: Path, name: str, schema: pa.Schema, key: str):
        self.path = folder / name
        self.parts_dir = folder / f".{Path(name).stem}.parts"
        self.schema = schema
        self.key = key
        self._seq = 0

    def _read(self, path: Path) -> list[dict[str, Any]]:
        try:
            rows = read_table(path)
        except Exception as e:  # written atomically, so this is damage from outside: start over
            log.warning("ignoring unreadable %s (%s)", path, e)
            return []
        if rows and not set(self.schema.names) <= set(rows[0]):
            log.warning(
                "ignoring %s: it lacks columns %s", path, sorted(set(self.schema.names) - set(rows[0]))
            )
            return []
        return rows

    def part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for path in ([self.path] if self.path.is_file() else []) + self.part_files():
            for r in self._read(path):
                rows[r[self.key]] = {k: r[k] for k in self.schema.names}
        return rows

    def commit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        self._seq += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        write_table(self.parts_dir / name, [dict(r) for r in rows], schema=self.schema)

    def remove(self) -> None:
        """Delete the table and its parts (``overwrite``)."""
        for p in self.part_files():
            p.unlink(missing_ok=True)
        if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()
        self.path.unlink(missing_ok=True)

    def consolidate(self, rows: Sequence[Mapping[str, Any]]) -> None:
        parts = self.part_files()
        write_table(self.path, [dict(r) for r in rows], schema=self.schema)
        for p in parts:
            p.unlink(missing_ok=True)
        if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()


def read_outfits(path: str | os.PathLike) -> dict[str, Outfit]:
    """``clothes_key -> Outfit`` from an ``outfits.parquet`` (or the folder that holds it)."""
    p = Path(path)
    if p.is_dir():
        p = p / OUTFITS_TABLE
    if not p.is_file():
        raise InputError(f"outfits table not found: {p} (run `dlcr generate describe` first)")
    try:
        rows = read_table(p, columns=["clothes_key", "upper", "lower", "footwear"])
    except Exception as e:
        raise InputError(f"cannot read outfits table {p}: {e}") from None
    return {r["clothes_key"]: Outfit(r["clothes_key"], r["upper"], r["lower"], r["footwear"]) for r in rows}


def read_captions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``captions.parquet`` (or the folder that holds it)."""
    p = Path(path)
    if p.is_dir():
        p = p / CAPTIONS_TABLE
    if not p.is_file():
        raise InputError(f"captions table not found: {p}")
    return read_table(p)


@dataclass(frozen=True)
class DescribeReport:
    """What :func:`describe_dataset` did."""

    total: int  # distinct images asked for
    captioned: int  # captioned by this run
    reused: int  # captions found from an earlier (possibly killed) run
    skipped_empty: int  # images with an empty clothes mask, not described
    empty_paths: tuple[str, ...]
    outfits: int  # clothes ids with an outfit
    summarized: int  # outfits (re)computed by this run
    captions_table: str
    outfits_table: str
    captioner: str
    summarizer: str
    replaced: tuple[str, ...] = ()  # tables of another signature removed first (``overwrite``)

    def summary(self, examples: int = 3) -> str:
        """One line: the counts and at most ``examples`` of the images with an empty clothes mask."""
        eg = examples_note(self.empty_paths, examples)
        return (
            (f"replaced {' and '.join(self.replaced)} made with other settings; " if self.replaced else "")
            + f"{self.total} images: captioned {self.captioned}, reused {self.reused}, "
            f"skipped (empty clothes mask) {self.skipped_empty}{eg}; {self.outfits} outfits "
            f"({self.summarized} summarised now)"
        )


def _empty_flags(labels_dir: Path) -> dict[str, bool]:
    table = labels_dir / MASKS_TABLE
    if not table.is_file():
        return {}
    try:
        return {r["path"]: bool(r["empty"]) for r in read_table(table, columns=["path", "empty"])}
    except Exception as e:
        log.warning("ignoring unreadable %s (%s); emptiness is read from the label maps", table, e)
        return {}


def _captions_sha(items: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha1()
    for path, caption in items:
        h.update(f"{path}\t{caption}\n".encode())
    return h.hexdigest()[:16]
