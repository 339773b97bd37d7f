"""Feature extraction for evaluation, and cosine similarity / distance between feature sets.

The loader yields dict batches with ``img`` of shape (B, 3, H, W) for images or (B, T, 3, H, W) for
clips, plus ``pid``, ``camid``, ``clothes_id`` and optionally ``index`` (the dataset index). A clip's
feature is the mean over its T frames. With ``flip=True`` the features of the image (or clip) and of
its horizontally flipped copy are summed (test-time flip augmentation; the sum and the mean give
the same direction). When batches carry ``index``, every row sharing an index -- several clips of
one tracklet -- is averaged into one feature, and rows come out sorted by index, i.e. in dataset
order even if the loader shuffled. Finally every feature is L2-normalised, so the dot product is
the cosine similarity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcr.errors import InputError
from dlcr.utils.progress import track

__all__ = ["Features", "cosine_distance", "cosine_similarity", "extract_features"]


@dataclass(frozen=True, eq=False)
class Features:
    """L2-normalised features (N, D) float32 on the CPU with their labels (numpy, length N)."""

    feats: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    clothes_ids: np.ndarray
    index: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # dataset index, if known

    def __post_init__(self) -> None:
        n = self.feats.shape[0]
        for name in ("pids", "camids", "clothes_ids"):
            if len(getattr(self, name)) != n:
                raise InputError(f"Features: {name} has {len(getattr(self, name))} entries for {n} features")

    def __len__(self) -> int:
        return int(self.feats.shape[0])


def _model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    for b in model.buffers():
        return b.device
    return torch.device("cpu")


def _forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Call the model and return (B, D) features whatever container it returns them in."""
    out = model(x)
    if isinstance(out, Mapping):
        for key in ("features", "feat", "embedding"):
            if key in out:
                out = out[key]
                break
        else:
            raise InputError(f"model returned a dict without a 'features' entry (keys: {sorted(out)})")
    elif isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        raise InputError(f"model returned {type(out).__name__}, expected a feature tensor")
    return out.reshape(out.shape[0], -1).float()


def _embed(model: torch.nn.Module, img: torch.Tensor, flip: bool) -> torch.Tensor:
    if img.ndim == 4:
        b, t = img.shape[0], 1
        x = img
    elif img.ndim == 5:
        b, t = img.shape[:2]
        x = img.flatten(0, 1)
    else:
        raise InputError(f"batch['img'] must be (B,3,H,W) or (B,T,3,H,W), got shape {tuple(img.shape)}")
    f = _forward(model, x)
    if flip:
        f = f + _forward(model, x.flip(-1))
    return f.view(b, t, -1).mean(1)


def _labels(batch: Mapping[str, Any], key: str, n: int) -> np.ndarray:
    if key not in batch:
        if key == "clothes_id":
            return np.full(n, -1, dtype=np.int64)
        raise InputError(f"loader batches need a {key!r} entry (got {sorted(batch)})")
    v = batch[key]
    a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
    return a.reshape(-1)


def _autocast_dtype(half: bool | str | torch.dtype, dev: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``half`` on ``dev``: None (full precision) off CUDA or when false."""
    if not half or dev.type != "cuda":
        return None
    if isinstance(half, torch.dtype):
        dtype = half
    elif half is True:
        dtype = torch.float16
    else:
        names = {"float16": torch.float16, "fp16": torch.float16, "half": torch.float16,
                 "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
        if str(half).lower() not in names:
            raise InputError(f"half must be true, false, float16 or bfloat16, got {half!r}")
        dtype = names[str(half).lower()]
    if dtype not in (torch.float16, torch.bfloat16):
        raise InputError(f"half must be a 16-bit float dtype, got {dtype}")
    return dtype


def extract_features(model: torch.nn.Module, loader: Any, *, flip: bool = True,
                     device: str | torch.device | None = None, desc: str = "features",
                     half: bool | str | torch.dtype = False) -> Features:
    """Embed every batch of ``loader`` with ``model`` (eval mode, no autograd); see the module doc.

    ``half``: on CUDA, run the model under float16 autocast (``"bfloat16"`` or a dtype for another
    16-bit type), with batches copied to the device without blocking; the features are summed,
    averaged and L2-normalised in float32 as always. Ignored on the CPU. The model's training flag
    is restored afterwards.
    """
    dev = torch.device(device) if device is not None else _model_device(model)
    amp = _autocast_dtype(half, dev)
    was_training = model.training
    model.eval()
    chunks: list[torch.Tensor] = []
    pids: list[np.ndarray] = []
    cams: list[np.ndarray] = []
    clothes: list[np.ndarray] = []
    indices: list[np.ndarray] = []
    has_index = None
    try:
        with torch.inference_mode():
            for batch in track(loader, desc=desc, unit="batch"):
                if not isinstance(batch, Mapping) or "img" not in batch:
                    raise InputError("loader batches must be dicts with an 'img' entry")
                if amp is None:
                    f = _embed(model, batch["img"].to(dev), flip).cpu()
                else:
                    with torch.autocast(dev.type, dtype=amp):
                        f = _embed(model, batch["img"].to(dev, non_blocking=True), flip)
                    f = f.float().cpu()
                n = f.shape[0]
                chunks.append(f)
                pids.append(_labels(batch, "pid", n))
                cams.append(_labels(batch, "camid", n))
                clothes.append(_labels(batch, "clothes_id", n))
                if has_index is None:
                    has_index = "index" in batch
                if has_index:
                    indices.append(_labels(batch, "index", n).astype(np.int64))
    finally:
        model.train(was_training)
    if not chunks:
        raise InputError(f"{desc}: the loader yielded no batch")
    feats = torch.cat(chunks)
    pid, cam, cl = np.concatenate(pids), np.concatenate(cams), np.concatenate(clothes)
    index = np.zeros(0, dtype=np.int64)
    if has_index:
        raw = np.concatenate(indices)
        index, first, inverse = np.unique(raw, return_index=True, return_inverse=True)
        inverse = torch.from_numpy(inverse.reshape(-1).astype(np.int64))
        sums = torch.zeros(len(index), feats.shape[1]).index_add_(0, inverse, feats)
        counts = torch.bincount(inverse, minlength=len(index)).clamp_min(1).unsqueeze(1)
        feats = sums / counts
        pid, cam, cl = pid[first], cam[first], cl[first]
    if not torch.isfinite(feats).all():
        raise InputError(f"{desc}: the model produced NaN or infinite features")
    return Features(feats=F.normalize(feats, dim=1).contiguous(), pids=pid, camids=cam, clothes_ids=cl,
                    index=index)


#: Query rows per matrix product in :func:`cosine_similarity`. Fixed, because a BLAS product's last
#: bits depend on how its rows are blocked: the streamed evaluation takes whole multiples of this
#: block, so its similarities are bit-identical to those of the whole matrix at once.
SIM_BLOCK = 256


def cosine_similarity(qf: torch.Tensor, gf: torch.Tensor, chunk: int = SIM_BLOCK,
                      out: torch.Tensor | None = None) -> torch.Tensor:
    """``qf @ gf.T`` as a float32 CPU tensor, computed ``chunk`` query rows at a time on the features'
    own device (a GPU when they live there); the cosine similarity when both sides are L2-normalised.
    ``out``: a contiguous float32 CPU tensor of shape (len(qf), len(gf)) to write into."""
    qf, gf = torch.as_tensor(qf).float(), torch.as_tensor(gf).float()
    if qf.ndim != 2 or gf.ndim != 2 or qf.shape[1] != gf.shape[1]:
        raise InputError(f"feature shapes do not match: {tuple(qf.shape)} vs {tuple(gf.shape)}")
    if gf.device != qf.device:
        gf = gf.to(qf.device)
    shape = (qf.shape[0], gf.shape[0])
    if out is None:
        out = torch.empty(shape)
    elif tuple(out.shape) != shape or out.dtype != torch.float32 or not out.is_contiguous():
        raise InputError(f"out must be a contiguous float32 tensor of shape {shape}")
    gt, step = gf.T, max(1, int(chunk))
    on_cpu = qf.device.type == "cpu"
    for r0 in range(0, qf.shape[0], step):
        if on_cpu:
            torch.matmul(qf[r0:r0 + step], gt, out=out[r0:r0 + step])
        else:
            out[r0:r0 + step] = (qf[r0:r0 + step] @ gt).cpu()
    return out


def cosine_distance(qf: torch.Tensor, gf: torch.Tensor, chunk: int = SIM_BLOCK) -> torch.Tensor:
    """``1 - qf @ gf.T`` (float32, CPU), chunked over query rows."""
    return cosine_similarity(qf, gf, chunk).neg_().add_(1.0)
