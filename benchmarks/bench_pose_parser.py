"""How well the offline ``pose`` parser recovers the synthetic world's ground-truth garments, and how fast.

Renders a small synthcc world, parses its training images with the ``pose`` backend and compares the
clothes mask and the per-part masks (upper / lower / footwear) with the world's ground-truth label
maps (intersection over union, pooled over images). The reference measured in the same run is the
parser's own fixed-geometry fallback laid over the same person mask, i.e. what the landmarks add.

    .venv/bin/python benchmarks/bench_pose_parser.py --ids 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ids", type=int, default=10)
    ap.add_argument("--max-images", type=int, default=120)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from dlcr.data.datasets import create_dataset
    from dlcr.generation.parsers.folder import SynthCCParser
    from dlcr.generation.parsers.pose import PoseParser, fallback_labels, mediapipe_missing
    from dlcr.io.images import read_rgb
    from dlcr.lip import BODY_PARTS, CLOTHES_LABELS, labels_mask
    from dlcr.synth import render_world

    reason = mediapipe_missing()
    if reason:
        raise SystemExit(f"skipped: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench-pose-") as tmp:
        root = Path(tmp)
        render_world(root, ids=args.ids, seed=0, height=128, width=64)
        ds = create_dataset("synthcc", root)
        paths = [s.path for s in ds.train][: args.max_images]
        images = [read_rgb(root / p) for p in paths]
        gt = SynthCCParser().parse_files(paths, root)
        parser = PoseParser()
        t0 = time.perf_counter()
        pred = parser.parse(images)
        per_image = (time.perf_counter() - t0) / len(images)
        ref = []
        for img in images:
            person, _ = parser.person_mask(img)
            ref.append(fallback_labels(person))
        parser.close()

    def pooled(maps: list[np.ndarray], ids: frozenset[int]) -> np.ndarray:
        return np.concatenate([labels_mask(m, ids).ravel() for m in maps])

    print(f"{len(images)} synthcc images (128x64), pose found in {len(images) - parser.fallback_count}, "
          f"{1000 * per_image:.1f} ms per image (pose + labels; torch at 1 thread, mediapipe its own)")
    print(f"{'mask':<10}{'pose IoU':>10}{'fixed IoU':>11}{'ratio':>8}")
    for name, ids in [("clothes", CLOTHES_LABELS), *BODY_PARTS.items()]:
        g = pooled(gt, ids)
        a, b = iou(pooled(pred, ids), g), iou(pooled(ref, ids), g)
        print(f"{name:<10}{a:>10.3f}{b:>11.3f}{a / b:>8.2f}")


if __name__ == "__main__":
    main()
