"""The tables of the description stage (used by :mod:`dlcr.generation.describe`
and :mod:`dlcr.generation.stages`): ``captions.parquet`` and ``outfits.parquet`` with their schemas, the resumable tables
grown in committed part files (:func:`committed_table`, a :class:`~dlcr.io.parts_table.PartsTable`), their readers (:func:`read_outfits`,
:func:`read_captions`), and what the stage reports (:class:`DescribeReport`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from dlcr.errors import InputError, examples_note
from dlcr.generation.parsing import MASKS_TABLE
from dlcr.io.parts_table import PartsTable
from dlcr.io.tables import read_table
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


def committed_table(folder: Path, name: str, schema: pa.Schema, key: str) -> PartsTable:
    """``folder/name`` grown in parts under ``folder/.<stem>.parts/`` (:class:`~dlcr.io.parts_table.PartsTable`):
    one writer (no lock file); an unreadable file or one lacking a column is ignored with a warning,
    so its rows are redone."""
    return PartsTable(folder, name, schema, key, on_damage="skip")


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
