"""VC-Clothes (Wang et al., CVPRW 2020): ``VC-Clothes/{train,query,gallery}/<pid>-<cam>-<clothes>-<frame>.jpg``.

Four virtual cameras. Following the established CAL code, two camera subsets of the test splits
are benchmarks of their own: ``vcclothes_sc`` keeps cameras 2 and 3 (people keep their clothes
there) and ``vcclothes_cc`` keeps cameras 3 and 4 (clothes change); training is the same for all
three. Camera numbers are 1-based on disk and 0-based here.
"""

from __future__ import annotations

import os
import re

from dlcr.data.datasets.base import (
    DATASETS,
    STANDARD_ONLY,
    STANDARD_SC_CC,
    CCReIDDataset,
    Record,
    finish,
    relabel_test,
    relabel_train,
)
from dlcr.data.datasets.files import Rejects, find_base, named_images

NAME_RE = re.compile(r"^(?P<pid>\d+)-(?P<cam>\d+)-(?P<clothes>\d+)-(?P<frame>\d+)\.(?:jpe?g|png|bmp)$", re.IGNORECASE)
NAME_TEXT = "<pid>-<cam>-<clothes>-<frame>.jpg"
LAYOUT = f"<root>/VC-Clothes/{{train,query,gallery}}/{NAME_TEXT}"
FOLDERS = {"train": "train", "query": "query", "gallery": "gallery"}
#: test cameras kept (1-based, as on disk) per variant; None keeps all
SUBSETS: dict[str, frozenset[int] | None] = {
    "vcclothes": None,
    "vcclothes_sc": frozenset({2, 3}),
    "vcclothes_cc": frozenset({3, 4}),
}


def parse_vc_name(name: str) -> tuple[int, int, str] | None:
    """(pid, 1-based camera, clothes key) or None."""
    m = NAME_RE.match(name)
    if not m:
        return None
    pid = int(m["pid"])
    return pid, int(m["cam"]), f"{pid:03d}_{int(m['clothes'])}"


def _load(root: str | os.PathLike, variant: str, strict: bool, check_images: bool) -> CCReIDDataset:
    root_p, base = find_base(root, "VC-Clothes", list(FOLDERS.values()), LAYOUT)
    rejects = Rejects(variant, strict)
    keep = SUBSETS[variant]
    parsed: dict[str, list[Record]] = {}
    for split, folder in FOLDERS.items():
        named = named_images(root_p, base / folder, rejects, parse_vc_name, name_text=NAME_TEXT, layout=LAYOUT,
                             desc=f"{variant} {split}")
        parsed[split] = [Record(path=r, pid=pid, camid=cam - 1, clothes_key=key) for r, (pid, cam, key) in named
                         if split == "train" or keep is None or cam in keep]
    splits = {"train": relabel_train(parsed["train"])}
    splits.update(relabel_test({"query": parsed["query"], "gallery": parsed["gallery"]}))
    protocols = STANDARD_SC_CC if keep is None else STANDARD_ONLY
    return finish(variant, root_p, splits, rejects, protocols=protocols, check_images=check_images)


@DATASETS.register("vcclothes")
def load_vcclothes(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    return _load(root, "vcclothes", strict, check_images)


@DATASETS.register("vcclothes_sc")
def load_vcclothes_sc(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    return _load(root, "vcclothes_sc", strict, check_images)


@DATASETS.register("vcclothes_cc")
def load_vcclothes_cc(root: str | os.PathLike, *, strict: bool = True, check_images: bool = False) -> CCReIDDataset:
    return _load(root, "vcclothes_cc", strict, check_images)
