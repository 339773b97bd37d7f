"""Image reading and writing with clear errors.

Every image is returned as RGB uint8 (H, W, 3): grayscale, RGBA, palette and 16-bit files are
converted. Label maps (uint8 PNGs of LIP ids) are read without any conversion.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from dlcr.errors import ImageError, InputError
from dlcr.io.atomic import atomic_write_bytes


def _open(path: str | os.PathLike) -> Image.Image:
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image not found: {p}")
    if p.stat().st_size == 0:
        raise ImageError(f"image is empty (0 bytes): {p}")
    try:
        im = Image.open(p)
        im.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"cannot decode image {p}: {e}") from None
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "RGB":
        return im
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size and a.max() > 0 else 1.0
        a = np.clip(np.rint(a / (65535.0 if hi > 255 else 255.0) * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
        return Image.alpha_composite(bg, im).convert("RGB")
    return im.convert("RGB")


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read any image as RGB uint8 (H, W, 3)."""
    return np.asarray(to_rgb(_open(path)), dtype=np.uint8).copy()


def read_pil_rgb(path: str | os.PathLike) -> Image.Image:
    return to_rgb(_open(path))


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """Read a uint8 label map (H, W) saved as a single-channel or palette PNG."""
    im = _open(path)
    if im.mode not in ("L", "P"):
        raise ImageError(f"label map {path} has mode {im.mode}; expected a single-channel PNG")
    return np.asarray(im, dtype=np.uint8).copy()


def check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a batch of RGB uint8 (H, W, 3) arrays; raise :class:`InputError` on the first bad one."""
    out = []
    for i, img in enumerate(images):
        a = np.asarray(img)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
            raise InputError(
                f"image {i} must be an RGB uint8 array of shape (H, W, 3), got {a.dtype} {a.shape}"
            )
        out.append(a)
    return out


def encode_png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def write_png(path: str | os.PathLike, arr: np.ndarray) -> None:
    """Write an RGB (H, W, 3) or label (H, W) uint8 array as PNG, atomically."""
    if arr.dtype != np.uint8:
        raise ValueError(f"write_png expects uint8, got {arr.dtype}")
    atomic_write_bytes(path, encode_png(arr))
