"""The generation bookkeeping as it was written before the columnar versions (plain per-row code).

Verbatim re-statements of ``committed_job_ids`` / ``consolidate_manifest``
(:mod:`dlcr.generation.outputs`) and ``write_jobs`` / ``read_jobs`` (:mod:`dlcr.generation.planning`)
before they read and wrote Parquet column-wise and checked image files with one directory listing
per folder. The tests compare the library with them on small folders and
``benchmarks/scale_jobs.py`` times both at CCVID size.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from dlcr.errors import InputError
from dlcr.generation.outputs import (
    GENERATED_MANIFEST,
    MANIFEST_SCHEMA,
    SKIPPED,
    SKIPPED_SCHEMA,
    STATUS_OK,
    manifest_table,
)
from dlcr.generation.planning import Job
from dlcr.io.tables import read_table, write_table


def _read_rows(path: Path) -> list[dict[str, Any]]:
    try:
        return read_table(path)
    except FileNotFoundError:
        return []


def _load_all(out_dir: Path) -> tuple[list[dict[str, Any]], list[Path]]:
    rows: list[dict[str, Any]] = []
    for r in _read_rows(out_dir / GENERATED_MANIFEST) if (out_dir / GENERATED_MANIFEST).is_file() else []:
        rows.append({**r, "status": STATUS_OK})
    for r in _read_rows(out_dir / SKIPPED) if (out_dir / SKIPPED).is_file() else []:
        rows.append({"job_id": r["job_id"], "source": r["source"], "status": r["reason"], "file": ""})
    parts = manifest_table(out_dir).part_files()
    for p in parts:
        rows.extend(_read_rows(p))
    return rows, parts


def committed_job_ids_reference(out_dir: str | os.PathLike, check_files: bool = True) -> set[str]:
    out = Path(out_dir)
    with manifest_table(out).locked(exclusive=False):
        rows, _ = _load_all(out)
    done = set()
    for r in rows:
        if r["status"] == STATUS_OK and check_files and not (out / r["file"]).is_file():
            continue
        done.add(r["job_id"])
    return done


def consolidate_manifest_reference(out_dir: str | os.PathLike) -> Path:
    out = Path(out_dir)
    with manifest_table(out).locked(exclusive=True):
        rows, parts = _load_all(out)
        ok: dict[str, dict[str, Any]] = {}
        skipped: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["status"] == STATUS_OK:
                if not (out / r["file"]).is_file():
                    continue
                ok.setdefault(r["job_id"], r)
            else:
                skipped.setdefault(
                    r["job_id"], {"job_id": r["job_id"], "source": r["source"], "reason": r["status"]}
                )
        for jid in ok:
            skipped.pop(jid, None)
        records = sorted(ok.values(), key=lambda r: (r["kind"], r["source"], r["variant"], r["job_id"]))
        table = pa.Table.from_pylist(
            [{k: r.get(k) for k in MANIFEST_SCHEMA.names} for r in records], schema=MANIFEST_SCHEMA
        )
        write_table(out / GENERATED_MANIFEST, table)
        if skipped or (out / SKIPPED).is_file():
            sk = sorted(skipped.values(), key=lambda r: (r["source"], r["job_id"]))
            write_table(out / SKIPPED, pa.Table.from_pylist(sk, schema=SKIPPED_SCHEMA))
        for p in parts:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return out / GENERATED_MANIFEST


def write_jobs_reference(path: str | os.PathLike, jobs: Iterable[Job]) -> None:
    jobs = list(jobs)
    ids = [j.job_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise InputError("duplicate job ids in the plan")
    write_table(path, [j.to_dict() for j in jobs])


def read_jobs_reference(path: str | os.PathLike) -> list[Job]:
    return [Job.from_dict(r) for r in read_table(path)]
