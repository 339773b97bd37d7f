"""The steps of :func:`dlcr.generation.runner.run_jobs` (see that module's docstring; its names are
re-exported there): the output folder's signature check before any work (building the inpainter
first when ``overwrite`` would remove outputs), the jobs left to run, and their dispatch to the
local / torchrun worker or to Ray actors.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dlcr.generation.inpainting import Inpainter
from dlcr.generation.outputs import committed_job_ids, read_empty_masks, remove_outputs
from dlcr.generation.parsing import MASKS_TABLE
from dlcr.generation.planning import Job
from dlcr.generation.signature_record import (
    check_signature,
    recorded_hash,
    signature_file,
    signature_hash,
    wait_for_signature,
)
from dlcr.generation.worker import GenerationWorker, run_local
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


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


def check_output(
    out: Path,
    signature: dict[str, Any],
    *,
    driver: str,
    overwrite: bool,
    make_worker: Callable[[], Inpainter],
    worker_kwargs: dict[str, Any],
) -> tuple[str, str, GenerationWorker | None]:
    """``(check result, signature hash, worker)``: ``signature`` checked (and recorded) for ``out``;
    when ``overwrite`` would remove outputs, the inpainter is built first (a bad model loses nothing)
    and, outside Ray, kept as the worker."""
    worker: GenerationWorker | None = None
    sig_hash = signature_hash(signature) or ""
    if overwrite and would_replace(out, signature):
        # build (load) the inpainter before removing anything: a bad model loses nothing
        if driver == "ray":
            probe = make_worker()
            del probe
            _free_memory()
        else:
            worker = GenerationWorker(make_worker, **worker_kwargs, signature=sig_hash)
    checked = _check_output_signature(out, signature, driver=driver, overwrite=overwrite)
    return checked, sig_hash, worker


def jobs_to_run(
    jobs: list[Job], out: Path, *, driver: str, label_root: str | os.PathLike, masks_table: str | os.PathLike | None
) -> tuple[int, tuple[str, ...], list[Job]]:
    """``(planned jobs already committed, job ids skipped for a known-empty mask, pending jobs)`` of this
    process (its torchrun shard)."""
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
    return already, skipped, pending


def dispatch(
    pending: Sequence[Job],
    *,
    driver: str,
    make_worker: Callable[[], Inpainter],
    worker: GenerationWorker | None,
    worker_kwargs: dict[str, Any],
    sig_hash: str,
    batch_size: int,
    ray_concurrency: int,
    ray_num_gpus: float | None,
) -> list[tuple[str, str]]:
    """Run ``pending`` with Ray actors or with ``worker`` (built now when None); ``(job id, status)``."""
    if driver == "ray":
        from dlcr.generation.ray_driver import run_with_ray

        return run_with_ray(
            pending,
            worker_kwargs={
                "make_inpainter": make_worker,
                "image_root": str(worker_kwargs["image_root"]),
                "label_root": str(worker_kwargs["label_root"]),
                "out_dir": str(worker_kwargs["out_dir"]),
                "signature": sig_hash,
                "mask_region": worker_kwargs["mask_region"],
            },
            batch_size=batch_size,
            concurrency=ray_concurrency,
            num_gpus=ray_num_gpus,
        )
    if worker is None:
        worker = GenerationWorker(make_worker, **worker_kwargs, signature=sig_hash)
    return run_local(worker, pending, batch_size)
