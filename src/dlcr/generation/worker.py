"""The generation worker: loads the inpainter once, then generates, writes and commits batches of jobs.

Every driver of :func:`dlcr.generation.runner.run_jobs` runs its jobs through a
:class:`GenerationWorker`: the local and torchrun drivers in their own process (:func:`run_local`),
the ray driver (:mod:`dlcr.generation.ray_driver`) in each actor. Each batch is committed as one part
file of the output folder's table (:func:`~dlcr.generation.outputs.commit_part`, a
:class:`~dlcr.io.parts_table.PartsTable` part), so workers in many processes commit into one folder.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlcr.errors import ConfigError, DlcrError
from dlcr.generation.inpainting import Inpainter, InpaintItem
from dlcr.generation.outputs import (
    STATUS_EMPTY,
    STATUS_OK,
    GeneratedRecord,
    commit_part,
    label_path_for,
    output_relpath,
)
from dlcr.generation.planning import Job
from dlcr.io.images import read_label_map, read_rgb, write_png
from dlcr.io.paths import safe_join
from dlcr.lip import clothes_mask
from dlcr.utils.progress import track_batches

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


def run_local(
    worker: GenerationWorker, jobs: Sequence[Job], batch_size: int, desc: str = "inpaint"
) -> list[tuple[str, str]]:
    """Run ``jobs`` batch by batch in this process; return (job_id, status) per job."""
    done: list[tuple[str, str]] = []
    for batch in track_batches(jobs, batch_size, desc):
        done.extend((r["job_id"], r["status"]) for r in worker(batch))
    return done
