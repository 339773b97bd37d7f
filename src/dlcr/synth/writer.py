"""Write a synthcc world to disk (resumable, atomic) and draw contact sheets of it.

Layout under ``out_dir/synthcc/``::

    world.json                        generation parameters, version, completion flag, summary
    outfits.json                      "<pid>_<clothes>" -> {"upper", "lower", "footwear"} (ground truth)
    {train,query,test}/<pid:03d>_<clothes>_c<cam>_<frame:03d>.png     (``test`` is the gallery)
    masks/{train,query,test}/<same name>.png                          LIP label maps (uint8)

``world.json`` is written first with ``"complete": false`` and rewritten at the end, so a killed
run is resumed by calling :func:`render_world` again with the same parameters: files that already
exist are skipped (each was written atomically, so an existing file is whole), and every image is
rendered from its own seed, so the resumed world is byte-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from dlcr.errors import DatasetError
from dlcr.io.atomic import atomic_write_json, remove_stale_temps
from dlcr.io.images import read_rgb, write_png
from dlcr.synth.render import render_image
from dlcr.synth.world import SPLITS, VERSION, ImageSpec, World, WorldParams, build_world
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

log = get_logger(__name__)

NAME_RE = re.compile(r"^(\d+)_(\d+)_c(\d+)_(\d+)\.png$")


_WRITERS = 6


def _done(root: Path, spec: ImageSpec) -> bool:
    return (root / spec.split / spec.name).is_file() and (root / "masks" / spec.split / spec.name).is_file()


def _write_pair(img_path: Path, img: np.ndarray, mask_path: Path, labels: np.ndarray) -> None:
    write_png(mask_path, labels)
    write_png(img_path, img)


def render_spec(world: World, spec: ImageSpec) -> tuple[np.ndarray, np.ndarray]:
    """Render one planned image from its own seed (independent of every other image)."""
    p = world.params
    rng = np.random.default_rng([p.seed, 7, spec.pid, spec.clothes, spec.cam, spec.frame])
    return render_image(
        world.identities[spec.pid],
        world.outfits[spec.pid][spec.clothes - 1],
        world.cameras[spec.cam],
        height=p.height,
        width=p.width,
        rng=rng,
        supersample=p.supersample,
        noise=p.noise,
        blur=p.blur,
    )


def _summary(world: World, seconds: float, rendered: int, skipped: int, root: Path) -> dict[str, Any]:
    ids = {s: sorted({sp.pid for sp in world.plan if sp.split == s}) for s in SPLITS}
    clothes = {s: len({sp.clothes_key for sp in world.plan if sp.split == s}) for s in SPLITS}
    return {
        "root": str(root),
        "ids": {s: len(v) for s, v in ids.items()},
        "images": {s: sum(sp.split == s for sp in world.plan) for s in SPLITS},
        "clothes": clothes,
        "cameras": world.params.cameras,
        "rendered": rendered,
        "skipped": skipped,
        "seconds": round(seconds, 3),
    }


def _check_existing(root: Path, params: WorldParams) -> dict[str, Any] | None:
    """The stored world.json if it matches ``params``; None for a fresh folder; else DatasetError."""
    meta_path = root / "world.json"
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as e:
            raise DatasetError(f"{meta_path} is unreadable ({e}); delete the folder to re-render") from None
        stored = meta.get("params", {})
        if meta.get("version") != VERSION or stored != params.to_json():
            diff = sorted(k for k in set(stored) | set(params.to_json()) if stored.get(k) != params.to_json().get(k))
            what = f"version {meta.get('version')} vs {VERSION}" if meta.get("version") != VERSION else (
                "; ".join(f"{k}: {stored.get(k)!r} on disk vs {params.to_json().get(k)!r}" for k in diff)
            )
            raise DatasetError(
                f"{root} holds a synthcc world with other parameters ({what}); use another --out or delete it"
            )
        return meta
    if root.exists() and any(p.is_file() for p in root.rglob("*")):
        raise DatasetError(f"{root} is not empty and has no world.json; use an empty folder for a new synthcc world")
    return None


def render_world(out_dir: str | os.PathLike, *, ids: int = 150, seed: int = 0, height: int = 128, width: int = 64,
                 **advanced: Any) -> dict[str, Any]:
    """Render the synthetic clothes-changing world into ``out_dir/synthcc`` and return a summary.

    ``advanced`` takes the other fields of :class:`~dlcr.synth.world.WorldParams` (cameras, outfit
    counts, frames per split, noise, ...). Re-running with the same parameters on a complete world
    does nothing; on an interrupted one it renders only the missing files. Other parameters on a
    non-empty folder raise :class:`DatasetError`.
    """
    t0 = time.perf_counter()
    params = WorldParams.build(ids=ids, seed=seed, height=height, width=width, **advanced)
    root = Path(out_dir) / "synthcc"
    meta = _check_existing(root, params)
    world = build_world(params)
    if meta is not None and meta.get("complete") and all(_done(root, spec) for spec in world.plan):
        log.info("synthcc world at %s is complete; nothing to do", root)
        out = dict(meta.get("summary", {}))
        out.update(rendered=0, skipped=len(world.plan), seconds=round(time.perf_counter() - t0, 3))
        return out
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(root)
    atomic_write_json(root / "world.json", {"version": VERSION, "params": params.to_json(), "complete": False})

    outfits = {
        f"{pid:03d}_{k}": o.describe() for pid in sorted(world.outfits) for k, o in enumerate(world.outfits[pid], 1)
    }
    atomic_write_json(root / "outfits.json", outfits)

    rendered = skipped = 0
    # Rendering is CPU-bound; the atomic writes mostly wait on fsync, so a few writer threads
    # overlap that latency with rendering without using more CPU.
    pending: deque[Future[None]] = deque()
    with ThreadPoolExecutor(max_workers=_WRITERS) as pool:
        for spec in track(world.plan, desc="synthcc", unit="img"):
            if _done(root, spec):
                skipped += 1
                continue
            img_path = root / spec.split / spec.name
            mask_path = root / "masks" / spec.split / spec.name
            img, labels = render_spec(world, spec)
            # the mask first: an image on disk then always has its label map
            pending.append(pool.submit(_write_pair, img_path, img, mask_path, labels))
            rendered += 1
            while len(pending) > 4 * _WRITERS:
                pending.popleft().result()
        for f in pending:
            f.result()
    summary = _summary(world, time.perf_counter() - t0, rendered, skipped, root)
    atomic_write_json(
        root / "world.json", {"version": VERSION, "params": params.to_json(), "complete": True, "summary": summary}
    )
    log.info("synthcc: %d images rendered, %d already present, %.1fs", rendered, skipped, summary["seconds"])
    return summary


def _world_root(root: str | os.PathLike) -> Path:
    r = Path(root)
    if (r / "synthcc").is_dir():
        return r / "synthcc"
    if r.name == "synthcc" and r.is_dir():
        return r
    raise DatasetError(f"no synthcc world under {r} (expected {r / 'synthcc'})")


def contact_sheet(root: str | os.PathLike, out_png: str | os.PathLike, *, n_ids: int = 4, split: str = "train",
                  labels: bool = True, zoom: int = 1) -> Path:
    """A grid PNG of every outfit of the first ``n_ids`` ids of ``split`` across cameras.

    Rows are (id, outfit), columns are cameras (first frame of each); a cell is gray where that
    camera never saw that outfit. ``root`` is the folder that contains ``synthcc/`` (or that folder).
    """
    wroot = _world_root(root)
    folder = wroot / split
    if not folder.is_dir():
        raise DatasetError(f"split {split!r} not found in {wroot} (have: {', '.join(SPLITS)})")
    cells: dict[tuple[int, int, int], Path] = {}
    for p in sorted(folder.iterdir()):
        m = NAME_RE.match(p.name)
        if m:
            pid, clothes, cam, _ = map(int, m.groups())
            cells.setdefault((pid, clothes, cam), p)
    if not cells:
        raise DatasetError(f"no images in {folder}")
    pids = sorted({k[0] for k in cells})[:n_ids]
    rows = sorted({(k[0], k[1]) for k in cells if k[0] in pids})
    cams = sorted({k[2] for k in cells})
    first = read_rgb(next(iter(cells.values())))
    h, w = first.shape[:2]
    h, w = h * zoom, w * zoom
    gap, margin, head = 2, (44 if labels else 0), (12 if labels else 0)
    sheet = Image.new("RGB", (margin + len(cams) * (w + gap), head + len(rows) * (h + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, cam in enumerate(cams):
        if labels:
            draw.text((margin + j * (w + gap) + 2, 0), f"c{cam}", fill=(0, 0, 0))
    for i, (pid, clothes) in enumerate(rows):
        y = head + i * (h + gap)
        if labels:
            draw.text((2, y + h // 2 - 5), f"{pid:03d}_{clothes}", fill=(0, 0, 0))
        for j, cam in enumerate(cams):
            x = margin + j * (w + gap)
            p = cells.get((pid, clothes, cam))
            if p is None:
                sheet.paste((200, 200, 200), (x, y, x + w, y + h))
            else:
                im = Image.fromarray(read_rgb(p))
                if zoom != 1:
                    im = im.resize((w, h), Image.NEAREST)
                sheet.paste(im, (x, y))
    out = Path(out_png)
    write_png(out, np.asarray(sheet))
    return out
