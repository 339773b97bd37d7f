"""CC-ReID benchmarks: one parser per dataset, all behind :func:`create_dataset`.

>>> ds = create_dataset("ltcc", "/data")          # reads /data/LTCC_ReID/...
>>> ds.train[0].path, ds.num_train_pids, ds.pid2clothes.shape

Every parser follows the benchmark's public layout and naming as the established CC-ReID code
(CAL, Gu et al. CVPR 2022) reads them; see each module's docstring.
"""

from __future__ import annotations

import inspect
import os

from dlcr.data.datasets import ccvid, custom, deepchange, last, ltcc, prcc, synthcc, vcclothes  # noqa: F401
from dlcr.data.datasets.base import (
    DATASETS,
    CCReIDDataset,
    dataset_from_samples,
    read_samples,
    split_stats,
    verify_images,
    write_samples,
)
from dlcr.errors import DatasetError


def dataset_names() -> list[str]:
    return DATASETS.names()


def create_dataset(name: str, root: str | os.PathLike, *, strict: bool = True, **kwargs) -> CCReIDDataset:
    """Parse dataset ``name`` under ``root`` (the folder containing its usual top folder).

    Options: ``check_images=True`` decodes every image and fails on unreadable ones;
    ``csv=`` (custom only) the CSV describing the images.
    """
    factory = DATASETS.get(name)
    params = inspect.signature(factory).parameters
    unknown = sorted(k for k in kwargs if k not in params)
    if unknown:
        known = sorted(k for k, p in params.items() if p.kind is p.KEYWORD_ONLY and k != "strict")
        raise DatasetError(f"dataset {name!r} does not take {', '.join(unknown)}; options: {', '.join(known)}")
    return factory(root, strict=strict, **kwargs)


__all__ = [
    "DATASETS", "CCReIDDataset", "create_dataset", "dataset_from_samples", "dataset_names", "read_samples",
    "split_stats", "verify_images", "write_samples",
]
