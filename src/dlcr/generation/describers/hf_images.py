"""Whole-person images for the VLM captioner (:class:`dlcr.generation.describers.hf.HFCaptioner`):
whether an image processor centre-crops, and how to pad an image so that the crop keeps all of it
(:func:`crop_padding`, :func:`pad_for_crop`, LLaVA-1.5's ``expand2square`` and its generalisation),
in the processor's mean colour (:func:`mean_colour`). Plain numpy; nothing is imported from
transformers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np


def _size_field(size: Any, key: str) -> int | None:
    value = size.get(key) if isinstance(size, dict) else getattr(size, key, None)
    return int(value) if value else None


def crop_padding(image_processor: Any) -> tuple[float, float, float, float] | None:
    """How to pad images so that ``image_processor`` keeps all of them, or None when it does not crop.

    Returns ``(aspect_h, aspect_w, keep_h, keep_w)``: pad to the aspect ratio ``aspect_h:aspect_w``
    so that the resized canvas has the shape the processor resizes to, and make the canvas large
    enough that the image fits in the central ``keep_h × keep_w`` fraction the centre crop keeps.
    For LLaVA-1.5 (``shortest_edge`` 336, crop 336×336) that is a square canvas just large enough
    for the image, LLaVA-1.5's own ``expand2square``; a processor that resizes to 256 and crops 224
    gets a canvas 256/224 times larger. Decided from the processor's settings alone: it crops when
    ``do_center_crop`` is set with a ``crop_size``; it is left alone when it tiles the image
    (``image_grid_pinpoints``, LLaVA-NeXT / OneVision) or pads it to a square itself (``do_pad``).
    """
    if image_processor is None or getattr(image_processor, "image_grid_pinpoints", None):
        return None
    if getattr(image_processor, "do_pad", False) or not getattr(image_processor, "do_center_crop", False):
        return None
    crop = getattr(image_processor, "crop_size", None)
    ch, cw = _size_field(crop, "height"), _size_field(crop, "width")
    if not (ch and cw):
        return None
    size = getattr(image_processor, "size", None) if getattr(image_processor, "do_resize", True) else None
    short = _size_field(size, "shortest_edge") if size is not None else None
    rh = _size_field(size, "height") if size is not None else None
    rw = _size_field(size, "width") if size is not None else None
    if short:  # the canvas (aspect ch:cw) is scaled so that its short side is `short`, then cropped
        keep = min(1.0, min(ch, cw) / short)
        return float(ch), float(cw), keep, keep
    if rh and rw:  # resized to exactly rh × rw, then cropped
        return float(rh), float(rw), min(1.0, ch / rh), min(1.0, cw / rw)
    return float(ch), float(cw), 1.0, 1.0


def pad_for_crop(
    image: np.ndarray, padding: tuple[float, float, float, float], fill: Sequence[int]
) -> np.ndarray:
    """``image`` (H×W×3 uint8) centred on a canvas of colour ``fill`` shaped by :func:`crop_padding`."""
    ah, aw, kh, kw = padding
    h, w = image.shape[:2]
    scale = max(h / (kh * ah), w / (kw * aw))
    canvas_h = max(h, math.ceil(scale * ah - 1e-6))
    canvas_w = max(w, math.ceil(scale * aw - 1e-6))
    if (canvas_h, canvas_w) == (h, w):
        return image
    out = np.empty((canvas_h, canvas_w, image.shape[2]), dtype=image.dtype)
    out[...] = np.asarray(fill, dtype=image.dtype)[: image.shape[2]]
    top, left = (canvas_h - h) // 2, (canvas_w - w) // 2
    out[top : top + h, left : left + w] = image
    return out


def mean_colour(image_processor: Any) -> tuple[int, int, int]:
    """The processor's ``image_mean`` as 0-255 integers (LLaVA-1.5's padding colour), black without one."""
    mean = getattr(image_processor, "image_mean", None)
    if mean is None:
        return (0, 0, 0)
    values = [float(mean)] * 3 if isinstance(mean, (int, float)) else [float(x) for x in mean]
    if len(values) == 1:
        values *= 3
    r, g, b = (int(x * 255) for x in values[:3])
    return r, g, b
