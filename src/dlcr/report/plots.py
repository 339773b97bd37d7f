"""Plots for the reports: training curves of the demo's arms and of one run, PCA and t-SNE scatter
plots of features, and the grid of activation maps. Matplotlib is imported inside the plotting functions with the ``Agg`` backend, so
importing this module is cheap and never needs a display."""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcr.io.atomic import atomic_write_bytes

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


def _scatter(ax: Any, coords: np.ndarray, pids: np.ndarray, shapes: np.ndarray, colour: Mapping[Any, Any],
             hollow: np.ndarray | None = None) -> None:
    """One panel: colour = identity, marker = the ``shapes`` key's rank within that identity (its outfit,
    or real / generated), hollow markers where ``hollow`` is set."""
    hollow = np.zeros(len(pids), bool) if hollow is None else np.asarray(hollow, bool)
    for pid in colour:
        sel = pids == pid
        label: str | None = f"id {pid}"
        for j, key in enumerate(sorted(set(shapes[sel].tolist()), key=_sort_key)):
            for open_ in (False, True):
                m = sel & (shapes == key) & (hollow == open_)
                if not m.any():
                    continue
                ax.scatter(coords[m, 0], coords[m, 1], s=34, marker=MARKERS[j % len(MARKERS)],
                           color="white" if open_ else colour[pid], edgecolors=colour[pid] if open_ else "black",
                           linewidths=1.3 if open_ else 0.4, label=label)
                label = None
    ax.grid(alpha=0.3)


def _identity_colours(pid_arrays: Sequence[np.ndarray]) -> dict[Any, Any]:
    """One colour per identity over all panels, so that they can be compared."""
    plt = _pyplot()
    ids = sorted(set().union(*(p.tolist() for p in pid_arrays)), key=_sort_key)
    return {pid: plt.cm.tab10(i % 10) for i, pid in enumerate(ids)}


def plot_pca(views: Sequence[FeatureView], path: str | os.PathLike) -> None:
    """Side-by-side PCA scatter plots: colour = identity, marker = outfit of that identity."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(views), figsize=(5.6 * len(views), 4.8), squeeze=False)
    colour = _identity_colours([v.pids for v in views])
    for ax, v in zip(axes[0], views, strict=True):
        _scatter(ax, v.coords, v.pids, v.clothes, colour)
        ax.set(title=v.title, xlabel=f"PC1 ({100 * v.explained[0]:.0f}%)",
               ylabel=f"PC2 ({100 * v.explained[1]:.0f}%)")
    axes[0][-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), title="identity")
    fig.tight_layout()
    _save(fig, path)


@dataclass(frozen=True)
class Embedding:
    """A 2-D embedding (t-SNE) of feature rows: identity, marker key and hollow flag per point."""

    title: str
    coords: np.ndarray  # (n, 2)
    pids: np.ndarray
    shapes: np.ndarray  # marker key per point (outfit; or 0 = real, 1 = generated)
    hollow: np.ndarray  # bool per point


def plot_embeddings(views: Sequence[Embedding], path: str | os.PathLike,
                    styles: Sequence[tuple[str, str, bool]] = ()) -> None:
    """Side-by-side t-SNE panels (colour = identity); ``styles`` adds legend entries (label, marker,
    hollow) explaining the markers. t-SNE axes have no units, so they are unlabelled."""
    plt = _pyplot()
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(views), figsize=(5.2 * len(views) + 1.2, 4.8), squeeze=False)
    colour = _identity_colours([v.pids for v in views])
    for ax, v in zip(axes[0], views, strict=True):
        _scatter(ax, v.coords, v.pids, v.shapes, colour, v.hollow)
        ax.set(title=v.title, xticklabels=[], yticklabels=[], xlabel="t-SNE 1", ylabel="t-SNE 2")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    for label, marker, open_ in styles:
        handles.append(Line2D([], [], ls="", marker=marker, ms=7, color="#555", mfc="white" if open_ else "#555"))
        labels.append(label)
    axes[0][-1].legend(handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    _save(fig, path)


def plot_activation_grid(images: Sequence[np.ndarray], columns: Sequence[tuple[str, Sequence[np.ndarray]]],
                         row_labels: Sequence[str], path: str | os.PathLike,
                         cell_titles: Sequence[Sequence[str]] | None = None) -> list[list[tuple[int, int, int, int]]]:
    """A grid: one row per image, the image itself then one column per model with its activation map
    (values in [0, 1], the image's size) drawn over the image with the ``jet`` colour map.

    Returns each panel's box in the PNG's pixels, ``(left, top, right, bottom)`` per row and column.
    """
    plt = _pyplot()
    n, ncol = len(images), 1 + len(columns)
    h, w = images[0].shape[:2]
    cell_w = 1.7
    cell_h = cell_w * h / w * 0.9 + 0.45
    fig, axes = plt.subplots(n, ncol, figsize=(cell_w * ncol + 0.9, cell_h * n + 0.3), squeeze=False)
    for r, img in enumerate(images):
        axes[r][0].imshow(img)
        axes[r][0].set_ylabel(row_labels[r], fontsize=8)
        for c, (_, maps) in enumerate(columns, start=1):
            axes[r][c].imshow(img)
            axes[r][c].imshow(maps[r], cmap="jet", alpha=0.5, vmin=0.0, vmax=1.0,
                              extent=(-0.5, img.shape[1] - 0.5, img.shape[0] - 0.5, -0.5))
            if cell_titles is not None:
                axes[r][c].set_xlabel(cell_titles[r][c - 1], fontsize=8)
        for c, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("image" if c == 0 else columns[c - 1][0], fontsize=9)
    fig.tight_layout()
    fig.canvas.draw()
    height = fig.canvas.get_width_height()[1]
    boxes = [[(round(b.x0), round(height - b.y1), round(b.x1), round(height - b.y0))
              for b in (ax.get_window_extent() for ax in row)] for row in axes]
    _save(fig, path)
    return boxes
