"""Helpers of the reliability suite (imported by its conftest and tests as ``relia_util``)."""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

H, W = 64, 32
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    """Environment of a ``python -m dlcr`` subprocess: quiet, offline, one thread, this checkout first."""
    env = {**os.environ, "DLCR_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


PYTHON = sys.executable


def data_sets(root: Path) -> list[str]:
    """``--set`` arguments for the tiny world at ``root`` (64x32, no workers)."""
    return ["--set", f"data.root={root}", "--set", f"data.height={H}", "--set", f"data.width={W}",
            "--set", "data.workers=0"]


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under ``folder`` (to prove nothing was lost or changed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def clone(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def replan(world: Path, work: Path, backend: str) -> None:
    """Re-plan ``work`` (a copy of the shared recolor-planned folder) for ``backend``: a plan is made
    for one backend (its job ids hold the backend's name) and inpainting refuses another's plan."""
    from dlcr.data.datasets import create_dataset
    from dlcr.generation import stages

    ds = create_dataset("synthcc", world)
    stages.run_plan(ds.train, work, k=2, seed=0, allow_same_person=False, num_partitions=2, dataset="synthcc",
                    generator=backend, overwrite=True)
