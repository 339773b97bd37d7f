"""synthcc, the procedural world of :mod:`dlcr.synth`: LTCC layout under ``synthcc/``.

``synthcc/{train,query,test}/<pid>_<clothes>_c<cam>_<frame>.png`` (``test`` = gallery); the
ground-truth label maps in ``synthcc/masks/`` are not samples and are ignored.
"""

from __future__ import annotations

import os

from dlcr.data.datasets.base import DATASETS, CCReIDDataset
from dlcr.data.datasets.ltcc import load_ltcc_layout


@DATASETS.register("synthcc")
def load_synthcc(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    return load_ltcc_layout(root, name="synthcc", top="synthcc", strict=strict, check_images=check_images)
