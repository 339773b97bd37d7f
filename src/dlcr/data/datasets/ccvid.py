"""CCVID (Gu et al., CVPR 2022): video tracklets, ``CCVID/{train,query,gallery}.txt``.

Each list line is ``<session>/<folder> <pid> <clothes label>``; the tracklet's frames are the
images in ``CCVID/<session>/<folder>/`` (sorted). The folder name is ``<x>_<cam>``; as in the
established CAL code cameras of ``session3`` are numbered after the 12 of the other sessions
(``cam + 12``), because the same number denotes another camera there. One sample per tracklet:
``path`` is the tracklet folder, ``frames`` its frame files, ``tracklet`` the line's index in
its list file. The outfit key joins person and clothes label (``"001_2"``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from dlcr.data.datasets.base import (
    DATASETS,
    STANDARD_SC_CC,
    CCReIDDataset,
    Record,
    finish,
    relabel_test,
    relabel_train,
)
from dlcr.data.datasets.files import Rejects, find_base, list_images, rel, require_nonempty
from dlcr.errors import DatasetError, UnsafePathError
from dlcr.io.paths import safe_join
from dlcr.utils.progress import track

LAYOUT = "<root>/CCVID/{train,query,gallery}.txt with lines '<session>/<folder> <pid> <clothes>'"
FOLDER_RE = re.compile(r"^[^_]+_(?P<cam>\d+)(?:_.*)?$")
SESSION3_OFFSET = 12


def camera_of(tracklet_path: str) -> int | None:
    """Session-aware camera id of ``<session>/<x>_<cam>``, or None if the folder name breaks the pattern."""
    parts = PurePosixPath(tracklet_path).parts
    m = FOLDER_RE.match(parts[-1]) if parts else None
    if not m:
        return None
    cam = int(m["cam"])
    return cam + SESSION3_OFFSET if len(parts) > 1 and parts[0] == "session3" else cam


def _parse(root: Path, base: Path, split: str, rejects: Rejects) -> list[Record]:
    lst = base / f"{split}.txt"
    lines = [(no, ln.split()) for no, ln in enumerate(lst.read_text(encoding="utf-8").splitlines(), 1) if ln.strip()]
    require_nonempty(lines, lst, LAYOUT)
    recs: list[Record] = []
    for index, (no, fields) in enumerate(track(lines, desc=f"ccvid {split}", unit="tracklet")):
        if len(fields) != 3 or not fields[1].isdigit():
            raise DatasetError(f"{lst}:{no}: expected '<session>/<folder> <pid> <clothes>', got {' '.join(fields)!r}")
        tpath, pid_s, clothes = fields
        try:
            safe_join(base, tpath)
        except UnsafePathError as e:
            raise DatasetError(f"{lst}:{no}: {e}") from None
        folder = base / tpath
        cam = camera_of(tpath)
        if cam is None:
            rejects(rel(root, folder), "a tracklet folder named <session>/<x>_<cam>")
            continue
        frames = list_images(folder) if folder.is_dir() else []
        if not frames:
            rejects(rel(root, folder), f"a tracklet folder with frames (listed in {split}.txt)")
            continue
        pid = int(pid_s)
        recs.append(Record(path=rel(root, folder), pid=pid, camid=cam, clothes_key=f"{pid:03d}_{clothes}",
                           tracklet=index, frames=tuple(rel(root, f) for f in frames)))
    return recs


@DATASETS.register("ccvid")
def load_ccvid(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    root_p, base = find_base(root, "CCVID", [], LAYOUT)
    for split in ("train", "query", "gallery"):
        if not (base / f"{split}.txt").is_file():
            raise DatasetError(f"missing list {base / f'{split}.txt'}; expected {LAYOUT}")
    rejects = Rejects("ccvid", strict)
    splits = {"train": relabel_train(_parse(root_p, base, "train", rejects))}
    splits.update(relabel_test({"query": _parse(root_p, base, "query", rejects),
                                "gallery": _parse(root_p, base, "gallery", rejects)}))
    return finish("ccvid", root_p, splits, rejects, protocols=STANDARD_SC_CC, video=True,
                  check_images=check_images)
