"""Real photographs through stage 1: pose masks -> rule descriptions -> recolor variants.

Two public-domain photographs of people ship inside packages this project can install: NASA's portrait
of astronaut Eileen Collins in scikit-image (``skimage/data/astronaut.png``) and the US Navy's
portrait of Grace Hopper in matplotlib (``mpl-data/sample_data/grace_hopper.jpg``). They are read as
files (the packages are located, not imported), so tests and the demo report can show the generation
stage on real pixels without any download.

:func:`run_real_photo_stage` crops the person out of each photograph (bounding box of the pose
model's person mask, plus a margin, resized to a fixed height), makes the crops a tiny dataset and
runs the generation stages of :mod:`dlcr.generation.stages` on it, as ``dlcr generate`` does on a
benchmark: masks with the ``pose`` backend, describe with the ``rule`` captioner, a plan of ``k``
targets per photo drawn from :data:`OUTFITS`, inpainting with ``recolor``. Everything lands in one
folder (the stages' work folder inside it) with a ``manifest.json``; the demo report shows it next to
the synthetic world
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
STAGE_VERSION = 2  # 2: the generation stages' work folder (work/) holds the masks and variants
ORIGINALS = "originals"  # the crops: the tiny dataset's images
WORK_DIRNAME = "work"  # the stages' work folder inside the stage's output
DATASET = "realphoto"  # the tiny dataset's name (in its samples table and job ids)


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


def photo_dataset(out: Path, names: Sequence[str], height: int, parser: Any) -> tuple[Any, list[tuple[int, ...]]]:
    """The panel's tiny dataset, rooted at ``out``: each photograph cropped to its person (the bounding
    box of ``parser``'s person mask plus a margin, ``height`` rows) and written to ``originals/<name>.png``,
    one training sample per photograph (its own person and outfit, clothes key = its name).
    Returns (the dataset, the crop boxes in the full photographs)."""
    from dlcr.data.datasets.base import CCReIDDataset
    from dlcr.types import Sample

    samples, boxes = [], []
    for i, n in enumerate(names):
        full = load_photo(n)
        person, _ = parser.person_mask(full)
        box = person_box(person) or (0, full.shape[0], 0, full.shape[1])
        write_png(out / ORIGINALS / f"{n}.png", crop_resize(full, box, height))
        samples.append(Sample(path=f"{ORIGINALS}/{n}.png", pid=i, camid=0, clothes_id=i, split="train",
                              clothes_key=n))
        boxes.append(box)
    ds = CCReIDDataset(name=DATASET, root=out, splits={"train": samples})  # no test split: no protocol
    return ds, boxes


def _masks(ds: Any, work: Path, parser: Any) -> list[bool]:
    """The masks stage with the ``pose`` parser, one photograph per call: whether each had a pose."""
    from dlcr.generation.stages import run_masks

    return [run_masks(parser, [s], ds.root, work).fallbacks == 0 for s in ds.train]


def _variants(work: Path, out: Path) -> tuple[dict[str, list[dict[str, Any]]], str]:
    """The inpainting stage's records: source -> its variants (file relative to ``out``, prompt, seed)
    in variant order; and the inpainter's model label."""
    from dlcr.generation.layout import GENERATED
    from dlcr.generation.outputs import read_manifest

    records = sorted(read_manifest(work / GENERATED), key=lambda r: (r.source, r.variant))
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        file = (work / GENERATED / r.file).relative_to(out).as_posix()
        by_source.setdefault(r.source, []).append({"file": file, "prompt": r.prompt, "seed": int(r.seed)})
    return by_source, (records[0].model if records else "")


def _stages(out: Path, names: list[str], *, k: int, height: int, seed: int, summarizer: str) -> dict[str, Any]:
    """Build the tiny dataset in ``out`` and run masks, describe, plan and inpaint on it in ``out/work``
    (made afresh): the panel's manifest entries and what made them."""
    import shutil

    from dlcr.data.datasets import write_samples
    from dlcr.generation.describe_tables import read_captions
    from dlcr.generation.describers import create_captioner, create_summarizer
    from dlcr.generation.layout import MASKS
    from dlcr.generation.parsers.pose import PoseParser
    from dlcr.generation.parsing import MASKS_TABLE, label_path
    from dlcr.generation.stages import read_work_outfits, run_describe, run_inpaint, run_plan
    from dlcr.io.images import read_label_map
    from dlcr.io.tables import read_table

    work = out / WORK_DIRNAME
    if work.exists():  # every run rebuilds the panel from scratch (it takes seconds)
        shutil.rmtree(work)
    t0 = time.perf_counter()
    parser = PoseParser()
    try:
        ds, boxes = photo_dataset(out, names, height, parser)
        write_samples(ds, work / "samples.parquet")
        found = _masks(ds, work, parser)
    finally:
        parser.close()
    t_parse = time.perf_counter() - t0

    t0 = time.perf_counter()
    rep = run_describe(ds.train, out, work, captioner=create_captioner("rule"),
                       summarizer=create_summarizer(summarizer))
    captions = {r["path"]: r["caption"] for r in read_captions(work)}
    outfits = read_work_outfits(work)
    t_describe = time.perf_counter() - t0

    t0 = time.perf_counter()
    run_plan(ds.train, work, k=k, seed=seed, allow_same_person=False, num_partitions=1, dataset=DATASET,
             generator="recolor", targets={f"outfit{j}": o for j, o in enumerate(OUTFITS)})
    run_inpaint(work, out, backend="recolor", backend_options={}, batch_size=k)
    variants, inpainter = _variants(work, out)
    t_inpaint = time.perf_counter() - t0

    pixels = {r["path"]: int(r["clothes_pixels"]) for r in read_table(work / MASKS / MASKS_TABLE)}
    rows = []
    for s, box, pose_found in zip(ds.train, boxes, found, strict=True):
        n, mask = s.clothes_key, label_path(work / MASKS, s.path)
        o = outfits[n]
        rows.append({
            "name": n, "credit": PHOTOS[n].credit, "box": list(box), "size": list(read_label_map(mask).shape),
            "original": s.path, "mask": mask.relative_to(out).as_posix(), "pose_found": bool(pose_found),
            "caption": captions[s.path], "outfit": {"upper": o.upper, "lower": o.lower, "footwear": o.footwear},
            "clothes_pixels": pixels[s.path],
            "variants": variants.get(s.path, []),
        })  # fmt: skip
    return {"parser": parser.description, "captioner": "rule", "summarizer": rep.summarizer, "inpainter": inpainter,
            "fallbacks": found.count(False), "rows": rows,
            "seconds": {"parse": round(t_parse, 3), "describe": round(t_describe, 3), "inpaint": round(t_inpaint, 3)}}


def run_real_photo_stage(
    out_dir: str | os.PathLike,
    *,
    k: int = 4,
    height: int = 256,
    seed: int = 0,
    photos: Sequence[str] | None = None,
    summarizer: str = "vote",
) -> dict[str, Any]:
    """Crop the shipped photos and run the generation stages on them: masks (``pose``), describe
    (``rule`` captions, ``summarizer``), plan (``k`` targets from :data:`OUTFITS`), inpaint (``recolor``).

    The photos become a tiny dataset rooted at ``out_dir`` (crops in ``originals/<name>.png``) and the
    stages run on it in the work folder ``out_dir/work/`` (its ``samples.parquet``, ``masks/``,
    ``captions.parquet``, ``outfits.parquet``, ``jobs.parquet`` and ``generated/``), remade on every
    call. ``manifest.json`` in ``out_dir`` sums it up for the report, paths relative to ``out_dir``:
    ``{"status": "ok", "photos": [{"name", "credit", "box", "original", "mask", "pose_found",
    "caption", "outfit", "clothes_pixels", "variants": [{"file", "prompt", "seed"}]}], ...}``.
    When mediapipe or every photograph is missing, the manifest is
    ``{"status": "skipped", "reason": ...}`` (also written, so the report can say why).
    ``summarizer`` is a name of :data:`dlcr.generation.describers.SUMMARIZERS` (``smollm2`` runs the
    real small LLM, ~30 s to load).
    """
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
    if len(set(names)) != len(names):
        raise InputError(f"a photograph is named twice: {', '.join(names)}")

    made = _stages(out, names, k=k, height=height, seed=seed, summarizer=summarizer)
    manifest = {
        "version": STAGE_VERSION,
        "status": "ok",
        **{key: made[key] for key in ("parser", "captioner", "summarizer", "inpainter")},
        "k": k,
        "seed": seed,
        "fallbacks": made["fallbacks"],
        "seconds": made["seconds"],
        "photos": made["rows"],
    }
    atomic_write_json(out / MANIFEST, manifest)
    log.info("real-photo stage: %d photos, %d variants each, written to %s", len(made["rows"]), k, out)
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
