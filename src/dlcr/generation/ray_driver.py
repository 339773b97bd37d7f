"""The Ray Data driver of the generation runner (the only module of dlcr that imports ray).

The pending jobs become a Ray dataset; ``map_batches`` runs them through a pool of
``concurrency`` actors, each holding one :class:`~dlcr.generation.worker.GenerationWorker` (model
loaded once per actor, one GPU per actor when CUDA is available). Each actor writes and commits its
own batches exactly like the local driver, so resumption is owned by the project's committed job
ids (the part files of :mod:`dlcr.io.parts_table`), never by Ray's checkpointing: a run cut short is
resumed by running the pending jobs again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from dlcr.generation.planning import Job
from dlcr.generation.worker import GenerationWorker


class RayGenerationActor:
    """Ray Data callable class: build the worker once, then generate + commit each batch."""

    def __init__(self, **worker_kwargs: Any):
        self.worker = GenerationWorker(**worker_kwargs)

    def __call__(self, batch: pa.Table) -> pa.Table:
        jobs = [Job.from_dict(r) for r in batch.to_pylist()]
        rows = self.worker(jobs)
        return pa.table({"job_id": [r["job_id"] for r in rows], "status": [r["status"] for r in rows]})


def _default_gpus() -> float:
    try:
        import torch

        return 1.0 if torch.cuda.is_available() else 0.0
    except ImportError:  # pragma: no cover
        return 0.0


def run_with_ray(
    jobs: Sequence[Job],
    *,
    worker_kwargs: dict[str, Any],
    batch_size: int = 8,
    concurrency: int = 1,
    num_gpus: float | None = None,
    ray_init_kwargs: dict[str, Any] | None = None,
) -> list[tuple[str, str]]:
    """Generate ``jobs`` on Ray; return (job_id, status) of every job the actors committed.

    Uses the running Ray instance (``ray.init`` is called with ``ray_init_kwargs`` only when none
    is running, e.g. ``{"address": "auto"}`` for a cluster).
    """
    import ray

    if not ray.is_initialized():
        ray.init(**(ray_init_kwargs or {}))
    if not jobs:
        return []
    gpus = _default_gpus() if num_gpus is None else float(num_gpus)
    ds = ray.data.from_items([j.to_dict() for j in jobs])
    out = ds.map_batches(
        RayGenerationActor,
        fn_constructor_kwargs=worker_kwargs,
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=max(1, int(concurrency)),
        num_gpus=gpus,
        num_cpus=0 if gpus else 1,
    )
    results: list[tuple[str, str]] = []
    for b in out.iter_batches(batch_format="pyarrow", batch_size=None):
        results.extend(zip(b.column("job_id").to_pylist(), b.column("status").to_pylist(), strict=True))
    return results
