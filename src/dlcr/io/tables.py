"""Parquet tables of records, written atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from dlcr.errors import InputError, first_line
from dlcr.io.atomic import atomic_write_bytes


def _rows(records: Iterable[Any]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        if is_dataclass(r):
            d = r.to_dict() if hasattr(r, "to_dict") else asdict(r)
        else:
            d = dict(r)
        out.append(d)
    return out


def write_table(path: str | os.PathLike, records: Iterable[Any] | pa.Table,
                schema: pa.Schema | None = None) -> None:
    table = records if isinstance(records, pa.Table) else pa.Table.from_pylist(_rows(records), schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a Parquet table; a damaged file is a one-line :class:`InputError` (a missing one stays
    :class:`FileNotFoundError`, which resumable stages treat as "not written yet")."""
    try:
        table = pq.read_table(Path(path), columns=list(columns) if columns else None)
    except pa.ArrowInvalid as e:
        raise InputError(f"cannot read table {path}: {first_line(e)}") from None
    return table.to_pylist()
