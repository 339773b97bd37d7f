"""Real photographs through stage 1: pose masks -> rule descriptions -> recolor variants.

Two public-domain photographs of people ship inside packages this project can install: NASA's portrait
of astronaut Eileen Collins in scikit-image (``skimage/data/astronaut.png``) and the US Navy's
portrait of Grace Hopper in matplotlib (``mpl-data/sample_data/grace_hopper.jpg``). They are read as
files (the packages are located, not imported), so tests and the demo report can show the generation
stage on real pixels without any download.

:func:`run_real_photo_stage` crops the person out of each photograph (bounding box of the pose
model's person mask, plus a margin, resized to a fixed height), parses the crop with the ``pose``
backend, captions it with the ``rule`` captioner, and repaints its clothes ``k`` times with the
``recolor`` inpainter, each with a prompt drawn from :data:`OUTFITS`. Everything lands in one folder
with a ``manifest.json``; the demo report shows it next to the synthetic world
(:func:`dlcr.report.html.build_demo_report`, section "Real photographs"). Both portraits are upper
body shots, so only the upper garment is found and repainted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlcr.errors import DatasetError, InputError
from dlcr.io.atomic import atomic_write_json
from dlcr.io.images import read_rgb, write_png
from dlcr.utils.logging import get_logger
from dlcr.utils.packages import package_file

log = get_logger(__name__)

#: Folder name of the stage's output inside a demo folder (read by the report).
REALPHOTO_DIRNAME = "realphoto"
MANIFEST = "manifest.json"
STAGE_VERSION = 1


@dataclass(frozen=True)
class PhotoSource:
    """A photograph shipped as a data file of an installable package."""

    package: str  # import name, located with importlib (not imported)
    relpath: str  # path inside the package folder
    distribution: str  # what to pip install
    credit: str


PHOTOS: dict[str, PhotoSource] = {
    "astronaut": PhotoSource("skimage", "data/astronaut.png", "scikit-image",
                             "Eileen Collins, NASA portrait (public domain), shipped with scikit-image"),
    "grace_hopper": PhotoSource("matplotlib", "mpl-data/sample_data/grace_hopper.jpg", "matplotlib",
                                "Grace Hopper, US Navy portrait (public domain), shipped with matplotlib"),
}  # fmt: skip

#: Target outfits of the variants (the recolor backend's vocabulary).
OUTFITS: tuple[str, ...] = (
    "a person wearing a red t-shirt, blue jeans and white sneakers",
    "a person wearing a green and white striped sweater, black pants and brown boots",
    "a person wearing a navy checked shirt, khaki trousers and black shoes",
    "a person wearing a yellow hoodie, gray shorts and white sneakers",
    "a person wearing a purple dotted blouse, black skirt and red shoes",
    "a person wearing a teal jacket, beige pants and black boots",
    "a person wearing a pink and black striped shirt, navy pants and gray sneakers",
    "a person wearing a white shirt, brown trousers and black shoes",
)


def photo_path(name: str) -> Path | None:
    """The file of photograph ``name`` (a key of :data:`PHOTOS`) when its package is installed, else None."""
    if name not in PHOTOS:
        raise InputError(f"unknown photograph {name!r}; known: {', '.join(PHOTOS)}")
    return package_file(PHOTOS[name].package, PHOTOS[name].relpath)


def available_photos() -> list[str]:
    """Names of the photographs whose package is installed."""
    return [n for n in PHOTOS if photo_path(n) is not None]


def load_photo(name: str) -> np.ndarray:
    """Photograph ``name`` as RGB uint8 (H, W, 3); :class:`DatasetError` when its package is missing."""
    path = photo_path(name)
    if path is None:
        raise DatasetError(f"photograph {name!r} needs the {PHOTOS[name].distribution} package (pip install it)")
    return read_rgb(path)


def person_box(mask: np.ndarray, margin: float = 0.06) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of the mask's bounding box grown by ``margin`` x its size, clamped."""
    from dlcr.lip import mask_bbox

    box = mask_bbox(mask)
    if box is None:
        return None
    h, w = mask.shape
    y0, y1, x0, x1 = box
    my, mx = round(margin * (y1 - y0)), round(margin * (x1 - x0))
    return max(0, y0 - my), min(h, y1 + my), max(0, x0 - mx), min(w, x1 + mx)


def crop_resize(image: np.ndarray, box: tuple[int, int, int, int], height: int) -> np.ndarray:
    """``image[box]`` resized (bicubic) to ``height`` rows, keeping the aspect ratio."""
    y0, y1, x0, x1 = box
    crop = image[y0:y1, x0:x1]
    width = max(1, round(crop.shape[1] * height / crop.shape[0]))
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.Resampling.BICUBIC), dtype=np.uint8)


def real_photo_missing() -> str | None:
    """Why the real-photo stage cannot run here (one line), or None."""
    from dlcr.generation.parsers.pose import mediapipe_missing

    reason = mediapipe_missing()
    if reason:
        return reason
    if not available_photos():
        return "no photograph is installed (pip install scikit-image; matplotlib ships grace_hopper.jpg)"
    return None


def _skip(out: Path, reason: str) -> dict[str, Any]:
    manifest = {"version": STAGE_VERSION, "status": "skipped", "reason": reason, "photos": []}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / MANIFEST, manifest)
    log.warning("real-photo stage skipped: %s", reason)
    return manifest


def _parse_photos(names: Sequence[str], height: int) -> tuple[Any, list[np.ndarray], list[tuple[int, int, int, int]],
                                                             list[np.ndarray], list[bool]]:
    """Crop each photograph to its person (``height`` rows) and parse the crop with the ``pose``
    backend: (the closed parser, crops, boxes, LIP label maps, whether a pose was found)."""
    from dlcr.generation.parsers.pose import PoseParser

    parser = PoseParser()
    crops, boxes, labels, found = [], [], [], []
    try:
        for n in names:
            full = load_photo(n)
            person, _ = parser.person_mask(full)
            box = person_box(person) or (0, full.shape[0], 0, full.shape[1])
            crop = crop_resize(full, box, height)
            lab = parser.parse([crop])[0]
            crops.append(crop)
            boxes.append(box)
            labels.append(lab)
            found.append(not parser.last_fallbacks[0])
    finally:
        parser.close()
    return parser, crops, boxes, labels, found


def _repaint(out: Path, inpainter: Any, n: str, i: int, crop: np.ndarray, lab: np.ndarray, picks: np.ndarray,
             seed: int) -> tuple[list[dict[str, Any]], int]:
    """Write photo ``n`` (the ``i``-th) and its label map into ``out/originals/`` and ``out/masks/``, and
    its repaintings, one per outfit index in ``picks``, into ``out/variants/``: (their manifest entries,
    the clothes mask's pixel count)."""
    from dlcr.generation.inpainting import InpaintItem
    from dlcr.generation.planning import Job, make_job_id
    from dlcr.lip import clothes_mask

    write_png(out / "originals" / f"{n}.png", crop)
    write_png(out / "masks" / f"{n}.png", lab)
    mask = clothes_mask(lab)
    src = f"originals/{n}.png"
    jobs = [Job(job_id=make_job_id("realphoto", src, f"outfit{int(j)}", v, inpainter.name, seed), kind="train",
                dataset="realphoto", source=src, source_clothes_key=n, pid=i, target_clothes_key=f"outfit{int(j)}",
                variant=v, partition=0, prompt=OUTFITS[int(j)], generator=inpainter.name,
                seed=int(seed) * 1000 + i * len(OUTFITS) + v) for v, j in enumerate(picks)]  # fmt: skip
    images = inpainter([InpaintItem(job, crop, mask, lab) for job in jobs])
    variants = []
    for job, img in zip(jobs, images, strict=True):
        rel = f"variants/{n}_v{job.variant}.png"
        write_png(out / rel, img)
        variants.append({"file": rel, "prompt": job.prompt, "seed": job.seed})
    return variants, int(mask.sum())


def run_real_photo_stage(
    out_dir: str | os.PathLike,
    *,
    k: int = 4,
    height: int = 256,
    seed: int = 0,
    photos: Sequence[str] | None = None,
    summarizer: str = "vote",
) -> dict[str, Any]:
    """Crop, parse (``pose``), caption (``rule``), summarise and repaint (``recolor``) the shipped photos.

    Writes ``originals/<name>.png`` (the crops), ``masks/<name>.png`` (LIP label maps),
    ``variants/<name>_v<i>.png`` and ``manifest.json`` into ``out_dir`` and returns the manifest:
    ``{"status": "ok", "photos": [{"name", "credit", "box", "original", "mask", "pose_found",
    "caption", "outfit", "clothes_pixels", "variants": [{"file", "prompt", "seed"}]}], ...}``.
    When mediapipe or every photograph is missing, the manifest is
    ``{"status": "skipped", "reason": ...}`` (also written, so the report can say why).
    ``summarizer`` is a name of :data:`dlcr.generation.describers.SUMMARIZERS` (``smollm2`` runs the
    real small LLM, ~30 s to load).
    """
    from dlcr.generation.describers import create_captioner, create_summarizer
    from dlcr.generation.inpainters.recolor import RecolorInpainter

    out = Path(out_dir)
    if k < 1 or k > len(OUTFITS):
        raise InputError(f"k must be in 1..{len(OUTFITS)}, got {k}")
    if height < 32:
        raise InputError(f"height must be at least 32, got {height}")
    reason = real_photo_missing()
    if reason:
        return _skip(out, reason)
    names = list(photos) if photos is not None else available_photos()
    missing = [n for n in names if photo_path(n) is None]
    names = [n for n in names if n not in missing]
    if not names:
        return _skip(out, f"photographs not installed: {', '.join(missing)}")

    t0 = time.perf_counter()
    parser, crops, boxes, labels, found = _parse_photos(names, height)
    t_parse = time.perf_counter() - t0

    t0 = time.perf_counter()
    captions = create_captioner("rule")(crops, labels)
    summ = create_summarizer(summarizer)
    outfits = [summ(n, [c]) for n, c in zip(names, captions, strict=True)]
    t_describe = time.perf_counter() - t0

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    inpainter = RecolorInpainter()
    rows = []
    for i, (n, crop, lab) in enumerate(zip(names, crops, labels, strict=True)):
        picks = rng.choice(len(OUTFITS), size=k, replace=False)
        variants, clothes_pixels = _repaint(out, inpainter, n, i, crop, lab, picks, seed)
        o = outfits[i]
        rows.append({
            "name": n, "credit": PHOTOS[n].credit, "box": list(boxes[i]), "size": list(crop.shape[:2]),
            "original": f"originals/{n}.png", "mask": f"masks/{n}.png", "pose_found": bool(found[i]),
            "caption": captions[i], "outfit": {"upper": o.upper, "lower": o.lower, "footwear": o.footwear},
            "clothes_pixels": clothes_pixels, "variants": variants,
        })  # fmt: skip
    t_inpaint = time.perf_counter() - t0

    manifest = {
        "version": STAGE_VERSION,
        "status": "ok",
        "parser": parser.description,
        "captioner": "rule",
        "summarizer": summ.model,
        "inpainter": inpainter.model,
        "k": k,
        "seed": seed,
        "fallbacks": int(parser.fallback_count),
        "seconds": {"parse": round(t_parse, 3), "describe": round(t_describe, 3), "inpaint": round(t_inpaint, 3)},
        "photos": rows,
    }
    atomic_write_json(out / MANIFEST, manifest)
    log.info("real-photo stage: %d photos, %d variants each, written to %s", len(rows), k, out)
    return manifest


__all__ = [
    "OUTFITS",
    "PHOTOS",
    "REALPHOTO_DIRNAME",
    "available_photos",
    "crop_resize",
    "load_photo",
    "person_box",
    "photo_path",
    "real_photo_missing",
    "run_real_photo_stage",
]
