"""Pictures for the reports: thumbnails, mask overlays, retrieval ranking, curves and PCA.

The functions here take arrays and plain records and write PNGs; finding files in a demo, work or
run folder and assembling the page is :mod:`dlcr.report.html`'s and :mod:`dlcr.report.folders`' job. Matplotlib is imported inside the plotting
functions with the ``Agg`` backend, so importing this module is cheap and never needs a display.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from dlcr.errors import InputError
from dlcr.io.atomic import atomic_write_bytes
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


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

ARM_COLOURS = ("#4d4d4d", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | os.PathLike) -> None:
    plt = _pyplot()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


@dataclass(frozen=True)
class Curve:
    arm: str
    seed: int
    epochs: np.ndarray
    loss: np.ndarray
    eval_epochs: np.ndarray
    cc_top1: np.ndarray  # percent
    source: str = "test"  # "validation" when the run evaluated a validation split (val_cc_top1)


def curve_from_history(arm: str, seed: int, history: Sequence[Mapping[str, Any]]) -> Curve:
    """Pull loss and clothes-changing top-1 (a fraction in ``history.json``, in percent here) per epoch
    out of a ``history.json`` list, as :class:`dlcr.engine.trainer.Trainer` writes it: the validation
    split's (``val_cc_top1``) when the run has one, else the test set's (``cc_top1``)."""

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    key = "val_cc_top1" if any(num(r.get("val_cc_top1")) is not None for r in history) else "cc_top1"
    ep, loss, eep, cc = [], [], [], []
    for i, row in enumerate(history):
        e = num(row.get("epoch"))
        e = float(i + 1) if e is None else e
        if (lv := num(row.get("loss"))) is not None:
            ep.append(e)
            loss.append(lv)
        if (cv := num(row.get(key))) is not None:
            eep.append(e)
            cc.append(cv)
    return Curve(arm, seed, np.asarray(ep), np.asarray(loss), np.asarray(eep), 100.0 * np.asarray(cc, dtype=np.float64),
                 source="validation" if key == "val_cc_top1" else "test")


def plot_curves(curves: Sequence[Curve], path: str | os.PathLike, labels: Mapping[str, str]) -> None:
    """Loss and CC top-1 per epoch, one colour per arm, one line per seed."""
    plt = _pyplot()
    arms = list(dict.fromkeys(c.arm for c in curves))
    colour = {a: ARM_COLOURS[i % len(ARM_COLOURS)] for i, a in enumerate(arms)}
    fig, (ax_l, ax_c) = plt.subplots(1, 2, figsize=(12, 4))
    labelled: set[tuple[str, str]] = set()
    for c in curves:
        for ax, x, y, kind in ((ax_l, c.epochs, c.loss, "loss"), (ax_c, c.eval_epochs, c.cc_top1, "cc")):
            if len(x) == 0:
                continue
            first = (c.arm, kind) not in labelled
            labelled.add((c.arm, kind))
            ax.plot(x, y, color=colour[c.arm], marker="o" if kind == "cc" else None, ms=3, lw=1.5,
                    alpha=1.0 if first else 0.45, label=labels.get(c.arm, c.arm) if first else None)
    ax_l.set(title="training loss", xlabel="epoch", ylabel="loss")
    where = "validation" if any(c.source == "validation" for c in curves) else "test"
    ax_c.set(title=f"clothes-changing top-1 ({where})", xlabel="epoch", ylabel="top-1 (%)")
    if not any(len(c.eval_epochs) for c in curves):
        ax_c.text(0.5, 0.5, "no evaluation during training", ha="center", va="center",
                  transform=ax_c.transAxes, color="#777")
    _finish(fig, (ax_l, ax_c), path)


def _finish(fig: Any, axes: Sequence[Any], path: str | os.PathLike) -> None:
    """Integer epochs, a light grid and a legend where something is labelled; then write the PNG."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


#: The per-epoch loss terms :class:`dlcr.engine.trainer.Trainer` logs (total, identity, triplet,
#: clothes classifier, clothes-adversarial).
LOSS_KEYS = ("loss", "id", "tri", "clothes", "adv")
Series = dict[str, tuple[np.ndarray, np.ndarray]]


def run_series(records: Sequence[Mapping[str, Any]]) -> tuple[Series, Series]:
    """(losses, metrics) of a run's per-epoch records (``log.jsonl``): {key: (epochs, values)}.

    Losses are the :data:`LOSS_KEYS` present; metrics every ``<protocol>_top1`` / ``<protocol>_mAP``
    (and ``val_mAP``) logged at an evaluation epoch, in percent. Non-numbers are left out.
    """

    def num(v: Any) -> float | None:
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v) else None

    losses: dict[str, tuple[list[float], list[float]]] = {}
    metrics: dict[str, tuple[list[float], list[float]]] = {}
    for i, row in enumerate(records):
        e = num(row.get("epoch"))
        e = float(i + 1) if e is None else e
        for k, v in row.items():
            if (y := num(v)) is None:
                continue
            if k in LOSS_KEYS:
                xs, ys = losses.setdefault(k, ([], []))
            elif k.endswith(("_top1", "_mAP")):
                xs, ys = metrics.setdefault(k, ([], []))
                y *= 100.0
            else:
                continue
            xs.append(e)
            ys.append(y)

    def arrays(d: dict[str, tuple[list[float], list[float]]], order: Sequence[str]) -> Series:
        keys = [k for k in order if k in d] + sorted(k for k in d if k not in order)
        return {k: (np.asarray(d[k][0]), np.asarray(d[k][1])) for k in keys}

    return arrays(losses, LOSS_KEYS), arrays(metrics, ())


def plot_run_curves(losses: Series, metrics: Series, path: str | os.PathLike) -> None:
    """One run: its loss terms per epoch (left) and its evaluation metrics per evaluated epoch (right;
    one colour per protocol, top-1 solid, mAP dashed)."""
    plt = _pyplot()
    fig, (ax_l, ax_m) = plt.subplots(1, 2, figsize=(12, 4))
    for i, (k, (x, y)) in enumerate(losses.items()):
        ax_l.plot(x, y, color=ARM_COLOURS[i % len(ARM_COLOURS)], lw=2.0 if k == "loss" else 1.2,
                  marker="o" if len(x) == 1 else None, ms=4, label=k)
    protocols = list(dict.fromkeys(k.rsplit("_", 1)[0] for k in metrics))  # one colour per protocol
    for k, (x, y) in metrics.items():
        colour = plt.cm.tab10(protocols.index(k.rsplit("_", 1)[0]) % 10)
        ax_m.plot(x, y, color=colour, marker="o", ms=3, lw=1.5, ls="-" if k.endswith("top1") else "--", label=k)
    ax_l.set(title="training losses", xlabel="epoch", ylabel="loss")
    ax_m.set(title="evaluation during training", xlabel="epoch", ylabel="%")
    if not metrics:
        ax_m.text(0.5, 0.5, "no evaluation during training", ha="center", va="center",
                  transform=ax_m.transAxes, color="#777")
    _finish(fig, (ax_l, ax_m), path)


def _sort_key(x: Any) -> tuple[int, Any]:
    return (0, x) if isinstance(x, (int, float)) else (1, str(x))


@dataclass(frozen=True)
class FeatureView:
    title: str
    coords: np.ndarray  # (n, 2)
    explained: np.ndarray  # (2,)
    pids: np.ndarray
    clothes: np.ndarray


def plot_pca(views: Sequence[FeatureView], path: str | os.PathLike) -> None:
    """Side-by-side PCA scatter plots: colour = identity, marker = outfit of that identity."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(views), figsize=(5.6 * len(views), 4.8), squeeze=False)
    # One colour per identity and one marker per outfit for all panels, so they can be compared.
    ids = sorted(set().union(*(v.pids.tolist() for v in views)), key=_sort_key)
    colour = {pid: plt.cm.tab10(i % 10) for i, pid in enumerate(ids)}
    for ax, v in zip(axes[0], views, strict=True):
        for pid in ids:
            sel = v.pids == pid
            outfits = sorted(set(v.clothes[sel].tolist()), key=_sort_key)
            for j, clo in enumerate(outfits):
                m = sel & (v.clothes == clo)
                ax.scatter(v.coords[m, 0], v.coords[m, 1], s=34, marker=MARKERS[j % len(MARKERS)],
                           color=colour[pid], edgecolors="black", linewidths=0.4,
                           label=f"id {pid}" if j == 0 else None)
        ax.set(title=v.title, xlabel=f"PC1 ({100 * v.explained[0]:.0f}%)",
               ylabel=f"PC2 ({100 * v.explained[1]:.0f}%)")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), title="identity")
    fig.tight_layout()
    _save(fig, path)
