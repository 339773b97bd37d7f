"""The inpainter interface and the compositing rule shared by the inpainting backends.

An inpainter is a callable object: ``__init__`` loads its model once, ``__call__`` takes a batch of
:class:`InpaintItem` (job + source image + clothes mask + LIP label map) and returns one RGB uint8
image per item, at the source's size, in which every pixel outside the mask is bit-identical to the
source (:func:`composite`).

Backends (the registry ``INPAINTERS`` and ``create_inpainter`` of :mod:`dlcr.generation.inpainters`):

- ``recolor``: prompt-driven recolouring / patterning inside each body-part mask that keeps the
  original shading (offline, works on any image + label map; the paper's colour-change baseline).
- ``diffusers``: any diffusers Stable-Diffusion inpainting checkpoint (hub id or local folder).
- ``tiny``: the ``diffusers`` backend on a tiny random-weight pipeline built offline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from PIL import Image

from dlcr.errors import InputError
from dlcr.generation.planning import Job


@dataclass(frozen=True, eq=False)
class InpaintItem:
    """One unit of work for an inpainter.

    ``mask`` (H, W) bool marks the pixels that may change (the clothes); ``labels`` is the LIP
    label map (H, W) uint8 it was derived from, for backends that treat body parts separately.
    """

    job: Job
    image: np.ndarray
    mask: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise InputError(
                f"job {self.job.job_id}: image must be RGB uint8 (H, W, 3), got "
                f"{self.image.dtype} {self.image.shape}"
            )
        if self.mask.shape != self.image.shape[:2]:
            raise InputError(
                f"job {self.job.job_id}: mask shape {self.mask.shape} does not match "
                f"image shape {self.image.shape[:2]}"
            )
        if self.labels is not None and self.labels.shape != self.image.shape[:2]:
            raise InputError(
                f"job {self.job.job_id}: label map shape {self.labels.shape} does not "
                f"match image shape {self.image.shape[:2]}"
            )


class Inpainter(Protocol):
    name: str  # backend name, recorded in the manifest
    model: str  # model id / folder (or a description), recorded in the manifest

    def __call__(self, items: Sequence[InpaintItem]) -> list[np.ndarray]: ...


def composite(source: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``where(mask, generated, source)``: pixels outside the mask are exactly the source's."""
    if generated.shape != source.shape:
        raise InputError(f"generated image shape {generated.shape} != source shape {source.shape}")
    return np.where(mask.astype(bool)[..., None], generated, source).astype(np.uint8)


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of an RGB uint8 image to (height, width); a no-op when already that size."""
    if image.shape[:2] == (height, width):
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask."""
    if mask.shape == (height, width):
        return mask.astype(bool)
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((width, height), Image.Resampling.NEAREST)
    return np.asarray(im) > 127


def pipeline_image(image: np.ndarray, height: int, width: int) -> Image.Image:
    """An RGB image at a diffusion pipeline's working size, as the PIL image pipelines take."""
    return Image.fromarray(resize_rgb(image, height, width))


def pipeline_mask(mask: np.ndarray, height: int, width: int) -> Image.Image:
    """A bool mask at a diffusion pipeline's working size, as a PIL ``L`` image (inpaint = 255)."""
    return Image.fromarray(resize_mask(mask, height, width).astype(np.uint8) * 255)


