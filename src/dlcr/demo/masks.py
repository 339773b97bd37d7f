"""The demo's clothes masks: which parser makes them, and how close they are to the world's truth."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dlcr.demo.settings import MASK_SOURCES
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


def choose_masks(requested: str) -> tuple[str, str]:
    """(source used, reason when it is not the one asked for) for ``requested`` masks: ``pose`` falls
    back to ``truth`` with a logged reason when the pose parser cannot be built (mediapipe missing)."""
    from dlcr.errors import ConfigError

    if requested not in MASK_SOURCES:
        raise ConfigError(f"--masks must be one of {', '.join(MASK_SOURCES)}, got {requested!r}")
    if requested == "pose":
        try:
            from dlcr.generation.parsers import create_parser

            create_parser("pose")
        except Exception as e:  # mediapipe missing or unusable: the ground truth, said loudly
            from dlcr.errors import first_line

            reason = f"the pose parser is unavailable ({first_line(str(e))}); using the ground-truth label maps"
            log.warning("masks: %s", reason)
            return "truth", reason
    return requested, ""


def mask_iou(samples: Sequence[Any], world_root: Path, label_root: Path) -> dict[str, Any]:
    """Mean per-image IoU of the label maps in ``label_root`` against the world's ground truth: of the
    clothes mask, the person mask and each garment part (an image where both masks are empty counts 1)."""
    import numpy as np

    from dlcr.generation.parsers.folder import SynthCCParser
    from dlcr.generation.parsing import label_path
    from dlcr.io.images import read_label_map
    from dlcr.lip import clothes_mask, part_masks

    gt_parser = SynthCCParser()
    sums: dict[str, float] = {"clothes": 0.0, "person": 0.0, "upper": 0.0, "lower": 0.0, "footwear": 0.0}

    def iou(a: Any, b: Any) -> float:
        union = int(np.count_nonzero(a | b))
        return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union

    paths = sorted({s.path for s in samples})
    for p in paths:
        pred = read_label_map(label_path(label_root, p))
        gt = gt_parser.read(p, world_root)
        if pred.shape != gt.shape:
            from PIL import Image

            pred = np.asarray(Image.fromarray(pred).resize(gt.shape[::-1], Image.Resampling.NEAREST))
        sums["clothes"] += iou(clothes_mask(pred), clothes_mask(gt))
        sums["person"] += iou(pred != 0, gt != 0)
        pp, gp = part_masks(pred), part_masks(gt)
        for part in ("upper", "lower", "footwear"):
            sums[part] += iou(pp[part], gp[part])
    n = max(len(paths), 1)
    return {**{k: v / n for k, v in sums.items()}, "images": len(paths)}
