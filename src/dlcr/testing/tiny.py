"""Tiny random components for tests and offline demos, built from configs, never downloaded.

Each factory builds the real architecture of a component at toy size, so tests exercise the real
loading and inference code paths in well under a second.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: A small SCHP: one bottleneck per stage and 1/8 of the official channel widths.
TINY_SCHP_ARCH: dict[str, Any] = {"layers": (1, 1, 1, 1), "width": 8}


def tiny_schp(num_classes: int = 20, seed: int = 0, **arch: Any) -> Any:
    """A randomly initialised :class:`~dlcr.generation.parsers.schp.SCHPNet` (tiny unless ``arch`` says otherwise)."""
    import torch

    from dlcr.generation.parsers.schp import SCHPNet

    torch.manual_seed(seed)
    net = SCHPNet(num_classes=num_classes, **{**TINY_SCHP_ARCH, **arch})
    # non-trivial batch-norm statistics, so that loading them is observable
    g = torch.Generator().manual_seed(seed + 1)
    for name, buf in net.named_buffers():
        if name.endswith("running_mean"):
            buf.copy_(torch.randn(buf.shape, generator=g) * 0.1)
        elif name.endswith("running_var"):
            buf.copy_(torch.rand(buf.shape, generator=g) + 0.5)
    return net.eval()


def tiny_schp_checkpoint(path: str | os.PathLike, num_classes: int = 20, seed: int = 0, **arch: Any) -> Path:
    """Write a tiny SCHP checkpoint laid out like the official one (``state_dict``, ``module.`` keys)."""
    from dlcr.generation.parsers.schp import save_schp_checkpoint

    return save_schp_checkpoint(tiny_schp(num_classes, seed, **arch), path)


def tiny_segformer(
    tmp_dir: str | os.PathLike,
    labels: str | Sequence[str] = "lip",
    seed: int = 0,
    image_size: int = 32,
) -> Path:
    """Save a tiny random SegFormer + its image processor under ``tmp_dir``; return the folder.

    ``labels`` is ``"lip"`` (20 LIP class names), ``"atr"`` (18 ATR names) or an explicit list of
    class names. The folder loads with ``AutoModelForSemanticSegmentation.from_pretrained``.
    """
    import torch
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    from dlcr.lip import ATR_LABELS, LIP_LABELS

    names = {"lip": LIP_LABELS, "atr": ATR_LABELS}.get(labels, labels) if isinstance(labels, str) else labels
    if isinstance(names, str):
        raise ValueError(f"labels must be 'lip', 'atr' or a list of names, got {labels!r}")
    names = list(names)
    config = SegformerConfig(
        num_encoder_blocks=2,
        depths=[1, 1],
        sr_ratios=[2, 1],
        hidden_sizes=[8, 16],
        patch_sizes=[7, 3],
        strides=[4, 2],
        num_attention_heads=[1, 1],
        mlp_ratios=[2, 2],
        decoder_hidden_size=16,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )
    torch.manual_seed(seed)
    model = SegformerForSemanticSegmentation(config).eval()
    tag = labels if isinstance(labels, str) else f"{len(names)}cls"
    folder = Path(tmp_dir) / f"tiny-segformer-{tag}-{seed}"
    model.save_pretrained(folder)
    SegformerImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(folder)
    return folder


__all__ = ["TINY_SCHP_ARCH", "tiny_schp", "tiny_schp_checkpoint", "tiny_segformer"]
