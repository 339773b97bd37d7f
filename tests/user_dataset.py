"""Users' datasets for the tests, made from a small synthetic world: a CSV layout of its own (JPEG
files grouped by camera, person ids and outfit names of its own, a ``Query`` split written in another
case) and PRCC's layout, each optionally with the world's ground-truth label maps as a folder of
precomputed masks (the ``folder`` parser's input)."""

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


def as_prcc(ds, world_root: Path, dst: Path, labels: Path | None = None) -> Path:
    """The synthetic world ``ds`` (rendered in ``world_root``) re-filed in PRCC's layout under
    ``dst/prcc/rgb``, with a ``val`` folder: per person the first outfit is seen by cameras A and B,
    another outfit by camera C (PRCC's clothes rule). ``labels``: also write each image's label map
    there at its path relative to ``dst`` (with a ``.png`` suffix). Returns ``dst``."""
    by_pid: dict[int, dict[str, list]] = {}
    for split in ds.splits.values():
        for s in split:
            by_pid.setdefault(s.pid, {}).setdefault(s.clothes_key, []).append(s)
    people = sorted(p for p, outfits in by_pid.items() if len(outfits) >= 2)
    assert len(people) >= 8, people
    rgb = dst / "prcc" / "rgb"
    for i, pid in enumerate(people):
        outfits = [by_pid[pid][k] for k in sorted(by_pid[pid])]
        same, other = outfits[0], outfits[1]
        files = [("A" if j % 2 == 0 else "B", s) for j, s in enumerate(same)] + [("C", s) for s in other]
        for j, (cam, s) in enumerate(files):
            if i < 4 or i >= 6:  # 4 training, 2 validation, the rest test identities
                folder = "train" if i < 4 else None
            else:
                folder = "val"
            if folder is None:
                target = rgb / "test" / cam / f"{pid:03d}" / f"{j:03d}.png"
            else:
                target = rgb / folder / f"{pid:03d}" / f"{cam}_{j:03d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(world_root / s.path, target)
            if labels is not None:
                top, split, name = Path(s.path).parts[-3:]  # synthcc/<split>/<name>
                mask = labels / target.relative_to(dst)
                mask.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(world_root / top / "masks" / split / name, mask)
    return dst
