"""Section "Results" of the demo report: the arms' metrics (mean ± std over seeds), the paper's
Table A1 layout, the per-seed numbers and the demo's settings, timings and versions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.ablation import RERANK_PARAMS, RERANKED_ARMS
from dlcr.report.common import ARM_LABELS, METRICS, NOT_ARMS, Skip, _Assets, _e, _fmt_s, _note, _num, fmt_pct


def arm_label(arm: str) -> str:
    """The arm's label in the tables (the re-ranked arms' from :data:`~dlcr.ablation.RERANKED_ARMS`)."""
    return ARM_LABELS.get(arm) or (RERANKED_ARMS[arm][2] if arm in RERANKED_ARMS else arm)


def arm_names(results: Mapping[str, Any]) -> list[str]:
    """Arms in the conventional order first, then any others as they appear."""
    arms = [a for a in ARM_LABELS if isinstance(results.get(a), Mapping)]
    arms += [a for a, v in results.items() if a not in NOT_ARMS and a not in arms and isinstance(v, Mapping)]
    return arms


def metric_stats(arm: Mapping[str, Any], key: str) -> tuple[float | None, float | None, int]:
    """(mean, std or None, number of seeds) of one metric of one arm.

    The mean is the arm's own value (the demo stores means over seeds); the standard deviation is
    the stored ``<key>_std`` when present, else the sample standard deviation over ``per_seed``.
    """
    per_seed = [v for r in arm.get("per_seed") or [] if isinstance(r, Mapping) if (v := _num(r.get(key))) is not None]
    mean = _num(arm.get(key))
    if mean is None and per_seed:
        mean = float(np.mean(per_seed))
    n = max(len(per_seed), len(arm.get("seeds") or []), 1 if mean is not None else 0)
    std = _num(arm.get(f"{key}_std"))
    if std is None and len(per_seed) >= 2:
        std = float(np.std(per_seed, ddof=1))
    return mean, (std if n >= 2 else None), n


def _results_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    if results is None:
        raise Skip(f"{root / 'results.json'} not found")
    arms = arm_names(results)
    if not arms:
        raise Skip(f"{root / 'results.json'} holds no arm")
    stats = {a: {k: metric_stats(results[a], k) for k, _ in METRICS} for a in arms}
    best = {}
    for k, _ in METRICS:
        shown = [round(100 * s[k][0], 1) for s in stats.values() if s[k][0] is not None]
        best[k] = max(shown) if shown else None
    several = any(s[k][1] is not None for s in stats.values() for k, _ in METRICS)
    head = "".join(f"<th>{_e(lbl)}</th>" for _, lbl in METRICS)
    rows = []
    for a in arms:
        cells = []
        for k, _ in METRICS:
            mean, std, _n = stats[a][k]
            text = fmt_pct(mean) + (f" ± {100 * std:.1f}" if std is not None else "")
            if mean is not None and best[k] is not None and round(100 * mean, 1) == best[k]:
                text = f"<strong>{_e(text)}</strong>"
            else:
                text = _e(text)
            cells.append(f'<td data-arm="{_e(a)}" data-metric="{_e(k)}">{text}</td>')
        rows.append(f'<tr><td class="arm">{_e(arm_label(a))}<br><small>{_e(a)}</small></td>'
                    + "".join(cells) + "</tr>")
    meta = results.get("meta") if isinstance(results.get("meta"), Mapping) else {}
    seeds = meta.get("seeds") or []
    out = [
        f'<p class="expl">All numbers are percentages on the {_e(meta.get("dataset") or "synthetic")} test set. '
        "CC = clothes-changing "
        "protocol (only gallery images of the same person in <em>other</em> clothes and another camera "
        "count), SC = same-clothes, plain top-1/mAP = standard protocol. "
        + (f"Mean ± standard deviation over {len(seeds)} seeds ({_e(', '.join(map(str, seeds)))}). "
           if several else "")
        + ("Rows with re-ranking: the trained model's test ranking after k-reciprocal re-ranking "
           "(Zhong et al. 2017; k1 = {}, k2 = {}, lambda = {:g}), alone or combined with refinement in the "
           "order named. ".format(*RERANK_PARAMS) if any(a in RERANKED_ARMS for a in arms) else "")
        + "Best value per column in bold.</p>",
        f'<table id="results-table"><tr><th class="arm">arm</th>{head}</tr>{"".join(rows)}</table>',
    ]
    out.append(_table_a1(results))
    out.append(_per_seed_table(results, arms))
    out.append(_meta_tables(meta))
    return "\n".join(out)


def _table_a1(results: Mapping[str, Any]) -> str:
    """The paper's Table A1 layout: one component added per row (``results["table_a1"]``)."""
    tbl = results.get("table_a1")
    if not isinstance(tbl, Mapping) or not tbl.get("rows"):
        return _note("no table_a1 in results.json (a demo run with --no-ablation, or from an older dlcr)")
    rows = [r for r in tbl["rows"] if isinstance(r, Mapping)]
    if isinstance(tbl.get("concat"), Mapping):
        rows.append(tbl["concat"])
    head = "".join(f"<th>{_e(lbl)}</th>" for _, lbl in METRICS)
    body = []
    for r in rows:
        cells = []
        for k, _ in METRICS:
            mean, std = _num(r.get(k)), _num(r.get(f"{k}_std"))
            cells.append(f"<td>{_e(fmt_pct(mean) + (f' ± {100 * std:.1f}' if std else ''))}</td>")
        data = "originals" if r.get("mask_region") is None else f"{r.get('mask_region')} mask, {r.get('prompt_source')} prompts"
        body.append(f'<tr data-row="{_e(r.get("row"))}"><td>{_e(r.get("row"))}</td><td class="arm">{_e(r.get("name"))}'
                    f'<br><small>{_e(r.get("arm"))}</small></td><td>{_e(data)}</td><td>{_e(r.get("sampler"))}</td>'
                    f'<td>{"yes" if r.get("refine") else "no"}</td>{"".join(cells)}</tr>')
    seeds = tbl.get("seeds") or []
    return ("<h3>Ablation in the layout of the paper's Table A1</h3>"
            f'<p class="expl">Each row adds one component; every row has the same data, seeds '
            f"({_e(', '.join(map(str, seeds)))}) and {_e(tbl.get('epochs', '?'))} epochs. Mean ± standard "
            "deviation over seeds, in percent.</p>"
            f'<table id="table-a1"><tr><th>row</th><th class="arm">arm</th><th>generated data</th>'
            f"<th>sampler / schedule</th><th>refinement</th>{head}</tr>{''.join(body)}</table>")


def _per_seed_table(results: Mapping[str, Any], arms: Sequence[str]) -> str:
    rows = []
    for a in arms:
        for r in results[a].get("per_seed") or []:
            if not isinstance(r, Mapping):
                continue
            cells = "".join(f"<td>{fmt_pct(_num(r.get(k)))}</td>" for k, _ in METRICS)
            rows.append(f'<tr><td class="arm">{_e(a)}</td><td>{_e(r.get("seed", "?"))}</td>{cells}</tr>')
    if not rows:
        return ""
    head = "".join(f"<th>{_e(lbl)}</th>" for _, lbl in METRICS)
    return (f'<h3>Per seed</h3><table id="per-seed-table"><tr><th class="arm">arm</th><th>seed</th>{head}</tr>'
            + "".join(rows) + "</table>")


def _meta_tables(meta: Mapping[str, Any]) -> str:
    parts = []
    settings = [(k, meta[k]) for k in ("seeds", "quick", "backend", "k", "l", "m") if k in meta]
    if isinstance(meta.get("world"), Mapping):
        settings.append(("world", ", ".join(f"{k}={v}" for k, v in meta["world"].items())))
    if settings:
        rows = "".join(f'<tr><td class="arm">{_e(k)}</td><td class="arm" style="white-space:normal">'
                       f"{_e(v)}</td></tr>" for k, v in settings)
        parts.append(f'<div><h3>Settings</h3><table id="settings-table">{rows}</table></div>')
    stages = meta.get("stage_seconds")
    if isinstance(stages, Mapping) and stages:
        total = sum(v for v in (_num(x) for x in stages.values()) if v is not None)
        rows = "".join(f'<tr><td class="arm">{_e(k)}</td><td>{_fmt_s(_num(v))}</td></tr>' for k, v in stages.items())
        rows += f'<tr><th class="arm">total</th><th>{_fmt_s(total)}</th></tr>'
        parts.append(f'<div><h3>Stage timings</h3><table id="timings-table"><tr><th class="arm">stage</th>'
                     f"<th>time</th></tr>{rows}</table></div>")
    versions = meta.get("versions")
    if isinstance(versions, Mapping) and versions:
        rows = "".join(f'<tr><td class="arm">{_e(k)}</td><td class="arm">{_e(v)}</td></tr>'
                       for k, v in versions.items())
        parts.append(f'<div><h3>Versions</h3><table id="versions-table">{rows}</table></div>')
    return f'<div class="cols">{"".join(parts)}</div>' if parts else ""
