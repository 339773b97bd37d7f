"""Ranked lists under the clothes-changing protocol (:func:`ranked_lists`), and the demo report's
section "Retrieval examples" comparing the baseline with DLCR on the same queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.io.paths import safe_join
from dlcr.report.common import BASELINE, DLCR, N_QUERIES, TOP_K, Skip, _Assets, _e, _img, images_root
from dlcr.report.runs import _align, _compared_runs, check_paths, load_paths
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


LEGEND = ('<p class="legend">outline:<span style="background:#3b6fd6"></span>query'
          '<span style="background:#1a9850"></span>same person (correct)'
          '<span style="background:#d73027"></span>other person (wrong)</p>')


def cc_ranks(f: Mapping[str, np.ndarray], arms: Sequence[tuple[str, np.ndarray]]) -> list[tuple[str, Any]]:
    """Clothes-changing top-k of each (name, similarity matrix) over the labels of features ``f``."""
    from dlcr.evaluation.metrics import match_masks
    from dlcr.report.figures import rank_cc

    good, junk = match_masks(f["q_pids"], f["g_pids"], f["q_camids"], f["g_camids"], f["q_clothes"],
                             f["g_clothes"], mode="CC")
    return [(name, rank_cc(sims, good, junk, k=TOP_K)) for name, sims in arms]


def ranked_lists(assets: _Assets, chosen: Sequence[int], ranks: Sequence[tuple[str, Any]],
                 f: Mapping[str, np.ndarray], paths: Mapping[str, Sequence[str]], images: Path) -> str:
    """Panels of the ``chosen`` queries: the query, then one row of its top-k per ranking in ``ranks``."""
    panels = []
    for q in chosen:
        qpath = paths["query"][q]
        qcap = (f"query<br>id {_e(f['q_pids'][q])}, clothes {_e(f['q_clothes'][q])}, "
                f"cam {_e(f['q_camids'][q])}")
        block = [f'<figure class="q">{_img(assets.image(safe_join(images, qpath)), qpath)}'
                 f"<figcaption>{qcap}</figcaption></figure>", '<div class="ranks">']
        for name, rk in ranks:
            cells = [f'<div class="lab">{_e(name)}</div>']
            for j in range(rk.top.shape[1]):
                g = int(rk.top[q, j])
                if g < 0:
                    cells.append('<figure class="empty"><figcaption>–</figcaption></figure>')
                    continue
                cls = "hit" if rk.correct[q, j] else "miss"
                gpath = paths["gallery"][g]
                cells.append(f'<figure class="{cls}">{_img(assets.image(safe_join(images, gpath)), gpath)}'
                             f"<figcaption>#{j + 1} id {_e(f['g_pids'][g])}<br>clothes "
                             f"{_e(f['g_clothes'][g])}</figcaption></figure>")
            block.append(f'<div class="rankrow">{"".join(cells)}</div>')
        block.append("</div>")
        panels.append(f'<div class="query">{"".join(block)}</div>')
    return f'<div class="panels">{"".join(panels)}</div>'


def _retrieval_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.report.figures import pick_queries

    pair = _compared_runs(root, results)
    if pair is None:
        raise Skip(f"needs {root / 'runs'}/{BASELINE}_s* and {root / 'runs'}/{DLCR}_s* with eval/features.npz")
    (rb, fb), (rd, fd) = pair
    pb, pd = load_paths(rb), load_paths(rd)
    if pb is None or pd is None:
        missing = [str(r / "eval" / "paths.json") for r, p in ((rb, pb), (rd, pd)) if p is None]
        raise Skip(f"no {' and no '.join(missing)}, so the images of the ranked lists are unknown")
    for f, p, run in ((fb, pb, rb), (fd, pd, rd)):
        check_paths(run, f, p)
    qi, gi = _align(pb["query"], pd["query"], "query"), _align(pb["gallery"], pd["gallery"], "gallery")
    arms: list[tuple[str, np.ndarray]] = [
        ("baseline", fb["q_feats"] @ fb["g_feats"].T),
        ("DLCR progressive", (fd["q_feats"] @ fd["g_feats"].T)[np.ix_(qi, gi)]),
    ]
    refined = rd / "eval" / "refined_sims.npy"
    if refined.is_file():
        r = np.load(refined, allow_pickle=False)
        if r.shape == arms[1][1].shape:
            arms.append(("DLCR + refinement", r[np.ix_(qi, gi)]))
        else:
            log.warning("report: %s has shape %s, expected %s; not shown", refined, r.shape, arms[1][1].shape)
    ranks = cc_ranks(fb, arms)
    eligible = ranks[0][1].eligible
    n_el = int(eligible.sum())
    if n_el == 0:
        raise Skip("no query has a clothes-changing match in the gallery")
    top1 = [(name, rk.correct[:, 0] & eligible) for name, rk in ranks]
    b1, d1 = top1[0][1], top1[1][1]
    chosen = pick_queries(b1, d1, eligible, fb["q_pids"], n=N_QUERIES)
    acc = ", ".join(f"{_e(name)} {100 * t.sum() / n_el:.1f}%" for name, t in top1)
    out = [
        f'<p class="expl">Ranked lists under the clothes-changing protocol ({_e(rb.name)} vs {_e(rd.name)}): '
        "gallery images of the query's own identity taken by the same camera or in the same clothes are "
        "removed (junk), so every correct match shows the person in other clothes. Top-1 on the "
        f"{n_el} clothes-changing queries: {acc}. DLCR right where the baseline is wrong: "
        f"{int((d1 & ~b1).sum())} queries; the reverse: {int((b1 & ~d1).sum())}. Queries shown are "
        "taken from both kinds of disagreement first.</p>",
        LEGEND,
        ranked_lists(assets, chosen, ranks, fb, pb, images_root(root, results)),
    ]
    return "\n".join(out)
