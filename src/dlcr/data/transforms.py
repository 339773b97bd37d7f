"""Image transforms of the CAL recipe (Gu et al., CVPR 2022; ``guxinqian/Simple-CCReID``).

Train, ``crop="cal"`` (the default; CAL's ``data/__init__.py: build_img_transforms``):

1. resize to (H, W);
2. with probability ``crop_prob`` (CAL ``AUG.RC_PROB`` = 0.5) enlarge to
   (round(1.125·H), round(1.125·W)) and crop an (H, W) window back at a random position
   (CAL ``data/img_transforms.py: RandomCroping``);
3. horizontal flip with probability ``flip_prob`` (``AUG.RF_PROB`` = 0.5);
4. float tensor, ImageNet normalisation;
5. random erasing with probability ``random_erasing`` (``AUG.RE_PROB`` = 0.5). ``erasing="cal"``
   is CAL's ``RandomErasing``: up to 100 tries of an area drawn uniformly in [2 %, 40 %] of the
   image and an aspect ratio drawn *uniformly* in [0.3, 1/0.3]; the rectangle is filled, after
   normalisation, with the constants (0.4914, 0.4822, 0.4465) of CAL's code.
   ``erasing="torchvision"`` is ``torchvision.transforms.v2.RandomErasing`` (10 tries, log-uniform
   aspect ratio, filled with 0 = the ImageNet mean after normalisation).

``crop="pad"`` is the BoT variant instead of step 2 (flip, zero-pad ``pad`` px, random (H, W)
crop); ``crop="none"`` skips step 2 (CAL's video recipe, ``build_vid_transforms``, has no crop).
Test: resize → float tensor → normalise.

Every random decision draws from torch's global generator (which the data loader seeds per worker),
in this order per image: crop (one draw for the coin, then two for the x / y offsets when it
fires), flip (one draw), erasing (one draw for the coin, then per try two for area and aspect, and
two for top / left once a try fits).
``tests/unit/test_transforms.py`` re-states CAL's logic with these draws and checks the pipeline
against it.

The pipeline accepts PIL images, HWC uint8 numpy arrays and CHW uint8 tensors. Resizing (including
the 1.125× enlargement) happens on uint8 data before the float conversion, as CAL does on PIL
images.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: What CAL's image RandomErasing writes into the erased rectangle (after normalisation): the default
#: ``mean`` argument of ``RandomErasing`` in Simple-CCReID ``data/img_transforms.py``.
CAL_ERASING_FILL = (0.4914, 0.4822, 0.4465)
#: CAL's RandomCroping enlargement factor (1 + 1/8).
CAL_CROP_SCALE = 1.125

Crop = Literal["cal", "pad", "none"]
Erasing = Literal["cal", "torchvision"]
Interpolation = Literal["bilinear", "bicubic"]
_INTERP = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


class _ToImage:
    """PIL / HWC numpy / CHW tensor → uint8 CHW tensor (v2.ToImage, but numpy handled as HWC)."""

    def __init__(self) -> None:
        self._to_image = v2.ToImage()

    def __call__(self, img: Any) -> torch.Tensor:
        if isinstance(img, np.ndarray):
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        return self._to_image(img)


def _rand() -> float:
    return float(torch.rand(()))


class CALRandomCrop:
    """CAL's ``RandomCroping``: with probability ``p`` enlarge by 1.125 and crop the original size
    back at a uniformly drawn position (offsets rounded to whole pixels, as CAL's ``round``)."""

    def __init__(self, p: float = 0.5, interpolation: Interpolation = "bilinear"):
        self.p = float(p)
        self.interpolation = _INTERP[interpolation]

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if _rand() >= self.p:
            return img
        h, w = img.shape[-2:]
        nh, nw = int(round(h * CAL_CROP_SCALE)), int(round(w * CAL_CROP_SCALE))
        big = TF.resize(img, [nh, nw], interpolation=self.interpolation, antialias=True)
        x1 = int(round(_rand() * (nw - w)))
        y1 = int(round(_rand() * (nh - h)))
        return big[..., y1:y1 + h, x1:x1 + w]

    def __repr__(self) -> str:
        return f"CALRandomCrop(p={self.p}, scale={CAL_CROP_SCALE})"


class RandomFlip:
    """Horizontal flip with probability ``p`` (one draw per image)."""

    def __init__(self, p: float = 0.5):
        self.p = float(p)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        return img.flip(-1) if _rand() < self.p else img

    def __repr__(self) -> str:
        return f"RandomFlip(p={self.p})"


class CALRandomErasing:
    """CAL's image ``RandomErasing`` (Zhong et al. 2017 as Simple-CCReID writes it) on a normalised
    CHW float tensor: area fraction ~ U(sl, sh), aspect ~ U(r1, 1/r1), up to 100 tries until the
    rectangle fits strictly inside the image, then filled channel-wise with ``fill``."""

    def __init__(self, p: float = 0.5, sl: float = 0.02, sh: float = 0.4, r1: float = 0.3,
                 fill: tuple[float, ...] = CAL_ERASING_FILL, tries: int = 100):
        self.p, self.sl, self.sh, self.r1 = float(p), float(sl), float(sh), float(r1)
        self.fill = tuple(float(v) for v in fill)
        self.tries = int(tries)

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if _rand() >= self.p:
            return img
        c, hh, ww = img.shape[-3:]
        area = hh * ww
        for _ in range(self.tries):
            target = (self.sl + (self.sh - self.sl) * _rand()) * area
            aspect = self.r1 + (1 / self.r1 - self.r1) * _rand()
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < ww and h < hh:
                top = int(torch.randint(0, hh - h + 1, ()))
                left = int(torch.randint(0, ww - w + 1, ()))
                img = img.clone()
                fill = self.fill if c == len(self.fill) else self.fill[:1] * c
                img[..., top:top + h, left:left + w] = torch.tensor(fill, dtype=img.dtype).view(-1, 1, 1)
                return img
        return img

    def __repr__(self) -> str:
        return f"CALRandomErasing(p={self.p}, area=({self.sl}, {self.sh}), aspect=({self.r1}, {1 / self.r1:.3g}))"


def build_transforms(height: int, width: int, *, train: bool, random_erasing: float = 0.5,
                     pad: int = 10, crop: Crop = "cal", crop_prob: float = 0.5, flip_prob: float = 0.5,
                     erasing: Erasing = "cal", interpolation: Interpolation = "bilinear",
                     ) -> Callable[[Any], torch.Tensor]:
    """The train or test transform for (height, width) re-id crops; returns a float (3, H, W) tensor.

    Defaults are CAL's image recipe (see the module docstring); ``pad`` is read only by ``crop="pad"``.
    """
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if crop not in ("cal", "pad", "none"):
        raise ValueError(f"crop must be 'cal', 'pad' or 'none', got {crop!r}")
    if erasing not in ("cal", "torchvision"):
        raise ValueError(f"erasing must be 'cal' or 'torchvision', got {erasing!r}")
    if interpolation not in _INTERP:
        raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
    steps: list[Any] = [_ToImage(), v2.Resize((height, width), interpolation=_INTERP[interpolation],
                                              antialias=True)]
    if train:
        if crop == "cal":
            if crop_prob > 0:
                steps.append(CALRandomCrop(crop_prob, interpolation))
            steps.append(RandomFlip(flip_prob))
        elif crop == "pad":
            steps.append(RandomFlip(flip_prob))
            if pad > 0:
                steps += [v2.Pad(pad, fill=0), v2.RandomCrop((height, width))]
        else:
            steps.append(RandomFlip(flip_prob))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and random_erasing > 0:
        if erasing == "cal":
            steps.append(CALRandomErasing(random_erasing))
        else:
            steps.append(v2.RandomErasing(p=random_erasing, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    return v2.Compose(steps)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation (for visualisation); values in [0, 1] up to erasing/padding."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * std + mean
