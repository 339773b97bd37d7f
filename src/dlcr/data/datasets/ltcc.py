"""LTCC (Qian et al., ACCV 2020): ``LTCC_ReID/{train,query,test}/<pid>_<clothes>_c<cam>_<frame>.png``.

``test`` is the gallery. The clothes number in a file name counts a person's outfits, so the
outfit key joins it with the person id (``"012_3"``). Camera numbers start at 1 on disk and at 0
here, as in the established CAL code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from dlcr.data.datasets.base import (
    DATASETS,
    STANDARD_SC_CC,
    CCReIDDataset,
    Record,
    finish,
    relabel_test,
    relabel_train,
)
from dlcr.data.datasets.files import Rejects, find_base, named_images

NAME_RE = re.compile(r"^(?P<pid>\d+)_(?P<clothes>\d+)_c(?P<cam>\d+)(?:_[^.]*)?\.(?:png|jpe?g|bmp)$", re.IGNORECASE)
NAME_TEXT = "<pid>_<clothes>_c<cam>_<frame>.png"

#: split name -> folder name
FOLDERS = {"train": "train", "query": "query", "gallery": "test"}


def clothes_key(pid: int, clothes: str) -> str:
    return f"{pid:03d}_{int(clothes)}"


def parse_ltcc_name(name: str) -> tuple[int, int, str] | None:
    """(pid, camid counted from 0, clothes key) from an LTCC-style file name, or None."""
    m = NAME_RE.match(name)
    if not m:
        return None
    pid = int(m["pid"])
    return pid, int(m["cam"]) - 1, clothes_key(pid, m["clothes"])


def load_ltcc_layout(root: str | os.PathLike, *, name: str, top: str, strict: bool = True,
                     check_images: bool = False) -> CCReIDDataset:
    """Parse any dataset in the LTCC layout under ``root/top`` (used by LTCC and synthcc)."""
    layout = f"<root>/{top}/{{train,query,test}}/{NAME_TEXT}"
    root_p, base = find_base(root, top, list(FOLDERS.values()), layout)
    rejects = Rejects(name, strict)
    parsed: dict[str, list[Record]] = {}
    for split, folder in FOLDERS.items():
        named = named_images(root_p, base / folder, rejects, parse_ltcc_name, name_text=NAME_TEXT, layout=layout,
                             desc=f"{name} {split}")
        parsed[split] = [Record(path=r, pid=pid, camid=camid, clothes_key=key) for r, (pid, camid, key) in named]
    splits = {"train": relabel_train(parsed["train"])}
    splits.update(relabel_test({"query": parsed["query"], "gallery": parsed["gallery"]}))
    return finish(name, root_p, splits, rejects, protocols=STANDARD_SC_CC, check_images=check_images)


@DATASETS.register("ltcc")
def load_ltcc(root: str | os.PathLike | Path, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    return load_ltcc_layout(root, name="ltcc", top="LTCC_ReID", strict=strict, check_images=check_images)
