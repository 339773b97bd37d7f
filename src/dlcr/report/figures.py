"""Pictures for the reports: thumbnails, mask overlays, retrieval ranking, the choice of what to
show (queries, identities, sources) and the numbers behind the feature figures (PCA, t-SNE, nearest
identities, activation shares); the plots themselves are :mod:`dlcr.report.plots`'.

The functions here take arrays and plain records and write PNGs; finding files in a demo, work or
run folder and assembling the page is the job of the section modules (:mod:`dlcr.report.html`,
:mod:`dlcr.report.folders` and the modules they import).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from dlcr.errors import InputError
from dlcr.io.images import write_png
from dlcr.lip import ACCESSORY_LABELS, BODY_PARTS

T = TypeVar("T")

#: Overlay colours of the garment parts (RGB); accessories get their own colour.
PART_COLOURS: Mapping[str, tuple[int, int, int]] = {
    "upper": (230, 60, 60),
    "lower": (50, 110, 230),
    "footwear": (40, 190, 80),
    "accessory": (240, 200, 30),
}

# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


def thumbnail(rgb: np.ndarray, max_height: int = 256) -> np.ndarray:
    """Shrink large photos so the report stays small; small images are kept as they are.

    The page scales thumbnails with CSS, so there is no point in upsampling here.
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"thumbnail expects an (H, W, 3) image, got shape {rgb.shape}")
    h, w = rgb.shape[:2]
    if h <= max_height:
        return rgb
    new_w = max(1, round(w * max_height / h))
    im = Image.fromarray(rgb).resize((new_w, max_height), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.uint8)


def mask_overlay(rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a colour per garment part over the image, so the reader sees what inpainting may change.

    Dress and jumpsuit pixels belong to both ``upper`` and ``lower``; the later part in
    :data:`BODY_PARTS` order wins, which is only a choice of colour.
    """
    if labels.shape != rgb.shape[:2]:
        # Parsers work at the image's size; a mismatch means a stale mask, so resize it (nearest)
        # rather than refuse: the overlay is only an illustration.
        labels = np.asarray(
            Image.fromarray(labels).resize((rgb.shape[1], rgb.shape[0]), Image.Resampling.NEAREST)
        )
    colour = np.zeros(rgb.shape, dtype=np.float32)
    covered = np.zeros(labels.shape, dtype=bool)
    groups = [(name, ids) for name, ids in BODY_PARTS.items()] + [("accessory", ACCESSORY_LABELS)]
    for name, ids in groups:
        m = np.isin(labels, sorted(ids))
        colour[m] = PART_COLOURS[name]
        covered |= m
    out = rgb.astype(np.float32)
    # Outside the clothes the image is dimmed, which makes the mask boundary easy to see.
    out[~covered] *= 0.6
    out[covered] = (1 - alpha) * out[covered] + alpha * colour[covered]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_png(path: str | os.PathLike, rgb: np.ndarray) -> None:
    write_png(path, np.ascontiguousarray(rgb, dtype=np.uint8))


# --------------------------------------------------------------------------------------------
# Retrieval under the clothes-changing protocol
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CCRanking:
    """Top-k gallery indices per query after removing junk, and which of them are correct."""

    top: np.ndarray  # (nq, k) gallery indices, best first; -1 where fewer than k valid entries
    correct: np.ndarray  # (nq, k) bool
    eligible: np.ndarray  # (nq,) bool: the query has at least one clothes-changing match


def rank_cc(sims: np.ndarray, good: np.ndarray, junk: np.ndarray, k: int = 5) -> CCRanking:
    """Rank the gallery by similarity for every query with junk removed, keeping the top ``k``."""
    sims = np.asarray(sims, dtype=np.float64)
    if sims.shape != good.shape or sims.shape != junk.shape:
        raise InputError(f"similarity {sims.shape} does not match the label masks {good.shape}")
    if not np.isfinite(sims).all():
        raise InputError("similarity matrix holds NaN or infinite values")
    masked = np.where(junk, -np.inf, sims)
    k = min(k, sims.shape[1])
    # argsort of the negated scores with a stable sort: ties keep gallery order, like the metrics.
    order = np.argsort(-masked, axis=1, kind="stable")[:, :k]
    valid = np.take_along_axis(~junk, order, axis=1)
    top = np.where(valid, order, -1)
    correct = np.take_along_axis(good, order, axis=1) & valid
    return CCRanking(top=top, correct=correct, eligible=good.any(axis=1))


def spread(items: Sequence[T], n: int) -> list[T]:
    """``items`` reordered so that the first ``n`` are spread evenly over the list, the rest follow in order."""
    step = max(1, len(items) // max(1, n))
    return list(items[::step]) + [x for i, x in enumerate(items) if i % step]


def one_per_key(items: Sequence[T], key: Callable[[T], Any], n: int) -> list[T]:
    """Up to ``n`` of ``items`` in their order, one per ``key`` while possible, then filled up in order."""
    chosen: list[T] = []
    seen: set[Any] = set()
    for x in items:
        if len(chosen) == n:
            return chosen
        k = key(x)
        if k not in seen:
            chosen.append(x)
            seen.add(k)
    for x in items:
        if len(chosen) == n:
            break
        if x not in chosen:
            chosen.append(x)
    return chosen


def pick_queries(
    first: np.ndarray, second: np.ndarray, eligible: np.ndarray, q_pids: np.ndarray, n: int = 6
) -> list[int]:
    """Choose queries to show: first those where the two arms' top-1 differ, then the rest.

    Both directions of disagreement are taken in turn (second-arm wins, first-arm wins, ...), one
    query per identity while possible, so the panel shows the disagreement honestly rather than
    only the cases that favour one arm.
    """
    idx = np.flatnonzero(eligible)
    wins = [int(i) for i in idx if second[i] and not first[i]]
    losses = [int(i) for i in idx if first[i] and not second[i]]
    rest = spread([int(i) for i in idx if first[i] == second[i]], n)  # not just the first few
    interleaved: list[int] = []
    for a, b in zip(wins, losses, strict=False):
        interleaved += [a, b]
    longer = wins if len(wins) > len(losses) else losses
    interleaved += longer[min(len(wins), len(losses)):]
    return one_per_key(interleaved + rest, lambda i: q_pids[i].item() if hasattr(q_pids[i], "item") else q_pids[i],
                       n)


# --------------------------------------------------------------------------------------------
# Features
# --------------------------------------------------------------------------------------------


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows of ``x`` on their first two principal axes (numpy SVD).

    Returns the (n, 2) coordinates and the fraction of variance each axis explains. The sign of an
    SVD axis is arbitrary; we fix it so the largest coordinate on each axis is positive, which
    keeps the picture stable across runs.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise InputError(f"PCA needs at least two feature rows, got shape {x.shape}")
    xc = x - x.mean(axis=0, keepdims=True)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    axes = vt[:2]
    if axes.shape[0] < 2:  # one-dimensional features: pad a zero axis
        axes = np.vstack([axes, np.zeros_like(axes)])
        s = np.concatenate([s, [0.0]])
    coords = xc @ axes.T
    for j in range(2):
        if coords[np.argmax(np.abs(coords[:, j])), j] < 0:
            coords[:, j] *= -1
    total = float((s**2).sum())
    ratio = (s[:2] ** 2) / total if total > 0 else np.zeros(2)
    return coords, ratio


def pick_identities(pids: np.ndarray, clothes: np.ndarray, n: int = 6) -> list[Any]:
    """The ``n`` identities with the most distinct outfits (then most images; ties by id)."""
    stats: dict[Any, tuple[set[Any], int]] = {}
    for p, c in zip(pids.tolist(), clothes.tolist(), strict=True):
        outfits, count = stats.get(p, (set(), 0))
        outfits.add(c)
        stats[p] = (outfits, count + 1)
    ranked = sorted(stats, key=lambda p: (-len(stats[p][0]), -stats[p][1], str(p)))
    return ranked[:n]


def distance_ratio(feats: np.ndarray, pids: np.ndarray) -> float:
    """Mean within-identity over mean between-identity Euclidean distance (lower = tighter ids)."""
    f = np.asarray(feats, dtype=np.float64)
    sq = (f * f).sum(1)
    d = np.sqrt(np.maximum(sq[:, None] + sq[None, :] - 2 * f @ f.T, 0.0))
    same = np.asarray(pids)[:, None] == np.asarray(pids)[None, :]
    off = ~np.eye(len(f), dtype=bool)
    within, between = d[same & off], d[~same]
    if within.size == 0 or between.size == 0 or between.mean() == 0:
        return float("nan")
    return float(within.mean() / between.mean())


def tsne_perplexity(n: int) -> float:
    """The t-SNE perplexity for ``n`` points: 30 (scikit-learn's default) when there are enough, else
    about a third of the other points, so that small sets are not squeezed into one blob (and the
    perplexity stays below ``n``, as scikit-learn requires)."""
    return float(min(30.0, max(2.0, (n - 1) / 3)))


def tsne_2d(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """Embed rows of ``x`` in 2-D with scikit-learn's t-SNE (Barnes-Hut, PCA initialisation, fixed ``seed``)."""
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits  # a scikit-learn dependency

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 4:
        raise InputError(f"t-SNE needs at least four feature rows, got shape {x.shape}")
    tsne = TSNE(n_components=2, perplexity=tsne_perplexity(len(x)), init="pca", learning_rate="auto",
                random_state=seed)
    # One thread: for a few hundred points OpenMP's threads cost more than they bring (ten times
    # slower on a busy 2-core machine), and the result does not depend on the machine's core count.
    with threadpool_limits(limits=1):
        return np.asarray(tsne.fit_transform(x), dtype=np.float64)


def nearest_same_identity(queries: np.ndarray, q_pids: np.ndarray, refs: np.ndarray, r_pids: np.ndarray) -> float:
    """Fraction of ``queries`` whose nearest row of ``refs`` (cosine similarity) has the same identity."""
    q = np.asarray(queries, dtype=np.float64)
    r = np.asarray(refs, dtype=np.float64)
    if len(q) == 0 or len(r) == 0:
        return float("nan")
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    r = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    nearest = np.argmax(q @ r.T, axis=1)
    return float(np.mean(np.asarray(r_pids)[nearest] == np.asarray(q_pids)))


def mass_share(cam: np.ndarray, region: np.ndarray, within: np.ndarray) -> float | None:
    """The share of an activation map's mass inside ``region`` out of its mass inside ``within``
    (boolean masks of the map's shape); None when the map has no mass there."""
    total = float(cam[within].sum())
    return float(cam[region & within].sum()) / total if total > 0 else None
