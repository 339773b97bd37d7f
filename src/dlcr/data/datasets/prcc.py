"""PRCC (Yang et al., TPAMI 2019): three cameras; A and B see the same clothes, C other clothes.

Layout (as parsed by the established CAL code)::

    prcc/rgb/train/<pid>/<A|B|C>_*.jpg        camera = first letter of the file name
    prcc/rgb/val/<pid>/<A|B|C>_*.jpg          (optional)
    prcc/rgb/test/{A,B,C}/<pid>/*.jpg         camera = the A/B/C folder

The person id is the name of the image's own folder. Outfit keys: ``"<pid>_AB"`` for cameras A
and B, ``"<pid>_C"`` for camera C, on every split (training clothes ids follow the same rule).
Test splits: ``gallery`` = camera A, ``query_same`` = B (same clothes), ``query_diff`` = C
(clothes changed); both protocols use the standard rule (docs/design.md §8). The optional ``val`` folder
(3 ids, 18 images in the release) is split the way the test set is, for the clothes-changing case
that PRCC is ranked by: ``val_gallery`` = camera A, ``val_query`` = camera C. It keeps the dataset's
person ids, like the test splits, and the trainer selects ``best`` on it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlcr.data.datasets.base import DATASETS, CCReIDDataset, Record, finish, relabel_test, relabel_train
from dlcr.data.datasets.files import Rejects, find_base, list_dirs, list_images, rel, require_nonempty
from dlcr.types import EvalProtocol
from dlcr.utils.progress import track

LAYOUT = "<root>/prcc/rgb/train/<pid>/<A|B|C>_*.jpg and <root>/prcc/rgb/test/{A,B,C}/<pid>/*.jpg"
CAMS = {"A": 0, "B": 1, "C": 2}
TRAIN_NAME_RE = re.compile(r"^([ABC])(?![A-Za-z])")  # "A_cropped_rgb001.jpg": camera letter first
PID_RE = re.compile(r"^\d+$")
TEST_SPLITS = {"A": "gallery", "B": "query_same", "C": "query_diff"}
PROTOCOLS = (
    EvalProtocol("sc", "query_same", "gallery", "standard"),
    EvalProtocol("cc", "query_diff", "gallery", "standard"),
)


def clothes_key(pid: int, cam: str) -> str:
    return f"{pid:03d}_{'C' if cam == 'C' else 'AB'}"


def _parse_train_dir(root: Path, folder: Path, rejects: Rejects, desc: str) -> list[Record]:
    recs: list[Record] = []
    pdirs = list_dirs(folder)
    for pdir in track(pdirs, desc=desc, unit="id"):
        if not PID_RE.match(pdir.name):
            rejects(rel(root, pdir) + "/", "a numeric person folder <pid>/")
            continue
        pid = int(pdir.name)
        for f in list_images(pdir):
            m = TRAIN_NAME_RE.match(f.name)
            if not m:
                rejects(rel(root, f), "<A|B|C>_*.jpg")
                continue
            cam = m.group(1)
            recs.append(Record(path=rel(root, f), pid=pid, camid=CAMS[cam], clothes_key=clothes_key(pid, cam)))
    return recs


@DATASETS.register("prcc")
def load_prcc(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    root_p, base = find_base(root, "prcc", ["rgb/train", "rgb/test/A", "rgb/test/B", "rgb/test/C"], LAYOUT)
    rgb = base / "rgb"
    rejects = Rejects("prcc", strict)

    train = _parse_train_dir(root_p, rgb / "train", rejects, "prcc train")
    require_nonempty(train, rgb / "train", LAYOUT)
    splits = {"train": relabel_train(train)}

    test: dict[str, list[Record]] = {}
    for cam, split in TEST_SPLITS.items():
        recs: list[Record] = []
        for pdir in track(list_dirs(rgb / "test" / cam), desc=f"prcc {split}", unit="id"):
            if not PID_RE.match(pdir.name):
                rejects(rel(root_p, pdir) + "/", "a numeric person folder <pid>/")
                continue
            pid = int(pdir.name)
            recs.extend(Record(path=rel(root_p, f), pid=pid, camid=CAMS[cam], clothes_key=clothes_key(pid, cam))
                        for f in list_images(pdir))
        require_nonempty(recs, rgb / "test" / cam, LAYOUT)
        test[split] = recs
    splits.update(relabel_test({"query_same": test["query_same"], "query_diff": test["query_diff"],
                                "gallery": test["gallery"]}))

    if (rgb / "val").is_dir():
        val = _parse_train_dir(root_p, rgb / "val", rejects, "prcc val")
        query = [r for r in val if r.camid == CAMS["C"]]
        gallery = [r for r in val if r.camid == CAMS["A"]]
        if query and gallery:  # a val folder without both cameras cannot rank anything
            splits.update(relabel_test({"val_query": query, "val_gallery": gallery}))
    return finish("prcc", root_p, splits, rejects, protocols=PROTOCOLS, check_images=check_images)
