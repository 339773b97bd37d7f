"""DeepChange (Xu & Zhu, ICCV 2023): 17 outdoor cameras over a year; clothes change between days.

Layout (as parsed by the established CAL code)::

    DeepChangeDataset/{train-set,val-set-query,val-set-gallery,test-set-query,test-set-gallery}/
        P<pid>_C<cam>_<day>_<hour>_....jpg
    DeepChangeDataset/<folder>-bbox.txt      lines "<image name>,<tracklet id>"

The outfit key is person + day (``names[0] + names[2]`` in CAL): a person's clothes are taken
to be fixed within a day. The benchmark lets a true match come from the same camera when it is
another tracklet, so - as in the established code - the tracklet id (from the list file) is used
as the camera id. Without a list file the folder is scanned and the camera id is used instead
(a stricter protocol), with a warning. The val splits are optional.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlcr.data.datasets.base import (
    DATASETS,
    STANDARD_ONLY,
    CCReIDDataset,
    Record,
    finish,
    relabel_test,
    relabel_train,
)
from dlcr.data.datasets.files import Rejects, find_base, is_image, list_images, rel, require_nonempty
from dlcr.errors import DatasetError, UnsafePathError
from dlcr.io.paths import safe_join
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

log = get_logger("dlcr.data.datasets")

NAME_RE = re.compile(
    r"^[A-Za-z](?P<pid>\d+)_[A-Za-z](?P<cam>\d+)_(?P<day>[^_.]+)(?:_[^/]*)?\.(?:jpe?g|png|bmp)$", re.IGNORECASE
)
NAME_TEXT = "P<pid>_C<cam>_<day>_<hour>_....jpg"
LAYOUT = ("<root>/DeepChangeDataset/{train-set,val-set-query,val-set-gallery,test-set-query,test-set-gallery}/"
          f"{NAME_TEXT} (+ <folder>-bbox.txt lists)")


def parse_deepchange_name(name: str) -> tuple[int, int, str] | None:
    """(pid, camera, clothes key) or None."""
    m = NAME_RE.match(name)
    if not m:
        return None
    pid = int(m["pid"])
    return pid, int(m["cam"]), f"{pid:04d}_{m['day']}"


def _listed(base: Path, folder: str) -> list[tuple[Path, int]] | None:
    """(image path, tracklet id) from ``<folder>-bbox.txt``; None when there is no list file."""
    lst = base / f"{folder}-bbox.txt"
    if not lst.is_file():
        return None
    out: list[tuple[Path, int]] = []
    for no, line in enumerate(lst.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        name, _, tracklet = line.rpartition(",")
        if not name or not tracklet.strip().lstrip("-").isdigit():
            raise DatasetError(f"{lst}:{no}: expected '<image name>,<tracklet id>', got {line[:80]!r}")
        try:
            safe_join(base / folder, name.strip())  # refuse names leaving the folder
        except UnsafePathError as e:
            raise DatasetError(f"{lst}:{no}: {e}") from None
        out.append((base / folder / name.strip(), int(tracklet)))
    return out


def _parse(root: Path, base: Path, folder: str, rejects: Rejects, desc: str) -> list[Record]:
    listed = _listed(base, folder)
    if listed is None:
        log.warning("deepchange: %s-bbox.txt not found; using camera ids instead of tracklet ids for %s",
                    folder, folder)
        listed = [(f, -1) for f in list_images(base / folder)]
    require_nonempty(listed, base / folder, LAYOUT)
    recs: list[Record] = []
    for path, tracklet in track(listed, desc=desc, unit="img"):
        r = rel(root, path)
        got = parse_deepchange_name(path.name) if is_image(path.name) else None
        if got is None:
            rejects(r, NAME_TEXT)
            continue
        if tracklet >= 0 and not path.is_file():
            rejects(r, f"an image listed in {folder}-bbox.txt that exists")
            continue
        pid, cam, key = got
        recs.append(Record(path=r, pid=pid, camid=tracklet if tracklet >= 0 else cam, clothes_key=key,
                           tracklet=tracklet))
    return recs


@DATASETS.register("deepchange")
def load_deepchange(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    root_p, base = find_base(root, "DeepChangeDataset", ["train-set", "test-set-query", "test-set-gallery"],
                             LAYOUT)
    rejects = Rejects("deepchange", strict)
    splits = {"train": relabel_train(_parse(root_p, base, "train-set", rejects, "deepchange train"))}
    pairs = [("query", "gallery", "test-set")]
    if (base / "val-set-query").is_dir() and (base / "val-set-gallery").is_dir():
        pairs.append(("val_query", "val_gallery", "val-set"))
    for q_name, g_name, prefix in pairs:
        q = _parse(root_p, base, f"{prefix}-query", rejects, f"deepchange {q_name}")
        g = _parse(root_p, base, f"{prefix}-gallery", rejects, f"deepchange {g_name}")
        splits.update(relabel_test({q_name: q, g_name: g}))
    return finish("deepchange", root_p, splits, rejects, protocols=STANDARD_ONLY, check_images=check_images)
