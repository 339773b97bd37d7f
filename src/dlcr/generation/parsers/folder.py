"""Precomputed label maps: any folder mirroring the image tree, and the synthcc ground truth."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, UnidentifiedImageError

from dlcr.errors import DatasetError, ImageError, InputError
from dlcr.generation.parsing import HumanParser, label_path
from dlcr.io.images import read_label_map
from dlcr.io.paths import safe_join
from dlcr.lip import label_table


def image_size(path: str | os.PathLike) -> tuple[int, int]:
    """(height, width) of an image file, read from its header only."""
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image not found: {p}")
    try:
        with Image.open(p) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot read image {p}: {e}") from None
    return int(h), int(w)


class FolderParser(HumanParser):
    """Reads label maps that were computed elsewhere.

    The label map of image ``<root>/<rel_path>`` is ``<labels_dir>/<rel_path with .png suffix>``
    (a single-channel PNG of the same size as the image). ``label_set="atr"`` converts ATR label
    maps to LIP ids on reading.
    """

    name = "folder"

    def __init__(self, labels_dir: str | os.PathLike, *, label_set: str = "lip", batch_size: int = 64):
        self.labels_dir = Path(labels_dir)
        self.label_set = label_set
        self.table = label_table(label_set)
        self.batch_size = int(batch_size)

    @property
    def description(self) -> str:
        return f"{self.name}:{self.labels_dir}"

    def label_file(self, rel_path: str, root: str | os.PathLike) -> Path:
        """The label-map file of image ``rel_path`` (relative to the dataset ``root``)."""
        return label_path(self.labels_dir, rel_path)

    def parse(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise InputError(
            f"the {self.name!r} parser reads precomputed label maps by image path; "
            "call parse_files(rel_paths, root) instead of parse(images)"
        )

    def read(self, rel_path: str, root: str | os.PathLike) -> np.ndarray:
        """The LIP label map of one image, checked against the image's size."""
        lp = self.label_file(rel_path, root)
        if not lp.is_file():
            raise ImageError(f"no label map for {rel_path!r}: {lp} does not exist")
        labels = read_label_map(lp)
        h, w = image_size(safe_join(root, rel_path, lexical=True))
        if labels.shape != (h, w):
            raise ImageError(
                f"label map {lp} is {labels.shape[1]}x{labels.shape[0]} but image {rel_path!r} is {w}x{h}"
            )
        if labels.size and int(labels.max()) >= self.table.size:
            raise ImageError(
                f"label map {lp} holds label {int(labels.max())}, outside the {self.label_set!r} "
                f"label set (0..{self.table.size - 1})"
            )
        return self.table[labels]

    def parse_files(self, rel_paths: Sequence[str], root: str | os.PathLike) -> list[np.ndarray]:
        return [self.read(p, root) for p in rel_paths]


class SynthCCParser(FolderParser):
    """Ground-truth label maps of the synthetic world.

    The world writes the label map of ``<root>/synthcc/<split>/<file>.png`` to
    ``<root>/synthcc/masks/<split>/<file>.png``; image paths are relative to ``root`` (the folder
    that contains ``synthcc/``).
    """

    name = "synthcc"

    def __init__(self, *, batch_size: int = 64):
        super().__init__(".", label_set="lip", batch_size=batch_size)

    @property
    def description(self) -> str:
        return self.name

    def label_file(self, rel_path: str, root: str | os.PathLike) -> Path:
        parts = PurePosixPath(str(rel_path).replace("\\", "/")).parts
        if len(parts) < 3 or parts[0] != "synthcc" or parts[1] == "masks":
            raise DatasetError(
                f"{rel_path!r} is not a synthcc image path (expected synthcc/<split>/<file>, "
                "relative to the folder that contains synthcc/)"
            )
        return label_path(Path(root) / "synthcc" / "masks", str(PurePosixPath(*parts[1:])))
