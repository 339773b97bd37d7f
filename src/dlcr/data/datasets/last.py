"""LaST (Shu et al., TCSVT 2022): person images from movies, ``<pid>_..._<clothes>.jpg``.

Layout (as in the official loader and the established CAL code)::

    last/train/<pid>/*.jpg
    last/val/query/*.jpg        last/val/gallery/<pid>/*.jpg      (optional)
    last/test/query/*.jpg       last/test/gallery/<pid>/*.jpg

Images may also sit directly in these folders. The file name's fields are separated by ``_``:
the first is the person id, the last the clothes label. LaST labels clothes on the training split
only, so every test/val image of a person gets the one outfit key ``"<pid>_unlabelled"`` (the
benchmark is scored with the standard rule, where clothes do not matter).

LaST has no camera ids (frames come from films): as in the established code every image is its
own camera, numbered by its sorted position, and gallery numbers continue after the query's, so
no query/gallery pair is ever "same camera" and nothing is excluded as junk.
"""

from __future__ import annotations

import os
import re

from dlcr.data.datasets.base import (
    DATASETS,
    STANDARD_ONLY,
    CCReIDDataset,
    Record,
    finish,
    relabel_test,
    relabel_train,
)
from dlcr.data.datasets.files import Rejects, find_base, named_images

NAME_RE = re.compile(r"^(?P<pid>\d+)_(?:.*_)?(?P<clothes>[^_.]+)\.(?:jpe?g|png|bmp)$", re.IGNORECASE)
NAME_TEXT = "<pid>_..._<clothes>.jpg"
LAYOUT = "<root>/last/{train,val/query,val/gallery,test/query,test/gallery}/[<pid>/]<pid>_..._<clothes>.jpg"


def parse_last_name(name: str) -> tuple[int, str] | None:
    """(pid, clothes label) or None."""
    m = NAME_RE.match(name)
    return (int(m["pid"]), m["clothes"]) if m else None


def _parse(root, folder, rejects: Rejects, desc: str, *, first_cam: int, train: bool) -> list[Record]:
    named = named_images(root, folder, rejects, parse_last_name, name_text=NAME_TEXT, layout=LAYOUT, desc=desc, depth=1)
    return [Record(path=r, pid=pid, camid=first_cam + i,
                   clothes_key=f"{pid:03d}_{clothes}" if train else f"{pid:03d}_unlabelled")
            for i, (r, (pid, clothes)) in enumerate(named)]


@DATASETS.register("last")
def load_last(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    root_p, base = find_base(root, "last", ["train", "test/query", "test/gallery"], LAYOUT)
    rejects = Rejects("last", strict)
    splits = {"train": relabel_train(_parse(root_p, base / "train", rejects, "last train", first_cam=0, train=True))}
    pairs = [("query", "gallery", base / "test")]
    if (base / "val" / "query").is_dir() and (base / "val" / "gallery").is_dir():
        pairs.append(("val_query", "val_gallery", base / "val"))
    for q_name, g_name, folder in pairs:
        q = _parse(root_p, folder / "query", rejects, f"last {q_name}", first_cam=0, train=False)
        g = _parse(root_p, folder / "gallery", rejects, f"last {g_name}", first_cam=len(q), train=False)
        splits.update(relabel_test({q_name: q, g_name: g}))
    return finish("last", root_p, splits, rejects, protocols=STANDARD_ONLY, check_images=check_images)
