"""A tiny on-disk dataset for generation tests: images, LIP label maps, samples and outfits.

Each image is a cartoon pedestrian on a noisy background: hair + face, an upper garment (LIP 5),
pants (LIP 9), shoes (LIP 18/19) and arms/legs, every garment coloured by its outfit with noise and
a vertical shading gradient. Label maps are written as ``<stem>.png`` under the label root.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dlcr.io.images import write_png
from dlcr.types import Outfit, Sample

_COLOURS = ["red", "blue", "green", "yellow", "black", "white", "pink", "purple", "orange", "gray"]
_RGB = {
    "red": (190, 32, 38),
    "blue": (36, 76, 188),
    "green": (40, 138, 60),
    "yellow": (238, 208, 44),
    "black": (22, 22, 24),
    "white": (236, 236, 232),
    "pink": (236, 132, 170),
    "purple": (108, 50, 150),
    "orange": (238, 128, 32),
    "gray": (128, 128, 130),
}
_UPPER = ["t-shirt", "striped shirt", "hoodie", "checked shirt", "jacket"]
_LOWER = ["jeans", "shorts", "trousers", "skirt"]
_SHOES = ["sneakers", "boots", "shoes"]


def toy_label_map(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    lab = np.zeros((height, width), dtype=np.uint8)
    cx = width // 2 + int(rng.integers(-1, 2))
    hw = max(2, width // 4)
    r = lambda f: int(round(f * height))  # noqa: E731
    lab[r(0.02) : r(0.08), cx - hw // 2 : cx + hw // 2 + 1] = 2  # hair
    lab[r(0.08) : r(0.18), cx - hw // 2 : cx + hw // 2 + 1] = 13  # face
    lab[r(0.18) : r(0.52), max(0, cx - hw - 1) : cx - hw] = 14  # arms
    lab[r(0.18) : r(0.52), cx + hw + 1 : min(width, cx + hw + 2)] = 15
    lab[r(0.18) : r(0.52), cx - hw : cx + hw + 1] = 5  # upper clothes
    lab[r(0.52) : r(0.88), cx - hw : cx + hw + 1] = 9  # pants
    lab[r(0.88) : r(0.97), cx - hw : cx] = 18  # shoes
    lab[r(0.88) : r(0.97), cx + 1 : cx + hw + 1] = 19
    return lab


def toy_image(
    labels: np.ndarray, colours: dict[int, tuple[int, int, int]], rng: np.random.Generator
) -> np.ndarray:
    h, w = labels.shape
    img = rng.integers(60, 200, size=(h, w, 3)).astype(np.float64)
    shade = np.linspace(1.15, 0.8, h)[:, None, None]
    for lab, rgb in colours.items():
        m = labels == lab
        img[m] = np.asarray(rgb, dtype=np.float64) * shade[np.nonzero(m)[0], 0] + rng.normal(
            0, 6, (m.sum(), 3)
        )
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def make_toy_dataset(
    root: str | os.PathLike,
    *,
    n_persons: int = 5,
    outfits_per_person: int = 2,
    images_per_outfit: int = 1,
    height: int = 32,
    width: int = 16,
    seed: int = 0,
    empty_masks: int = 0,
    split: str = "train",
) -> tuple[list[Sample], dict[str, Outfit], Path, Path]:
    """Write the toy dataset under ``root``; return (samples, outfits, image_root, label_root).

    The last ``empty_masks`` images get a label map without any clothes.
    """
    rng = np.random.default_rng(seed)
    root = Path(root)
    image_root, label_root = root / "images", root / "labels"
    samples: list[Sample] = []
    outfits: dict[str, Outfit] = {}
    skin = (224, 172, 140)
    for pid in range(n_persons):
        hair = tuple(int(x) for x in rng.integers(10, 120, 3))
        for c in range(outfits_per_person):
            key = f"{pid:03d}_{c}"
            up, lo, sh = (str(rng.choice(_COLOURS)) for _ in range(3))
            outfits[key] = Outfit(
                key, f"{up} {rng.choice(_UPPER)}", f"{lo} {rng.choice(_LOWER)}", f"{sh} {rng.choice(_SHOES)}"
            )
            for i in range(images_per_outfit):
                rel = f"toy/{split}/{pid:03d}_{c}_c{i % 3 + 1}_{i:03d}.png"
                labels = toy_label_map(height, width, rng)
                colours = {
                    2: hair,
                    13: skin,
                    14: skin,
                    15: skin,
                    5: _RGB[up],
                    9: _RGB[lo],
                    18: _RGB[sh],
                    19: _RGB[sh],
                }
                img = toy_image(labels, colours, rng)
                write_png(image_root / rel, img)
                samples.append(
                    Sample(
                        path=rel,
                        pid=pid,
                        camid=i % 3 + 1,
                        clothes_id=pid * outfits_per_person + c,
                        split=split,
                        clothes_key=key,
                    )
                )
                write_png(label_root / rel, labels)  # same name: the masks stage's layout (parsing.label_path)
    for s in samples[len(samples) - empty_masks :] if empty_masks else []:
        lab = np.zeros((height, width), dtype=np.uint8)
        lab[: height // 4] = 13
        write_png(label_root / s.path, lab)
    return samples, outfits, image_root, label_root


RUN_JOBS = ("generate", "run-jobs")  # the command that runs a job table (dlcr.cli.run_jobs)


def runner_argv(jobs: str | os.PathLike, image_root: str | os.PathLike, label_root: str | os.PathLike,
                out: str | os.PathLike, *extra: str) -> list[str]:
    """Arguments of ``dlcr generate run-jobs`` for a job table and the toy roots (after ``dlcr`` or
    ``python -m dlcr``, or given to ``dlcr.cli.main.main``)."""
    return [*RUN_JOBS, "--jobs", str(jobs), "--image-root", str(image_root), "--label-root", str(label_root),
            "--out", str(out), *extra]


def toy_people(n: int, height: int, width: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``n`` toy people (RGB uint8 images and their LIP label maps) with random colours per label."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n):
        lab = toy_label_map(height, width, rng)
        colours = {k: tuple(int(c) for c in rng.integers(0, 256, 3)) for k in (2, 5, 9, 13, 14, 15, 18, 19)}
        images.append(toy_image(lab, colours, rng))
        labels.append(lab)
    return images, labels
