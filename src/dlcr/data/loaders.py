"""Torch datasets over :class:`~dlcr.types.Sample` lists and generated variants.

A training pool is a list of :class:`Item` records: the real training images first, then the
generated variants (each carrying its source's person id and, by default, clothes id -1 so that it
stays out of the clothes losses; docs/design.md §8). Samplers index into this pool.
:func:`make_eval_loader` builds the (unshuffled) loader that feature extraction runs over one split.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dlcr.io.images import read_pil_rgb
from dlcr.io.paths import safe_join
from dlcr.types import Sample


@dataclass(frozen=True)
class Item:
    """One image of a training or test pool."""

    path: str  # absolute, or relative to the pool's root
    pid: int
    camid: int
    clothes_id: int  # -1: not used by the clothes losses
    generated: bool = False
    source: int = -1  # for a generated item: index of its real source item in the pool
    variant: int = -1
    partition: int = -1
    frames: tuple[str, ...] = ()


def items_from_samples(samples: Sequence[Sample]) -> list[Item]:
    return [Item(path=s.path, pid=s.pid, camid=s.camid, clothes_id=s.clothes_id, frames=tuple(s.frames))
            for s in samples]


def add_generated(real: list[Item], manifest_rows: Sequence[dict[str, Any]], gen_root: str | os.PathLike,
                  *, target_clothes: dict[str, int] | None = None) -> tuple[list[Item], list[list[int]]]:
    """Append generated variants to a pool of real items.

    ``manifest_rows`` are rows of ``manifest.parquet`` (``source``, ``variant``, ``partition``,
    ``file``, ``target_clothes_key``). Returns the pool (real items first, unchanged) and, for each
    real index, the pool indices of its variants sorted by variant index. With ``target_clothes``
    (clothes key -> training clothes id) a variant takes its target outfit's clothes id; by default
    it takes -1 and stays out of the clothes losses.
    """
    # Files are resolved under ``gen_root`` now: absolute, so a relative work folder (the CLI's default
    # ``out/<dataset>``) is not later read relative to the dataset root, and a manifest row whose
    # file leaves ``gen_root`` (absolute, ``..``, symlink) is refused (UnsafePathError).
    by_path = {it.path: i for i, it in enumerate(real)}
    pool = list(real)
    variants: list[list[tuple[int, int]]] = [[] for _ in real]
    for row in sorted(manifest_rows, key=lambda r: (r["source"], int(r["variant"]))):
        src = by_path.get(row["source"])
        if src is None:
            continue  # a variant of an image that is not in this training pool
        cid = -1
        if target_clothes is not None:
            cid = int(target_clothes.get(row["target_clothes_key"], -1))
        base = real[src]
        pool.append(Item(path=str(safe_join(gen_root, row["file"])), pid=base.pid, camid=base.camid,
                         clothes_id=cid, generated=True, source=src, variant=int(row["variant"]),
                         partition=int(row.get("partition", 0))))
        variants[src].append((int(row["variant"]), len(pool) - 1))
    return pool, [[i for _, i in sorted(v)] for v in variants]


class ImageDataset(Dataset):
    """Reads pool items as tensors. Returns a dict: img, pid, camid, clothes_id, generated, index."""

    def __init__(self, items: Sequence[Item], root: str | os.PathLike, transform: Callable[[Any], Any],
                 cache_hw: tuple[int, int] | None = None):
        """``cache_hw=(H, W)``: keep every image decoded and resized to the network input in memory
        (uint8, 3·H·W bytes each) so later epochs skip PNG/JPEG decoding and the resize; for datasets
        that fit in RAM. Each loader worker process holds its own cache."""
        self.items = list(items)
        self.root = Path(root)
        self.transform = transform
        self.cache_hw = cache_hw
        self._cache: dict[str, torch.Tensor] = {}

    def _load(self, p: str) -> Any:
        if self.cache_hw is None:
            return read_pil_rgb(self._path(p))
        hit = self._cache.get(p)
        if hit is None:
            from torchvision.transforms.v2 import functional as TF

            arr = np.asarray(read_pil_rgb(self._path(p)))
            t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
            hit = TF.resize(t, list(self.cache_hw), antialias=True)
            self._cache[p] = hit
        return hit

    def __len__(self) -> int:
        return len(self.items)

    def _path(self, p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else self.root / q

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        if it.frames:
            raise TypeError("ImageDataset got a tracklet; use ClipDataset for video datasets")
        img = self.transform(self._load(it.path))
        return {"img": img, "pid": it.pid, "camid": it.camid, "clothes_id": it.clothes_id,
                "generated": it.generated, "index": index}


class ClipDataset(ImageDataset):
    """Video items: ``seq_len`` frames per clip (evenly strided over the tracklet, C2D style)."""

    def __init__(self, items: Sequence[Item], root: str | os.PathLike, transform: Callable[[Any], Any],
                 seq_len: int = 4, cache_hw: tuple[int, int] | None = None):
        super().__init__(items, root, transform, cache_hw)
        self.seq_len = seq_len

    def __getitem__(self, index: int) -> dict[str, Any]:
        it = self.items[index]
        frames = it.frames or (it.path,)
        pick = np.linspace(0, len(frames) - 1, self.seq_len).round().astype(int)
        clip = torch.stack([self.transform(self._load(frames[i])) for i in pick])
        return {"img": clip, "pid": it.pid, "camid": it.camid, "clothes_id": it.clothes_id,
                "generated": it.generated, "index": index}


def make_dataset(items: Sequence[Item], root: Path, transform: Any, video: bool, seq_len: int,
                 cache_hw: tuple[int, int] | None = None) -> ImageDataset:
    if video:
        return ClipDataset(items, root, transform, seq_len=seq_len, cache_hw=cache_hw)
    return ImageDataset(items, root, transform, cache_hw=cache_hw)


def make_eval_loader(samples: Sequence[Sample], root: Path, *, height: int, width: int, batch_size: int,
                     workers: int, video: bool = False, seq_len: int = 4,
                     interpolation: str = "bilinear") -> DataLoader:
    from dlcr.data.transforms import build_transforms

    tf = build_transforms(height, width, train=False, interpolation=interpolation)  # type: ignore[arg-type]
    ds = make_dataset(items_from_samples(samples), root, tf, video, seq_len)
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers,
                      pin_memory=torch.cuda.is_available())
