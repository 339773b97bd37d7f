"""Plots for the reports: training curves of the demo's arms and of one run, and PCA scatter plots of
test features. Matplotlib is imported inside the plotting functions with the ``Agg`` backend, so
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
