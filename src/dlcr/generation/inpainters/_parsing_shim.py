"""Temporary stand-in for dlcr.generation.parsing (LIP masks) until that module lands."""

from __future__ import annotations

import numpy as np

try:  # pragma: no cover - switched to the real module when it exists
    from dlcr.generation.parsing import clothes_mask, part_masks
except ImportError:  # pragma: no cover
    _BODY_PARTS = {"upper": (5, 6, 7, 10, 11), "lower": (9, 12, 8), "footwear": (18, 19)}
    _CLOTHES = tuple(range(3, 13)) + (18, 19)

    def clothes_mask(labels: np.ndarray) -> np.ndarray:
        return np.isin(labels, _CLOTHES)

    def part_masks(labels: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.isin(labels, v) for k, v in _BODY_PARTS.items()}


__all__ = ["clothes_mask", "part_masks"]
