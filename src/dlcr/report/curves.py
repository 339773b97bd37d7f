"""Sections "Training curves" and "Feature space" of the demo report; the latter holds the PCA of the
test features and, next to it, the paper's Fig. A5-A7 (:mod:`dlcr.report.paperfigs`): each figure is
drawn on its own, and one whose inputs are missing is a note in the section, not the end of it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.errors import InputError
from dlcr.report.common import ARM_LABELS, BASELINE, DLCR, N_IDS, Skip, _Assets, _e, _note, _read_json
from dlcr.report.runs import _compared_runs, find_runs
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


def _curves_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.report.plots import curve_from_history, plot_curves

    curves = []
    for arm, seeds in find_runs(root).items():
        for seed, run in sorted(seeds.items()):
            path = run / "history.json"
            if not path.is_file():
                continue
            hist = _read_json(path)
            if not isinstance(hist, list):
                raise InputError(f"{path} must hold a list of per-epoch records")
            c = curve_from_history(arm, seed, [h for h in hist if isinstance(h, Mapping)])
            if len(c.epochs) or len(c.eval_epochs):
                curves.append(c)
    if not curves:
        raise Skip(f"no runs/*/history.json with per-epoch losses in {root}")
    out = assets.figure_path("curves.png")
    plot_curves(curves, out, ARM_LABELS)
    n_seeds = len({c.seed for c in curves})
    where = ("the validation split (held-out training identities; the test set is evaluated once, at "
             "the end)" if any(c.source == "validation" for c in curves) else "the test set")
    return (f'<p class="expl">Per-epoch training loss and clothes-changing top-1 on {where}'
            f"{' (one line per seed; the first seed drawn solid)' if n_seeds > 1 else ''}.</p>"
            f'<img class="plot" src="{_e(assets.href(out))}" alt="training curves">')


def _pca_block(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.report.figures import distance_ratio, pca_2d, pick_identities
    from dlcr.report.plots import FeatureView, plot_pca

    pair = _compared_runs(root, results)
    if pair is None:
        raise Skip(f"needs {root / 'runs'}/{BASELINE}_s* and {root / 'runs'}/{DLCR}_s* with eval/features.npz")
    (_, fb), (_, fd) = pair
    ids = pick_identities(fb["g_pids"], fb["g_clothes"], n=N_IDS)
    views, ratios = [], []
    for name, f in (("baseline", fb), ("DLCR progressive", fd)):
        sel = np.isin(f["g_pids"], ids)
        if sel.sum() < 3:
            raise Skip("too few gallery images for the chosen identities")
        x, pids, clothes = f["g_feats"][sel], f["g_pids"][sel], f["g_clothes"][sel]
        coords, ratio = pca_2d(x)
        views.append(FeatureView(name, coords, ratio, pids, clothes))
        ratios.append((name, distance_ratio(x, pids)))
    out = assets.figure_path("pca.png")
    plot_pca(views, out)
    rtxt = ", ".join(f"{_e(n)} {r:.2f}" for n, r in ratios)
    return (f'<p class="expl">Gallery features of {len(ids)} test identities projected on their first two '
            "principal components (fitted separately per model). Colour = identity, marker = outfit. A "
            "model that ignores clothes puts one identity's outfits together. Mean within-identity / "
            f"between-identity distance in the full feature space (lower is better): {rtxt}.</p>"
            f'<img class="plot" src="{_e(assets.href(out))}" alt="PCA of test features">')


def _features_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    """The PCA and the paper's Fig. A5-A7, each under its own heading; skipped only when none can be drawn."""
    from dlcr.generation.layout import GENERATED, MASKS
    from dlcr.generation.outputs import GENERATED_MANIFEST
    from dlcr.report.common import work_root
    from dlcr.report.figcache import cached, signature
    from dlcr.report.page import SECTION_ERRORS
    from dlcr.report.paperfigs import cam_block, realgen_block, tsne_block

    work = work_root(root, results)
    sig = signature(root, [work / GENERATED / GENERATED_MANIFEST, work / MASKS / "masks.parquet"])
    # the paper's figures (seconds each: t-SNE, Grad-CAM) are reused while their inputs are unchanged
    blocks = (("PCA of the test features", _pca_block, None),
              ("t-SNE of the test features (paper Fig. A5)", tsne_block, "tsne.png"),
              ("Activation maps (paper Fig. A6)", cam_block, "activation_maps.png"),
              ("Real and generated training images in feature space (paper Fig. A7)", realgen_block,
               "tsne_real_generated.png"))
    parts, reasons = [], []
    for title, fn, png in blocks:
        try:
            if png is None:
                body = fn(root, results, assets)
            else:
                body = cached(assets.figures, png.removesuffix(".png"), png, sig,
                              lambda fn=fn: fn(root, results, assets))
        except Skip as e:
            body, why = _note(f"not drawn: {e}"), str(e)
            reasons.append(f"{title}: {why}")
        except SECTION_ERRORS as e:
            log.warning("report: figure %r not drawn: %s", title, e)
            body = _note(f"not drawn: {e}")
            reasons.append(f"{title}: {e}")
        parts.append(f"<h3>{_e(title)}</h3>\n{body}")
    if len(reasons) == len(blocks):
        raise Skip("; ".join(reasons))
    return "\n".join(parts)
