"""A run's trained re-id model, rebuilt at report time from its checkpoint, for the figures that need
more than the saved test features: embeddings of other images (the real and generated training images
of Fig. A7) and Grad-CAM activation maps (Fig. A6).

The model is rebuilt as ``dlcr evaluate`` does it: the architecture, identity count and stage widths
(and ``model.backbone``) come from the checkpoint, the input size (``data.height`` / ``data.width``,
``data.interpolation``) from the training config it recorded, and only the weights file is read
(safetensors, verified; no RNG state restored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcr.errors import CheckpointError
from dlcr.io.images import read_rgb
from dlcr.report.common import Skip


@dataclass(frozen=True)
class RunModel:
    """A trained model in eval mode on the CPU and the input it expects."""

    model: nn.Module
    height: int
    width: int
    interpolation: str
    checkpoint: Path


def _recorded(config: Any, section: str, key: str, default: Any) -> Any:
    part = config.get(section) if isinstance(config, Mapping) else None
    value = part.get(key) if isinstance(part, Mapping) else None
    return default if value is None else value


def load_run_model(run: Path) -> RunModel:
    """The model of ``run/checkpoints`` (its ``last`` checkpoint, the one the run's test evaluation
    used; else the newest complete one); a :class:`Skip` naming the folder when there is none."""
    from dlcr.engine.checkpoint import load_checkpoint
    from dlcr.engine.checkpoint_files import read_checkpoint_meta
    from dlcr.models import create_model, model_options

    ck = run / "checkpoints"
    if not ck.is_dir():
        raise Skip(f"no {ck} (the trained model is needed to compute this figure)")
    meta_file, meta = read_checkpoint_meta(ck / "last.json" if (ck / "last.json").is_file() else ck)
    num_pids = int(meta.get("num_pids") or 0)
    if num_pids < 1:
        raise CheckpointError(f"{meta_file} does not record the number of training identities")
    cfg = meta.get("config") if isinstance(meta.get("config"), Mapping) else {}
    arch = str(meta.get("arch") or _recorded(cfg, "model", "name", "cal_resnet50"))
    widths = _recorded(cfg, "model", "widths", None)
    backbone = _recorded(cfg, "model", "backbone", None)
    model = create_model(arch, num_pids, pretrained=None, **model_options(arch, widths, backbone))
    height, width = _recorded(cfg, "data", "height", None), _recorded(cfg, "data", "width", None)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (height, width)):
        raise CheckpointError(f"{meta_file} does not record the input size it was trained at (data.height, "
                              "data.width)")
    load_checkpoint(meta_file, model=model, map_location="cpu", restore_rng=False)
    model.eval()
    return RunModel(model=model, height=int(height), width=int(width),
                    interpolation=str(_recorded(cfg, "data", "interpolation", "bilinear")), checkpoint=meta_file)


def image_batch(rm: RunModel, images: Sequence[np.ndarray]) -> torch.Tensor:
    """RGB uint8 images as the model's test input (resized, ImageNet-normalised), one batch."""
    from dlcr.data.transforms import build_transforms

    tf = build_transforms(rm.height, rm.width, train=False, interpolation=rm.interpolation)  # type: ignore[arg-type]
    return torch.stack([tf(im) for im in images])


def embed(rm: RunModel, paths: Sequence[Path], batch_size: int = 64) -> np.ndarray:
    """L2-normalised features (n, D) of the image files ``paths`` (one view each, no flip)."""
    out = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            x = image_batch(rm, [read_rgb(p) for p in paths[i:i + batch_size]])
            out.append(nn.functional.normalize(rm.model(x).float(), dim=1))
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def target_layer(model: nn.Module) -> nn.Module:
    """The backbone's last stage: ``layer4`` of the ResNets; for another backbone (timm) the whole
    backbone, whose output is its last stage's feature map (what the model pools)."""
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise CheckpointError(f"{type(model).__name__} has no backbone to take activation maps from")
    return getattr(backbone, "layer4", backbone)


def grad_cam(rm: RunModel, images: Sequence[np.ndarray], targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM (captum's ``LayerGradCam``) of the backbone's last stage for the score
    ``cos(f(x_i), targets_i)``: the cosine similarity of each image's feature to a target direction.

    Returns the maps (n, h, w) at the feature-map resolution, ReLU'd and scaled to a maximum of 1 per
    image (all zero when nothing in the image raises the score), and the scores (n,).
    """
    from captum.attr import LayerGradCam

    x = image_batch(rm, images)
    t = nn.functional.normalize(torch.as_tensor(np.asarray(targets), dtype=torch.float32), dim=1)
    if t.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} images but {t.shape[0]} targets")

    def score(inp: torch.Tensor) -> torch.Tensor:
        return (nn.functional.normalize(rm.model(inp).float(), dim=1) * t).sum(dim=1)

    with torch.enable_grad():
        maps = LayerGradCam(score, target_layer(rm.model)).attribute(x, relu_attributions=True)
    with torch.inference_mode():
        scores = score(x)
    m = maps.detach().sum(dim=1).numpy().astype(np.float64)  # (n, h, w); one channel already
    peak = m.reshape(len(m), -1).max(axis=1)
    m = np.where(peak[:, None, None] > 0, m / np.where(peak > 0, peak, 1.0)[:, None, None], 0.0)
    return m, scores.numpy().astype(np.float64)


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A (h, w) map resized (bilinear) to (height, width), values kept in [0, 1]."""
    t = torch.as_tensor(cam, dtype=torch.float32)[None, None]
    up = nn.functional.interpolate(t, size=(height, width), mode="bilinear", align_corners=False)
    return up[0, 0].clamp(0, 1).numpy().astype(np.float64)
