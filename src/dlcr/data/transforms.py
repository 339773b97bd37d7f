"""Image transforms of the CAL / BoT recipe (torchvision ``transforms.v2``).

Train: resize to (H, W) → random horizontal flip → zero-pad ``pad`` px → random (H, W) crop →
float tensor → ImageNet normalisation → random erasing (p = ``random_erasing``, area 2–40 %, aspect
0.3–3.3, filled with 0 = the ImageNet mean after normalisation). Test: resize → tensor → normalise.

CAL itself uses a "random crop after 1.125× enlargement with p=0.5"; the pad-and-crop here is the
BoT variant, which the task specifies. The pipeline accepts PIL images, HWC uint8 numpy arrays
and CHW uint8 tensors. Resizing happens on uint8 data before the float conversion (cheaper).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def build_transforms(height: int, width: int, *, train: bool, random_erasing: float = 0.5,
                     pad: int = 10) -> Callable[[Any], torch.Tensor]:
    """The train or test transform for (height, width) re-id crops; returns a float (3, H, W) tensor."""
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    steps: list[Any] = [_ToImage(), v2.Resize((height, width), antialias=True)]
    if train:
        steps.append(v2.RandomHorizontalFlip(0.5))
        if pad > 0:
            steps += [v2.Pad(pad, fill=0), v2.RandomCrop((height, width))]
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and random_erasing > 0:
        steps.append(v2.RandomErasing(p=random_erasing, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    return v2.Compose(steps)


def denormalize(x: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation (for visualisation); values in [0, 1] up to erasing/padding."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=x.dtype, device=x.device).view(-1, 1, 1)
    return x * std + mean
