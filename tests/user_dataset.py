"""A user's own dataset for the CLI tests: a small synthetic world copied into a CSV layout of its own
(JPEG files grouped by camera, person ids and outfit names of its own, a ``Query`` split written in
another case), with the world's ground-truth label maps as a folder of precomputed masks."""

from __future__ import annotations

import csv
import re
import shutil
from pathlib import Path

from PIL import Image

H, W = 64, 32
SPLITS = (("train", "train"), ("query", "Query"), ("test", "gallery"))  # world split -> CSV split


def build_user_dataset(base: Path) -> dict[str, int]:
    """``base/dataset/cam<c>/person<pid>_<n>.jpg`` + ``base/labels/...png`` + ``base/my.csv``."""
    from dlcr.synth import render_world

    render_world(base / "world", ids=8, seed=0, height=H, width=W)
    world = base / "world" / "synthcc"
    rows, counts = [], {}
    for split, csv_split in SPLITS:
        for n, f in enumerate(sorted((world / split).glob("*.png"))):
            m = re.fullmatch(r"(\d+)_(\d+)_c(\d+)_(\d+)\.png", f.name)
            assert m, f.name
            pid, clothes, cam = int(m[1]) + 500, f"outfit-{m[2]}", int(m[3])
            rel = f"cam{cam}/person{pid}_{split}{n:03d}.jpg"
            (base / "dataset" / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.open(f).convert("RGB").save(base / "dataset" / rel, quality=95)
            label = base / "labels" / Path(rel).with_suffix(".png")
            label.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(world / "masks" / split / f.name, label)
            rows.append([rel, pid, cam, clothes, csv_split])
            counts[csv_split.lower()] = counts.get(csv_split.lower(), 0) + 1
    with open(base / "my.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["path", "pid", "camid", "clothes", "split"], *rows])
    shutil.rmtree(base / "world")  # only the user's layout is left
    return counts
