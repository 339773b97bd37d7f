"""Any dataset described by a CSV: ``path,pid,camid,clothes,split`` (one row per image).

``path`` is relative to the root and may not leave it; an image listed twice is an error. The CSV's
own path, when relative, is read from the working directory (like every path option), not from the
root. ``clothes`` is an outfit label, compared only within a person (the outfit key is
``"<pid>_<clothes>"``).
``split`` is ``train`` or any test split name, read case-insensitively (``Train`` is ``train``);
all non-training splits share one clothes numbering. With ``query`` and ``gallery`` splits the
dataset gets the standard, SC and CC protocols.
"""

from __future__ import annotations

import csv as csv_mod
import os
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
from dlcr.data.datasets.files import Rejects, is_image, rel
from dlcr.errors import DatasetError
from dlcr.io.paths import safe_join
from dlcr.utils.progress import track

COLUMNS = ("path", "pid", "camid", "clothes", "split")


def _int(value: str, col: str, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError:
        raise DatasetError(f"{where}: column {col!r} must be an integer, got {value!r}") from None


@DATASETS.register("custom")
def load_custom(root: str | os.PathLike, *, csv: str | os.PathLike | None = None, strict: bool = True,
                check_images: bool = False) -> CCReIDDataset:
    if csv is None:
        raise DatasetError(f"dataset 'custom' needs a CSV (csv=... / --csv) with columns {','.join(COLUMNS)}")
    root_p = Path(root).expanduser()
    if not root_p.is_dir():
        raise DatasetError(f"dataset root {root_p} does not exist or is not a folder")
    csv_p = Path(csv).expanduser()
    if not csv_p.is_file():
        hint = ""
        if not csv_p.is_absolute() and (root_p / csv_p).is_file():
            hint = (f" (a relative CSV path is read from the working directory, not from the dataset root; "
                    f"did you mean {root_p / csv_p}?)")
        raise DatasetError(f"CSV {csv_p} not found{hint}")
    with open(csv_p, newline="", encoding="utf-8") as fh:
        reader = csv_mod.DictReader(fh)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise DatasetError(f"CSV {csv_p} lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    if not rows:
        raise DatasetError(f"CSV {csv_p} has no rows")

    rejects = Rejects("custom", strict)
    by_split: dict[str, list[Record]] = {}
    first_line: dict[str, int] = {}  # image -> the CSV line that listed it first
    for line, row in enumerate(track(rows, desc="custom", unit="row"), 2):
        where = f"{csv_p}:{line}"
        if not row["path"] or not row["split"] or not row["clothes"]:
            raise DatasetError(f"{where}: path, clothes and split must not be empty")
        safe_join(root_p, row["path"])  # raises UnsafePathError for paths leaving the root
        p = Path(os.path.normpath(root_p / row["path"]))
        if str(p) in first_line:
            raise DatasetError(f"{where}: image {row['path']!r} is already listed on line {first_line[str(p)]}; "
                               "each image may appear once")
        first_line[str(p)] = line
        if not (is_image(p.name) and p.is_file()):
            rejects(row["path"], "an existing image file under the root")
            continue
        pid = _int(row["pid"], "pid", where)
        by_split.setdefault(row["split"].lower(), []).append(Record(
            path=rel(root_p, p), pid=pid, camid=_int(row["camid"], "camid", where),
            clothes_key=f"{pid:03d}_{row['clothes']}",
        ))
    splits: dict[str, list] = {}
    if "train" in by_split:
        splits["train"] = relabel_train(by_split["train"])
    splits.update(relabel_test({k: v for k, v in by_split.items() if k != "train"}))
    protocols = STANDARD_SC_CC if {"query", "gallery"} <= splits.keys() else ()
    return finish("custom", root_p, splits, rejects, protocols=protocols, check_images=check_images)
