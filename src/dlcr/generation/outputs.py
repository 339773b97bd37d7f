"""The files of a generation output folder and how batches are committed to it.

Layout (see :mod:`dlcr.generation.runner` for how the drivers use it)::

    out_dir/images/<source path without extension>/<variant:02d>_<job_id>.png   generated images
    out_dir/parts/<first job id of the batch>.parquet                          per-batch commits
    out_dir/manifest.parquet     consolidated records (:data:`GENERATED_MANIFEST`)
    out_dir/skipped.parquet      jobs whose source has an empty clothes mask (job_id, source, reason)

A job is *committed* when a part file (or the manifest) lists it and, for generated jobs, its image file
exists. :func:`consolidate_manifest` merges the parts into the manifest under a file lock. The parts,
the lock and the merge step are those of :class:`dlcr.io.parts_table.PartsTable`
(:func:`manifest_table`); this module adds what is particular to generation: the status column (a
skip goes to ``skipped.parquet``) and the image files that must exist.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from dlcr.errors import ImageError, InputError
from dlcr.generation.parsing import label_path
from dlcr.generation.planning import Job
from dlcr.io.parts_table import Committed, PartsTable
from dlcr.io.paths import safe_join
from dlcr.io.tables import read_arrow_file, read_table, write_table
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

IMAGES_DIR = "images"
PARTS_DIR = "parts"
GENERATED_MANIFEST = "manifest.parquet"  # the consolidated records of a generation output folder
SKIPPED = "skipped.parquet"
LOCK_FILE = ".manifest.lock"
STATUS_OK = "ok"
STATUS_EMPTY = "empty_mask"


@dataclass(frozen=True)
class GeneratedRecord:
    """One generated image: its job's columns plus where and how it was made."""

    job_id: str
    kind: str
    dataset: str
    source: str
    source_clothes_key: str
    pid: int
    target_clothes_key: str
    variant: int
    partition: int
    prompt: str
    seed: int
    generator: str
    file: str  # relative to the output folder (POSIX separators)
    width: int
    height: int
    backend: str
    model: str
    signature: str = ""  # hash of the generation signature (signature.json of the output folder)

    @classmethod
    def from_job(
        cls, job: Job, *, file: str, width: int, height: int, backend: str, model: str, signature: str = ""
    ) -> GeneratedRecord:
        return cls(
            **job.to_dict(), file=file, width=int(width), height=int(height), backend=backend, model=model,
            signature=signature,
        )

    @property
    def job(self) -> Job:
        names = {f.name for f in fields(Job)}
        return Job(**{k: v for k, v in asdict(self).items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


MANIFEST_SCHEMA = pa.schema(
    [
        ("job_id", pa.string()),
        ("kind", pa.string()),
        ("dataset", pa.string()),
        ("source", pa.string()),
        ("source_clothes_key", pa.string()),
        ("pid", pa.int64()),
        ("target_clothes_key", pa.string()),
        ("variant", pa.int64()),
        ("partition", pa.int64()),
        ("prompt", pa.string()),
        ("seed", pa.int64()),
        ("generator", pa.string()),
        ("file", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("backend", pa.string()),
        ("model", pa.string()),
        ("signature", pa.string()),
    ]
)
PART_SCHEMA = MANIFEST_SCHEMA.append(pa.field("status", pa.string()))
SKIPPED_SCHEMA = pa.schema([("job_id", pa.string()), ("source", pa.string()), ("reason", pa.string())])


# ----------------------------------------------------------------------------- paths
def output_relpath(job: Job) -> str:
    """``images/<source without extension>/<variant:02d>_<job_id>.png`` (POSIX, relative)."""
    src = PurePosixPath(job.source.replace("\\", "/"))
    stem = src.with_suffix("") if src.suffix else src
    return f"{IMAGES_DIR}/{stem.as_posix()}/{job.variant:02d}_{job.job_id}.png"


def label_path_for(label_root: str | os.PathLike, source: str) -> Path:
    """The LIP label map of ``source``: where the masks stage writes it (:func:`parsing.label_path`,
    ``<source without extension>.png``), else ``<source>.png``."""
    candidates = [label_path(label_root, source), safe_join(label_root, source + ".png")]
    for p in candidates:
        if p.is_file():
            return p
    looked = " or ".join(p.relative_to(Path(label_root).resolve()).as_posix() for p in candidates)
    raise ImageError(f"no label map for {source!r} under {label_root} (looked for {looked})")


def read_empty_masks(path: str | os.PathLike) -> set[str]:
    """Sources flagged ``empty`` in a masks table (column ``source``, ``rel_path`` or ``path``)."""
    rows = read_table(path)
    if not rows or "empty" not in rows[0]:
        return set()
    key = next((k for k in ("source", "rel_path", "path") if k in rows[0]), None)
    if key is None:
        raise InputError(f"masks table {path} has an 'empty' column but no source/rel_path/path column")
    return {str(r[key]) for r in rows if r["empty"]}


def manifest_table(out_dir: str | os.PathLike) -> PartsTable:
    """The committed records of a generation folder as a :class:`~dlcr.io.parts_table.PartsTable`:
    ``manifest.parquet`` grown from ``parts/<first job id>.parquet``, locked by ``.manifest.lock``
    (ranks and actors commit into one folder), keyed by ``job_id``; a damaged file is an error."""
    return PartsTable(out_dir, GENERATED_MANIFEST, MANIFEST_SCHEMA, "job_id", parts_dir=PARTS_DIR,
                      part_schema=PART_SCHEMA, lock=LOCK_FILE)


# ----------------------------------------------------------------------------- commits
def existing_files(root: str | os.PathLike, files: Sequence[str]) -> list[bool]:
    """``[(Path(root) / f).is_file() for f in files]``, with one directory listing per folder instead of
    one ``stat`` per file (a million committed images sit in ~100k folders, about ten per folder).

    A name the listing does not show as a file (a missing image, a name the file system matches
    differently, an unreadable folder) is asked with ``os.path.isfile``, so the answer is the same."""
    base = os.fspath(root)
    by_dir: dict[str, list[int]] = {}
    names: list[str] = []
    for i, f in enumerate(files):
        head, sep, name = f.rpartition("/")  # POSIX names: os.path.dirname / basename, 3x cheaper
        by_dir.setdefault(head if head or not sep else "/", []).append(i)
        names.append(name)
    found = [False] * len(files)
    for d, idx in by_dir.items():
        if len(idx) > 1:
            with contextlib.suppress(OSError):
                with os.scandir(os.path.join(base, d)) as it:
                    listed = {e.name for e in it if e.is_file()}
                for i in idx:
                    found[i] = names[i] in listed
        for i in idx:
            if not found[i]:
                found[i] = os.path.isfile(os.path.join(base, files[i]))
    return found


def _read_skipped(out: Path) -> pa.Table | None:
    try:
        return read_arrow_file(out / SKIPPED) if (out / SKIPPED).is_file() else None
    except FileNotFoundError:  # replaced meanwhile
        return None


def _ok(table: pa.Table) -> pa.ChunkedArray:
    """Which rows of a part are generated images (status ``ok``; any other status is a skip)."""
    return pc.fill_null(pc.equal(table.column("status"), STATUS_OK), False)


def committed_job_ids(out_dir: str | os.PathLike, check_files: bool = True) -> set[str]:
    """Ids of the jobs committed in ``out_dir`` (generated ones only if their image file exists)."""
    out = Path(out_dir)
    tbl = manifest_table(out)
    with tbl.locked(exclusive=False):
        committed = tbl.read(["job_id", "file"], ["job_id", "file", "status"])
        skipped = _read_skipped(out)
    done: set[str] = set()
    ids: list[str] = []
    files: list[str] = []
    if skipped is not None:
        done.update(skipped.column("job_id").to_pylist())
    if committed.main is not None:
        ids += committed.main.column("job_id").to_pylist()
        files += committed.main.column("file").to_pylist()
    for t in committed.parts:
        ok = _ok(t)
        generated = t.filter(ok)
        ids += generated.column("job_id").to_pylist()
        files += generated.column("file").to_pylist()
        done.update(t.filter(pc.invert(ok)).column("job_id").to_pylist())
    exists = existing_files(out, files) if check_files else [True] * len(files)
    done.update(jid for jid, e in zip(ids, exists, strict=True) if e)
    return done


def commit_part(out_dir: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> Path | None:
    """Commit one batch: write its records as ``parts/<first job id>.parquet``, atomically."""
    if not rows:
        return None
    return manifest_table(out_dir).write_part(rows, name=f"{rows[0]['job_id']}.parquet")


def _as_manifest(table: pa.Table) -> pa.Table:
    """``table``'s manifest columns in :data:`MANIFEST_SCHEMA` (a column an older manifest lacks is null)."""
    return pa.table([table.column(f.name).cast(f.type) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in MANIFEST_SCHEMA], schema=MANIFEST_SCHEMA)


def _merge(out: Path, committed: Committed) -> pa.Table:
    """The new manifest of ``out`` from what is committed (see :func:`consolidate_manifest`); writes
    the new ``skipped.parquet``."""
    manifest, part_tables = committed.main, committed.parts
    skipped_table = _read_skipped(out)
    tables = ([_as_manifest(manifest)] if manifest is not None else []) + [_as_manifest(t) for t in part_tables]
    merged = pa.concat_tables(tables) if tables else MANIFEST_SCHEMA.empty_table()
    status = [STATUS_OK] * (manifest.num_rows if manifest is not None else 0)
    for t in part_tables:
        status += t.column("status").to_pylist()
    ids, sources, files = (merged.column(c).to_pylist() for c in ("job_id", "source", "file"))
    ok_rows = [i for i, st in enumerate(status) if st == STATUS_OK]
    exists = existing_files(out, [files[i] for i in ok_rows])
    missing = exists.count(False)
    keep: dict[str, int] = {}  # job id -> its first generated row whose image exists
    for i, e in zip(ok_rows, exists, strict=True):
        if e:
            keep.setdefault(ids[i], i)
    skipped: dict[str, dict[str, Any]] = {}
    if skipped_table is not None:
        for r in skipped_table.to_pylist():
            skipped.setdefault(r["job_id"], {"job_id": r["job_id"], "source": r["source"], "reason": r["reason"]})
    for i, st in enumerate(status):
        if st != STATUS_OK:
            skipped.setdefault(ids[i], {"job_id": ids[i], "source": sources[i], "reason": st})
    for jid in keep:
        skipped.pop(jid, None)
    if missing:
        log.warning("%d committed record(s) lost their image file; their jobs are pending again", missing)
    if skipped or (out / SKIPPED).is_file():
        sk = sorted(skipped.values(), key=lambda r: (r["source"], r["job_id"]))
        write_table(out / SKIPPED, pa.Table.from_pylist(sk, schema=SKIPPED_SCHEMA))
    table = merged.take(pa.array(list(keep.values()), type=pa.int64())).sort_by(
        [("kind", "ascending"), ("source", "ascending"), ("variant", "ascending"), ("job_id", "ascending")])
    return table.combine_chunks()


def consolidate_manifest(out_dir: str | os.PathLike) -> Path:
    """Merge parts into ``manifest.parquet`` / ``skipped.parquet``; delete the merged parts.

    Rows are de-duplicated by ``job_id`` (a generated row wins over a skipped one), rows whose image
    file is missing are dropped (their jobs become pending again), and the manifest is sorted by
    (kind, source, variant, job_id) so it is byte-identical however the work was split or resumed.
    Safe to call while workers are still committing: it holds an exclusive lock and deletes only
    the parts it read (:meth:`PartsTable.consolidate`). The rows stay in Arrow columns (no Python
    object per row).
    """
    out = Path(out_dir)
    return manifest_table(out).consolidate(lambda committed: _merge(out, committed))


def read_manifest(out_dir: str | os.PathLike) -> list[GeneratedRecord]:
    """The consolidated records of ``out_dir`` (``manifest.parquet``)."""
    path = Path(out_dir) / GENERATED_MANIFEST
    if not path.is_file():
        raise InputError(f"no {GENERATED_MANIFEST} in {out_dir}; run the generation (or consolidate) first")
    names = {f.name for f in fields(GeneratedRecord)}
    return [GeneratedRecord(**{k: v for k, v in r.items() if k in names}) for r in read_table(path)]


def remove_outputs(out_dir: str | os.PathLike) -> None:
    """Delete a generation folder's images, part files, manifest and skipped list (``--overwrite``)."""
    out = Path(out_dir)
    manifest_table(out).remove(also=[out / IMAGES_DIR, out / SKIPPED])
