"""The pixel measurements of the ``rule`` captioner (:mod:`dlcr.generation.describers.rule`): a
garment region's colours in CIELAB (a deterministic two-means split, :func:`measure_region`) and its
colour-alternation statistics, and the pattern decided from them (:func:`classify_pattern`,
:func:`pattern_colours`). Vectorised numpy; the tunables are documented in that module's docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dlcr.vocabulary import rgb_to_lab

KMEANS_ITERS = 10
BIMODAL_DELTA_E = 20.0  # cluster centres this far apart (CIE76) are two colours
BIMODAL_MIN_FRACTION = 0.1
PATTERN_MIN_CHANGES = 3.0  # colour changes per scan line for a pattern
STRIPE_RATIO = 0.3  # the other axis changes less than this fraction as often -> stripes
PATTERN_MIN_STRUCTURE = 0.3  # spatial regularity of a pattern (independent noise is near 0)
STRUCTURE_LAGS = tuple(range(1, 9))
NOISE_SIGMAS = 2.5
CHECK_MIN_FRACTION = 0.3
EQUAL_SHARE = 0.35  # above this minor share the more colourful colour is named first  # minor colour share of a two-axis pattern: checks above, dots below


@dataclass(frozen=True)
class RegionStats:
    dominant: tuple[float, float, float]  # CIELAB
    secondary: tuple[float, float, float] | None  # CIELAB of the second colour, if two-coloured
    minor_fraction: float  # share of the smaller colour cluster (0 when one colour)
    changes_y: float  # colour changes per column (vertical scan lines)
    changes_x: float  # colour changes per row
    rate_y: float  # colour changes per vertical neighbour pair
    rate_x: float
    structure: float  # largest |autocorrelation| of the colour labels over small lags (0 = noise)


def erode4(mask: np.ndarray) -> np.ndarray:
    """Binary erosion with the 4-neighbourhood (pixels on the image border are dropped)."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[0] = out[-1] = False
    out[:, 0] = out[:, -1] = False
    return out


def core_mask(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """The mask without its 1-pixel rim (mixed colours) when enough of it survives, else the mask."""
    core = erode4(mask)
    n_core = int(np.count_nonzero(core))
    return core if n_core >= max(min_pixels, 0.4 * np.count_nonzero(mask)) else mask


def two_means(lab: np.ndarray, iters: int = KMEANS_ITERS) -> np.ndarray:
    """Boolean cluster membership (True = second cluster) of a two-means split of (N, 3) colours.

    Deterministic start: the per-channel median and the pixel farthest from it (first on ties).
    """
    n = len(lab)
    c0 = np.median(lab, axis=0)
    c1 = lab[int(np.argmax(((lab - c0) ** 2).sum(axis=1)))]
    total = lab.sum(axis=0)
    assign = np.zeros(n, dtype=bool)
    for _ in range(iters):
        # |p - c1|^2 < |p - c0|^2  <=>  p . (c0 - c1) < (|c0|^2 - |c1|^2) / 2: one mat-vec per step
        new = lab @ (c0 - c1) < 0.5 * (c0 @ c0 - c1 @ c1)
        n1 = int(np.count_nonzero(new))
        if n1 == 0 or n1 == n:
            return np.zeros(n, dtype=bool)
        if np.array_equal(new, assign):
            break
        assign = new
        s1 = lab[assign].sum(axis=0)
        c0, c1 = (total - s1) / (n - n1), s1 / n1
    return assign


def autocorrelation(cluster: np.ndarray, lag: int, axis: int) -> float:
    """Correlation of the +-1 colour labels of pixel pairs ``lag`` apart along ``axis`` (-1 = outside).

    Returned as ``max(0, |r| - NOISE_SIGMAS / sqrt(pairs))``: independent noise gives about 0;
    stripes, checks and dots give large values at some lag (``r`` positive at the period, negative
    at half of it).
    """
    n = cluster.shape[axis]
    if lag >= n:
        return 0.0
    a = cluster.take(np.arange(0, n - lag), axis=axis)
    b = cluster.take(np.arange(lag, n), axis=axis)
    valid = (a >= 0) & (b >= 0)
    k = int(np.count_nonzero(valid))
    if k < 2:
        return 0.0
    sa = 2.0 * a[valid] - 1.0
    sb = 2.0 * b[valid] - 1.0
    ma, mb = sa.mean(), sb.mean()
    den = math.sqrt(max(0.0, 1.0 - ma * ma) * max(0.0, 1.0 - mb * mb))
    if den <= 1e-9:
        return 0.0
    # minus its noise level: a small region's correlation is large by chance
    return max(0.0, abs(float(((sa * sb).mean() - ma * mb) / den)) - NOISE_SIGMAS / math.sqrt(k))


def _changes(a: np.ndarray, b: np.ndarray) -> tuple[int, int, int]:
    """(changes, pairs, scan lines with a pair) between aligned neighbour arrays (-1 = outside)."""
    valid = (a >= 0) & (b >= 0)
    changes = int(np.count_nonzero(valid & (a != b)))
    return changes, int(np.count_nonzero(valid)), int(np.count_nonzero(valid.any(axis=0)))


def measure_region(image: np.ndarray, mask: np.ndarray, min_pixels: int = 10) -> RegionStats:
    """Colours (CIELAB) and colour-alternation statistics of ``image`` inside ``mask``."""
    core = core_mask(mask, min_pixels)
    lab = rgb_to_lab(image[core])
    assign = two_means(lab) if len(lab) >= 4 else np.zeros(len(lab), dtype=bool)
    n = len(lab)
    n1 = int(np.count_nonzero(assign))
    minor = min(n1, n - n1) / max(1, n)
    sep = 0.0
    if n1:
        sep = float(np.sqrt(((lab[~assign].mean(axis=0) - lab[assign].mean(axis=0)) ** 2).sum()))
    if sep < BIMODAL_DELTA_E or minor < BIMODAL_MIN_FRACTION:
        med = tuple(float(v) for v in np.median(lab, axis=0))
        return RegionStats(med, None, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # type: ignore[arg-type]
    c_a, c_b = np.median(lab[~assign], axis=0), np.median(lab[assign], axis=0)
    dom, sec = (c_b, c_a) if n1 > n - n1 else (c_a, c_b)
    cluster = np.full(mask.shape, -1, dtype=np.int8)
    cluster[core] = assign
    structure = max(autocorrelation(cluster, lag, ax) for ax in (0, 1) for lag in STRUCTURE_LAGS)
    cy, py, ly = _changes(cluster[:-1], cluster[1:])
    cx, px, lx = _changes(cluster[:, :-1].T, cluster[:, 1:].T)
    return RegionStats(
        dominant=tuple(float(v) for v in dom),  # type: ignore[arg-type]
        secondary=tuple(float(v) for v in sec),  # type: ignore[arg-type]
        minor_fraction=float(minor),
        changes_y=cy / max(1, ly),
        changes_x=cx / max(1, lx),
        rate_y=cy / max(1, py),
        rate_x=cx / max(1, px),
        structure=structure,
    )


def classify_pattern(stats: RegionStats) -> str:
    """``plain``, ``striped``, ``checked`` or ``dotted`` from :class:`RegionStats`."""
    if (
        stats.secondary is None
        or max(stats.changes_x, stats.changes_y) < PATTERN_MIN_CHANGES
        or stats.structure < PATTERN_MIN_STRUCTURE
    ):
        return "plain"
    hi, lo = max(stats.rate_x, stats.rate_y), min(stats.rate_x, stats.rate_y)
    if lo < STRIPE_RATIO * hi:
        return "striped"
    return "checked" if stats.minor_fraction >= CHECK_MIN_FRACTION else "dotted"


def pattern_colours(
    stats: RegionStats, pattern: str
) -> tuple[tuple[float, float, float], tuple[float, float, float] | None]:
    """(main, second) colour: by area, except that a pattern of two near-equal shares names the
    more colourful one first ("red and white striped", not "white and red striped")."""
    if pattern == "plain" or stats.secondary is None:
        return stats.dominant, None
    chroma = lambda c: math.hypot(c[1], c[2])  # noqa: E731
    if stats.minor_fraction >= EQUAL_SHARE and chroma(stats.secondary) > chroma(stats.dominant) + 10.0:
        return stats.secondary, stats.dominant
    return stats.dominant, stats.secondary
