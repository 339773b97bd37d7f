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


def read_arrow(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """A Parquet table as a :class:`pyarrow.Table` (column-wise: no Python object per row); errors as
    :func:`read_table`."""
    try:
        return pq.read_table(Path(path), columns=list(columns) if columns else None)
    except pa.ArrowInvalid as e:
        raise InputError(f"cannot read table {path}: {first_line(e)}") from None


def read_arrow_file(path: str | os.PathLike, columns: Sequence[str] | None = None) -> pa.Table:
    """One Parquet file as a :class:`pyarrow.Table`, read without the dataset layer of
    :func:`read_arrow` (several times faster for the many small part files of a resumable stage).

    A damaged file, or one lacking a column asked for, is a one-line :class:`InputError`; a missing
    file stays :class:`FileNotFoundError`."""
    try:
        pf = pq.ParquetFile(Path(path))
        if columns:
            lacking = sorted(set(columns) - set(pf.schema_arrow.names))
            if lacking:
                raise InputError(f"cannot read table {path}: it lacks column(s) {lacking}")
        return pf.read(columns=list(columns) if columns else None)
    except pa.ArrowInvalid as e:
        raise InputError(f"cannot read table {path}: {first_line(e)}") from None


def read_table(path: str | os.PathLike, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Rows of a Parquet table; a damaged file is a one-line :class:`InputError` (a missing one stays
    :class:`FileNotFoundError`, which resumable stages treat as "not written yet")."""
    return read_arrow(path, columns).to_pylist()


def column_values(column: pa.ChunkedArray | pa.Array) -> list[Any]:
    """``column.to_pylist()``, with equal strings of a repetitive string column sharing one Python
    object (a million-row plan holds a few thousand distinct prompts, sources and keys)."""
    if pa.types.is_string(column.type) and len(column) and not column.null_count:
        import numpy as np
        import pyarrow.compute as pc

        encoded = pc.dictionary_encode(column)
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        if sum(len(c.dictionary) for c in chunks) <= len(column) // 2:
            out: list[Any] = []
            for c in chunks:
                values = np.empty(len(c.dictionary), dtype=object)
                values[:] = c.dictionary.to_pylist()
                out.extend(values[c.indices.to_numpy()].tolist())
            return out
    return column.to_pylist()
