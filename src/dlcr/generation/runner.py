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
atomically under a file lock) and deletes the parts it merged. The folder's files and commits live in
:mod:`dlcr.generation.outputs`, the worker in :mod:`dlcr.generation.worker`, the steps of :func:`run_jobs`
in :mod:`dlcr.generation.runner_steps`.

Drivers: ``local`` (one process), ``torchrun`` (each rank takes the static share
``planned[rank::world]`` and skips what is committed; no coordination between ranks is needed, and
each rank consolidates under the lock when it finishes, so the last one leaves the full manifest),
``ray`` (Ray Data ``map_batches`` over an actor pool, see ``dlcr.generation.ray_driver``).

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

Command line (used by tests and by ``torchrun``; :mod:`dlcr.cli.run_jobs`)::

    dlcr generate run-jobs --jobs jobs.parquet --image-root R --label-root L --out O \
        [--backend recolor] [--option key=value ...] [--batch-size 8] [--driver local|torchrun|ray] \
        [--mask-region clothes|person] [--overwrite]
    torchrun --nproc_per_node=N -m dlcr generate run-jobs ... --driver torchrun
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcr.errors import ConfigError, InputError
from dlcr.generation.inpainters import INPAINTERS
from dlcr.generation.inpainting import Inpainter
from dlcr.generation.outputs import SKIPPED, STATUS_EMPTY, STATUS_OK, consolidate_manifest
from dlcr.generation.planning import Job
from dlcr.generation.runner_steps import check_output, dispatch, jobs_to_run
from dlcr.generation.signature import backend_signature
from dlcr.generation.signature_record import recorded_hash, stable_hash
from dlcr.generation.worker import GenerationWorker, check_mask_region
from dlcr.io.atomic import remove_stale_temps
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

DRIVERS = ("local", "torchrun", "ray")


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
    worker_kwargs = {"image_root": image_root, "label_root": label_root, "out_dir": out, "mask_region": mask_region}
    checked, sig_hash = "", ""
    worker: GenerationWorker | None = None
    if signature is not None:
        checked, sig_hash, worker = check_output(out, signature, driver=driver, overwrite=overwrite,
                                                 make_worker=make_worker, worker_kwargs=worker_kwargs)
    # torchrun ranks share the folder: only temps too old to belong to a live writer are removed.
    removed = remove_stale_temps(out, older_than=60.0 if driver == "torchrun" else None)
    if removed:
        log.info("removed %d stale temp file(s) from an interrupted run", removed)

    already, skipped, pending = jobs_to_run(jobs, out, driver=driver, label_root=label_root, masks_table=masks_table)
    results: list[tuple[str, str]] = []
    if pending:
        results = dispatch(pending, driver=driver, make_worker=make_worker, worker=worker,
                           worker_kwargs=worker_kwargs, sig_hash=sig_hash, batch_size=batch_size,
                           ray_concurrency=ray_concurrency, ray_num_gpus=ray_num_gpus)
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
