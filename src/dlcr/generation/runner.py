"""Resumable execution of inpainting jobs: ``pending = planned - committed``.

Layout of an output folder::

    out_dir/images/<source path without extension>/<variant:02d>_<job_id>.png   generated images
    out_dir/parts/<first job id of the batch>.parquet                          per-batch commits
    out_dir/manifest.parquet     consolidated records (job columns + file, width, height, backend, model,
                                 signature: the hash of the generation signature that made the image)
    out_dir/skipped.parquet      jobs whose source has an empty clothes mask (job_id, source, reason)
    out_dir/signature.json       the generation signature (:func:`inpaint_signature`)

A worker handles one batch at a time: it writes every image of the batch atomically, then commits the
batch by writing its part file atomically. A job is *committed* when a part file (or the manifest)
lists it and, for generated jobs, its image file exists. A killed run therefore leaves at most some
uncommitted images (rewritten, byte-identical for deterministic backends, on the next run) and temp
files (removed at start); it never leaves a partial image or a half-written record.
``consolidate_manifest`` merges the parts into ``manifest.parquet`` (de-duplicated, sorted, written
atomically under a file lock) and deletes the parts it merged.

Drivers: ``local`` (one process), ``torchrun`` (each rank takes the static share
``planned[rank::world]`` and skips what is committed; no coordination between ranks is needed, and
each rank consolidates under the lock when it finishes, so the last one leaves the full manifest),
``ray`` (Ray Data ``map_batches`` over an actor pool, see ``dlcr.distributed.ray_backend``).

Signatures: given a ``signature`` (the work-folder stages and the command line always give one),
:func:`run_jobs` compares it with ``out_dir/signature.json`` in the driver process before any work
and before any model is loaded: the same resumes, another one is a one-line ``ConfigError`` naming
what differs, and ``overwrite=True`` removes the folder's generated images and records first (under
torchrun rank 0 removes them and the other ranks wait for its new signature; every rank computes the
same signature from the same job table). Before anything is removed the inpainter is built (its model
loaded), so a model that fails to load loses nothing already written: the local and torchrun drivers
keep that worker for the run, the ray driver builds the inpainter once in the driver process and drops
it before its actors build their own. A plain resume (same signature) builds it once, as usual.

Mask region (``mask_region``, :func:`region_mask`): ``clothes`` (default, the paper's ID-preserving
mask: the clothes labels of the LIP map) or ``person`` (every non-background label: face, hair, skin and
clothes, the "standard diffusion" ablation of the paper's Table A1, in which identity cues are
repainted too; for the diffusers backends that is inpainting with a whole-person mask, our stand-in for
img2img on the whole image, and ``recolor`` paints the person's skin and hair in the style of the
nearest garment part). The region is recorded in the generation signature when it is not ``clothes``.

Command line (used by tests and by ``torchrun``)::

    python -m dlcr.generation.runner --jobs jobs.parquet --image-root R --label-root L --out O \
        [--backend recolor] [--option key=value ...] [--batch-size 8] [--driver local|torchrun|ray] \
        [--mask-region clothes|person] [--overwrite]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from dlcr.errors import ConfigError, DlcrError, ImageError, InputError
from dlcr.generation.inpainting import INPAINTERS, Inpainter, InpaintItem, create_inpainter
from dlcr.generation.parsing import MASKS_TABLE, clothes_mask, label_path, track_batches
from dlcr.generation.planning import Job, read_jobs
from dlcr.generation.signature import (
    backend_signature,
    check_signature,
    recorded_hash,
    signature_file,
    signature_hash,
    stable_hash,
    wait_for_signature,
)
from dlcr.io.atomic import remove_stale_temps
from dlcr.io.images import read_label_map, read_rgb, write_png
from dlcr.io.paths import safe_join
from dlcr.io.tables import read_arrow, read_table, write_table
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

IMAGES_DIR = "images"
PARTS_DIR = "parts"
MANIFEST = "manifest.parquet"
SKIPPED = "skipped.parquet"
LOCK_FILE = ".manifest.lock"
DRIVERS = ("local", "torchrun", "ray")
STATUS_OK = "ok"
STATUS_EMPTY = "empty_mask"
MASK_REGIONS = ("clothes", "person")


def check_mask_region(region: str) -> str:
    if region not in MASK_REGIONS:
        raise ConfigError(f"unknown generate.mask_region {region!r}; known: {', '.join(MASK_REGIONS)}")
    return region


def region_mask(labels: np.ndarray, region: str = "clothes") -> np.ndarray:
    """The pixels an inpainter may change: the clothes (``clothes``) or the whole person (``person``:
    every label but background)."""
    if check_mask_region(region) == "person":
        return np.asarray(labels) != 0
    return clothes_mask(labels)


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


@dataclass(frozen=True)
class RunReport:
    planned: int
    already_committed: int  # planned jobs committed before this run
    pending: int  # jobs this run set out to do (after removing known-empty masks)
    generated: int  # images written and committed by this process (or by all Ray actors)
    skipped_empty: tuple[str, ...] = field(default=())  # job ids skipped now for an empty clothes mask
    removed_temps: int = 0
    manifest: str = ""
    signature: str = ""  # "same", "new" or "overwritten" when a signature was checked

    def summary(self) -> str:
        """One line: the counts (and, after ``--overwrite``, that the old outputs were replaced)."""
        head = "replaced the earlier outputs; " if self.signature == "overwritten" else ""
        return (
            f"{head}planned {self.planned}, already committed {self.already_committed}, generated {self.generated}, "
            f"skipped (empty mask) {len(self.skipped_empty)}"
        )


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


@contextlib.contextmanager
def _locked(out_dir: Path, exclusive: bool) -> Iterator[None]:
    """An advisory file lock on the output folder (shared for readers, exclusive for merging)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no lock
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK_FILE, "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- commits
def _part_files(out_dir: Path) -> list[Path]:
    d = out_dir / PARTS_DIR
    return sorted(d.glob("*.parquet")) if d.is_dir() else []


def existing_files(root: str | os.PathLike, files: Sequence[str]) -> list[bool]:
    """``[(Path(root) / f).is_file() for f in files]``, with one directory listing per folder instead of
    one ``stat`` per file (a million committed images sit in ~100k folders, about ten per folder).

    A name the listing does not show as a file (a missing image, a name the file system matches
    differently, an unreadable folder) is asked with ``os.path.isfile``, so the answer is the same."""
    base = os.fspath(root)
    by_dir: dict[str, list[int]] = {}
    for i, f in enumerate(files):
        by_dir.setdefault(os.path.dirname(f), []).append(i)
    found = [False] * len(files)
    for d, idx in by_dir.items():
        if len(idx) > 1:
            with contextlib.suppress(OSError):
                with os.scandir(os.path.join(base, d)) as it:
                    listed = {e.name for e in it if e.is_file()}
                for i in idx:
                    found[i] = os.path.basename(files[i]) in listed
        for i in idx:
            if not found[i]:
                found[i] = os.path.isfile(os.path.join(base, files[i]))
    return found


def _read_arrow(path: Path, columns: Sequence[str] | None = None) -> pa.Table | None:
    try:
        return read_arrow(path, columns)
    except FileNotFoundError:  # merged and deleted meanwhile
        return None


def _committed_tables(out_dir: Path, columns: Sequence[str] | None = None
                      ) -> tuple[pa.Table | None, pa.Table | None, list[pa.Table], list[Path]]:
    """The manifest, the skipped list and the part tables of ``out_dir`` (read column-wise), and the
    part files read."""
    manifest = _read_arrow(out_dir / MANIFEST, columns) if (out_dir / MANIFEST).is_file() else None
    skipped = _read_arrow(out_dir / SKIPPED) if (out_dir / SKIPPED).is_file() else None
    parts = _part_files(out_dir)
    tables = [t for t in (_read_arrow(p, columns and [*columns, "status"]) for p in parts) if t is not None]
    return manifest, skipped, tables, parts


def committed_job_ids(out_dir: str | os.PathLike, check_files: bool = True) -> set[str]:
    """Ids of the jobs committed in ``out_dir`` (generated ones only if their image file exists)."""
    out = Path(out_dir)
    with _locked(out, exclusive=False):
        manifest, skipped, parts, _ = _committed_tables(out, ["job_id", "file"])
    done: set[str] = set()
    ids: list[str] = []
    files: list[str] = []
    if skipped is not None:
        done.update(skipped.column("job_id").to_pylist())
    for t in [manifest] if manifest is not None else []:
        ids += t.column("job_id").to_pylist()
        files += t.column("file").to_pylist()
    for t in parts:
        for jid, st, f in zip(*(t.column(c).to_pylist() for c in ("job_id", "status", "file")), strict=True):
            if st == STATUS_OK:
                ids.append(jid)
                files.append(f)
            else:
                done.add(jid)
    exists = existing_files(out, files) if check_files else [True] * len(files)
    done.update(jid for jid, e in zip(ids, exists, strict=True) if e)
    return done


def commit_part(out_dir: str | os.PathLike, rows: Sequence[dict[str, Any]]) -> Path | None:
    """Commit one batch: write its records as ``parts/<first job id>.parquet``, atomically."""
    if not rows:
        return None
    path = Path(out_dir) / PARTS_DIR / f"{rows[0]['job_id']}.parquet"
    table = pa.Table.from_pylist([{k: r.get(k) for k in PART_SCHEMA.names} for r in rows], schema=PART_SCHEMA)
    write_table(path, table)
    return path


def _as_manifest(table: pa.Table) -> pa.Table:
    """``table``'s manifest columns in :data:`MANIFEST_SCHEMA` (a column an older manifest lacks is null)."""
    return pa.table([table.column(f.name).cast(f.type) if f.name in table.column_names
                     else pa.nulls(table.num_rows, f.type) for f in MANIFEST_SCHEMA], schema=MANIFEST_SCHEMA)


def consolidate_manifest(out_dir: str | os.PathLike) -> Path:
    """Merge parts into ``manifest.parquet`` / ``skipped.parquet``; delete the merged parts.

    Rows are de-duplicated by ``job_id`` (a generated row wins over a skipped one), rows whose image
    file is missing are dropped (their jobs become pending again), and the manifest is sorted by
    (kind, source, variant, job_id) so it is byte-identical however the work was split or resumed.
    Safe to call while workers are still committing: it holds an exclusive lock and deletes only
    the parts it read. The rows stay in Arrow columns (no Python object per row).
    """
    out = Path(out_dir)
    with _locked(out, exclusive=True):
        manifest, skipped_table, part_tables, parts = _committed_tables(out)
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
        table = merged.take(pa.array(list(keep.values()), type=pa.int64())).sort_by(
            [("kind", "ascending"), ("source", "ascending"), ("variant", "ascending"), ("job_id", "ascending")])
        write_table(out / MANIFEST, table.combine_chunks())
        if skipped or (out / SKIPPED).is_file():
            sk = sorted(skipped.values(), key=lambda r: (r["source"], r["job_id"]))
            write_table(out / SKIPPED, pa.Table.from_pylist(sk, schema=SKIPPED_SCHEMA))
        for p in parts:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    return out / MANIFEST


def read_manifest(out_dir: str | os.PathLike) -> list[GeneratedRecord]:
    """The consolidated records of ``out_dir`` (``manifest.parquet``)."""
    path = Path(out_dir) / MANIFEST
    if not path.is_file():
        raise InputError(f"no {MANIFEST} in {out_dir}; run the generation (or consolidate) first")
    names = {f.name for f in fields(GeneratedRecord)}
    return [GeneratedRecord(**{k: v for k, v in r.items() if k in names}) for r in read_table(path)]


# ----------------------------------------------------------------------------- worker
class GenerationWorker:
    """Loads the inpainter once; each call generates, writes and commits one batch of jobs."""

    def __init__(
        self,
        make_inpainter: Callable[[], Inpainter],
        *,
        image_root: str | os.PathLike,
        label_root: str | os.PathLike,
        out_dir: str | os.PathLike,
        signature: str = "",
        mask_region: str = "clothes",
    ):
        self.mask_region = check_mask_region(mask_region)
        self.image_root = Path(image_root)
        self.label_root = Path(label_root)
        self.out_dir = Path(out_dir)
        self.signature = str(signature or "")
        self.inpainter = make_inpainter()
        self.backend = str(getattr(self.inpainter, "name", type(self.inpainter).__name__))
        self.model = str(getattr(self.inpainter, "model", ""))

    def _load(self, source: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        image = read_rgb(safe_join(self.image_root, source, lexical=True))
        labels = read_label_map(label_path_for(self.label_root, source))
        if labels.shape != image.shape[:2]:  # parsed at another size: bring it back, no new labels
            h, w = image.shape[:2]
            labels = np.asarray(Image.fromarray(labels).resize((w, h), Image.Resampling.NEAREST))
        return image, labels, region_mask(labels, self.mask_region)

    def __call__(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Generate ``jobs``; return the committed part rows (one per job)."""
        cache: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        items: list[InpaintItem] = []
        rows: list[dict[str, Any]] = []
        for job in jobs:
            if job.source not in cache:
                cache[job.source] = self._load(job.source)
            image, labels, mask = cache[job.source]
            if not mask.any():
                rows.append(
                    {
                        **job.to_dict(),
                        "file": "",
                        "width": int(image.shape[1]),
                        "height": int(image.shape[0]),
                        "backend": self.backend,
                        "model": self.model,
                        "signature": self.signature,
                        "status": STATUS_EMPTY,
                    }
                )
                continue
            items.append(InpaintItem(job=job, image=image, mask=mask, labels=labels))
        outputs = self.inpainter(items) if items else []
        if len(outputs) != len(items):
            raise DlcrError(f"inpainter {self.backend} returned {len(outputs)} images for {len(items)} jobs")
        for item, img in zip(items, outputs, strict=True):
            if img.shape != item.image.shape or img.dtype != np.uint8:
                raise DlcrError(
                    f"inpainter {self.backend} returned {img.dtype} {img.shape} for job "
                    f"{item.job.job_id}; expected uint8 {item.image.shape}"
                )
            rel = output_relpath(item.job)
            write_png(safe_join(self.out_dir, rel), img)
            rec = GeneratedRecord.from_job(
                item.job,
                file=rel,
                width=img.shape[1],
                height=img.shape[0],
                backend=self.backend,
                model=self.model,
                signature=self.signature,
            )
            rows.append({**rec.to_dict(), "status": STATUS_OK})
        commit_part(self.out_dir, rows)
        return rows


# ----------------------------------------------------------------------------- signatures
def plan_hash(jobs: Sequence[Job]) -> str:
    """A hash of a job plan's content: every job's id, prompt and seed (order-free), so a changed
    target prompt (or any other plan) never resumes into images made for the old one."""
    return stable_hash(sorted((j.job_id, j.prompt, int(j.seed)) for j in jobs))


def inpaint_signature(
    backend: str, options: dict[str, Any] | None, jobs: Sequence[Job], label_root: str | os.PathLike,
    *, mask_region: str = "clothes",
) -> dict[str, Any]:
    """The generation signature of an output folder: the inpainter's
    (:func:`~dlcr.generation.signature.backend_signature`: name, options with defaults, model
    fingerprints, resolved dtype, ``output_version``), the plan's content hash and the hash of the
    masks' signature (``label_root/signature.json``; ``None`` for label maps made without one), and
    the mask region when it is not ``clothes`` (outputs made before the option existed still resume)."""
    sig: dict[str, Any] = {
        "stage": "inpaint",
        "inpainter": backend_signature(INPAINTERS, backend, options or {}),
        "inputs": {"plan": plan_hash(jobs), "masks": recorded_hash(label_root)},
    }
    if check_mask_region(mask_region) != "clothes":
        sig["mask_region"] = mask_region
    return sig


def remove_outputs(out_dir: str | os.PathLike) -> None:
    """Delete a generation folder's images, part files, manifest and skipped list (``--overwrite``)."""
    out = Path(out_dir)
    with _locked(out, exclusive=True):
        for name in (IMAGES_DIR, PARTS_DIR):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in (MANIFEST, SKIPPED):
            (out / name).unlink(missing_ok=True)


def would_replace(out: str | os.PathLike, signature: dict[str, Any]) -> bool:
    """Whether ``overwrite`` would remove outputs of ``out``: some are committed and the recorded
    signature (if any) is not ``signature``."""
    if recorded_hash(out) == signature_hash(signature):
        return False
    return bool(committed_job_ids(out, check_files=False))


def _free_memory() -> None:
    """Free what a dropped probe inpainter of the driver process held (GPU memory included)."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def _check_output_signature(out: Path, signature: dict[str, Any], *, driver: str, overwrite: bool) -> str:
    """Check (and record) ``signature`` for ``out`` before any work; see the module docstring."""
    path = signature_file(out)
    rank = 0
    if driver == "torchrun":
        from dlcr.distributed.env import dist_env

        rank = dist_env().rank
    if rank != 0 and overwrite:
        wait_for_signature(path, signature)  # rank 0 removes the old outputs and records the new one
        return "overwritten"
    # every rank records a new signature before it commits anything (the same bytes from each rank), so
    # a rank that starts late finds the signature of what the early ones are committing
    committed = len(committed_job_ids(out, check_files=False))
    return check_signature(path, signature, what="generated images", committed=committed, overwrite=overwrite,
                           remove=lambda: remove_outputs(out))


def run_local(
    worker: GenerationWorker, jobs: Sequence[Job], batch_size: int, desc: str = "inpaint"
) -> list[tuple[str, str]]:
    """Run ``jobs`` batch by batch in this process; return (job_id, status) per job."""
    done: list[tuple[str, str]] = []
    for batch in track_batches(jobs, batch_size, desc):
        done.extend((r["job_id"], r["status"]) for r in worker(batch))
    return done


def run_jobs(
    jobs: Sequence[Job],
    *,
    make_worker: Callable[[], Inpainter],
    image_root: str | os.PathLike,
    label_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    batch_size: int = 8,
    driver: str = "local",
    masks_table: str | os.PathLike | None = None,
    consolidate: bool = True,
    ray_concurrency: int = 1,
    ray_num_gpus: float | None = None,
    signature: dict[str, Any] | None = None,
    overwrite: bool = False,
    mask_region: str = "clothes",
) -> RunReport:
    """Run the jobs not yet committed in ``out_dir``, then consolidate the manifest.

    ``make_worker`` is a zero-argument (picklable, for Ray) callable returning the inpainter; it is
    called once per worker process / actor. ``masks_table`` (default ``label_root/masks.parquet``
    when present) lets sources flagged ``empty`` be skipped without reading them; other empty
    masks are detected and committed as skipped by the worker. ``signature``
    (:func:`inpaint_signature`) is checked against ``out_dir/signature.json`` before any work (see
    the module docstring; ``overwrite`` replaces outputs made with another one); without one nothing
    is checked or recorded.
    """
    if driver not in DRIVERS:
        raise ConfigError(f"unknown driver {driver!r}; known: {', '.join(DRIVERS)}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    jobs = list(jobs)
    ids = [j.job_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise InputError("the job list holds duplicate job ids")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    checked, sig_hash = "", ""
    worker: GenerationWorker | None = None
    if signature is not None:
        sig_hash = signature_hash(signature) or ""
        if overwrite and would_replace(out, signature):
            # build (load) the inpainter before removing anything: a bad model loses nothing
            if driver == "ray":
                probe = make_worker()
                del probe
                _free_memory()
            else:
                worker = GenerationWorker(make_worker, image_root=image_root, label_root=label_root, out_dir=out,
                                          signature=sig_hash, mask_region=mask_region)
        checked = _check_output_signature(out, signature, driver=driver, overwrite=overwrite)
    # torchrun ranks share the folder: only temps too old to belong to a live writer are removed.
    removed = remove_stale_temps(out, older_than=60.0 if driver == "torchrun" else None)
    if removed:
        log.info("removed %d stale temp file(s) from an interrupted run", removed)

    if masks_table is None and (Path(label_root) / MASKS_TABLE).is_file():
        masks_table = Path(label_root) / MASKS_TABLE
    empty_sources = read_empty_masks(masks_table) if masks_table else set()

    if driver == "torchrun":
        from dlcr.distributed.env import dist_env, shard

        env = dist_env()
        jobs_here = shard(jobs, env.rank, env.world_size)
    else:
        jobs_here = jobs
    committed = committed_job_ids(out)
    already = sum(j.job_id in committed for j in jobs)
    skipped = tuple(j.job_id for j in jobs_here if j.source in empty_sources and j.job_id not in committed)
    pending = [j for j in jobs_here if j.job_id not in committed and j.source not in empty_sources]
    if skipped:
        log.warning(
            "skipping %d job(s) whose source has an empty clothes mask (e.g. %s)",
            len(skipped),
            next(j.source for j in jobs_here if j.source in empty_sources),
        )
    log.info("%d planned, %d already committed, %d pending", len(jobs), already, len(pending))

    results: list[tuple[str, str]] = []
    if pending:
        if driver == "ray":
            from dlcr.distributed.ray_backend import run_with_ray

            results = run_with_ray(
                pending,
                worker_kwargs={
                    "make_inpainter": make_worker,
                    "image_root": str(image_root),
                    "label_root": str(label_root),
                    "out_dir": str(out),
                    "signature": sig_hash,
                    "mask_region": mask_region,
                },
                batch_size=batch_size,
                concurrency=ray_concurrency,
                num_gpus=ray_num_gpus,
            )
        else:
            if worker is None:
                worker = GenerationWorker(make_worker, image_root=image_root, label_root=label_root, out_dir=out,
                                          signature=sig_hash, mask_region=mask_region)
            results = run_local(worker, pending, batch_size)
    generated = sum(st == STATUS_OK for _, st in results)
    found_empty = tuple(jid for jid, st in results if st == STATUS_EMPTY)
    if found_empty:
        log.warning(
            "%d job(s) skipped: their source's clothes mask is empty (see %s)",
            len(found_empty),
            out / SKIPPED,
        )
    skipped = skipped + found_empty
    manifest = str(consolidate_manifest(out)) if consolidate else ""
    return RunReport(
        planned=len(jobs),
        already_committed=already,
        pending=len(pending),
        generated=generated,
        skipped_empty=skipped,
        removed_temps=removed,
        manifest=manifest,
        signature=checked,
    )


# ----------------------------------------------------------------------------- command line
def _parse_option(text: str) -> tuple[str, Any]:
    import yaml

    if "=" not in text:
        raise ConfigError(f"--option expects key=value, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), yaml.safe_load(value)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dlcr.generation.runner", description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", required=True, help="jobs.parquet written by plan")
    ap.add_argument("--image-root", required=True)
    ap.add_argument("--label-root", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--backend", default="recolor")
    ap.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="backend constructor argument (YAML value), repeatable",
    )
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--driver", choices=DRIVERS, default="local")
    ap.add_argument("--masks-table", default=None)
    ap.add_argument("--no-consolidate", action="store_true")
    ap.add_argument("--ray-concurrency", type=int, default=1)
    ap.add_argument("--mask-region", choices=MASK_REGIONS, default="clothes",
                    help="what may be repainted: the clothes (the paper) or the whole person (ablation)")
    ap.add_argument("--overwrite", action="store_true",
                    help="replace outputs in --out made with another generation signature")
    args = ap.parse_args(argv)
    try:
        options = dict(_parse_option(o) for o in args.option)
        INPAINTERS.get(args.backend)  # an unknown name fails now, not after the planning work
        make = functools.partial(create_inpainter, args.backend, **options)
        jobs = read_jobs(args.jobs)
        rep = run_jobs(
            jobs,
            make_worker=make,
            image_root=args.image_root,
            label_root=args.label_root,
            out_dir=args.out,
            batch_size=args.batch_size,
            driver=args.driver,
            masks_table=args.masks_table,
            consolidate=not args.no_consolidate,
            ray_concurrency=args.ray_concurrency,
            signature=inpaint_signature(args.backend, options, jobs, args.label_root, mask_region=args.mask_region),
            overwrite=args.overwrite,
            mask_region=args.mask_region,
        )
    except DlcrError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    where = ""
    if args.driver == "torchrun":
        from dlcr.distributed.env import dist_env

        env = dist_env()
        where = f"rank {env.rank}/{env.world_size}: "
    print(f"{where}{rep.summary()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
