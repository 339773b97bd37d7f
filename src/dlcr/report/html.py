"""The demo report, and the page machinery every report shares: one self-contained HTML page
(inline CSS, no scripts) plus PNGs in ``figures/``.

:func:`build_demo_report` reads what ``dlcr demo`` left in its folder (results, generated images,
masks, training histories, test features) and writes ``report.html`` next to them. Each section is
built on its own; when its inputs are missing or unreadable the section says so in a note (naming
the path it looked for) and the rest of the page is still written, so a partial demo still gets a
useful report. The reports of a generation work folder and of a training run
(:mod:`dlcr.report.folders`) are assembled by the same :func:`write_page` from the same pieces
(:func:`generation_grid`, :func:`ranked_lists`, the figures of :mod:`dlcr.report.figures`).
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from dlcr.errors import DlcrError, InputError
from dlcr.generation.stages import GENERATED, MASKS, OUTFITS, QUERY_GENERATED
from dlcr.io.atomic import atomic_write_text
from dlcr.io.images import read_label_map, read_rgb
from dlcr.io.paths import safe_join
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

METRICS: tuple[tuple[str, str], ...] = (
    ("cc_top1", "CC top-1"),
    ("cc_map", "CC mAP"),
    ("sc_top1", "SC top-1"),
    ("sc_map", "SC mAP"),
    ("top1", "top-1"),
    ("map", "mAP"),
)
ARM_LABELS: Mapping[str, str] = {
    "baseline": "Baseline (originals only)",
    "dlcr_unmasked": "Generated without the ID-preserving mask",
    "dlcr_random_prompts": "Masked, random vocabulary prompts",
    "dlcr_paired": "Masked, the dataset's outfits (paired)",
    "dlcr_concat": "DLCR, concatenated (no pairing)",
    "dlcr_progressive": "DLCR, progressive",
    "dlcr_progressive_refined": "DLCR, progressive + query refinement",
}
#: results.json entries that are not arms
NOT_ARMS = ("meta", "table_a1", "curves")
BASELINE, DLCR = "baseline", "dlcr_progressive"
N_GEN_ROWS, N_QUERIES, TOP_K, N_IDS = 4, 6, 5, 6

# Errors a section may hit on a damaged or partial demo folder; anything else is a bug and raises.
_SECTION_ERRORS = (DlcrError, OSError, ValueError, KeyError, IndexError, TypeError)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
  background:#f6f7f9;color:#1d2330;line-height:1.4}
main{max-width:1240px;margin:0 auto;padding:16px 24px 48px}
h1{margin:8px 0 4px;font-size:28px} h2{margin:32px 0 8px;font-size:21px;border-bottom:2px solid #d5dae3;
  padding-bottom:4px} h3{font-size:16px;margin:18px 0 6px}
nav a{margin-right:14px;color:#2b5cab;text-decoration:none} .sub{color:#5b6475;margin:0 0 8px}
p.note{background:#fff5d6;border-left:4px solid #e0b000;padding:6px 10px;margin:8px 0;color:#5a4500}
p.expl{color:#4a5263;font-size:14px;margin:4px 0 10px;max-width:1000px}
table{border-collapse:collapse;background:#fff;font-size:14px;margin:6px 0 12px}
th,td{border:1px solid #d5dae3;padding:4px 10px;text-align:right;white-space:nowrap}
th{background:#eef1f6} td.arm,th.arm{text-align:left} td strong{color:#0b3d91}
.cols{display:flex;gap:28px;flex-wrap:wrap;align-items:flex-start}
.genrow{display:flex;gap:6px;align-items:flex-start;background:#fff;border:1px solid #d5dae3;
  border-radius:6px;padding:8px;margin:8px 0;overflow-x:auto}
figure{margin:0;flex:0 0 auto}
.genrow figure{width:88px} .genrow img{height:160px;width:80px;object-fit:contain}
.genrow img.px{image-rendering:auto}
figcaption{font-size:10.5px;color:#333;margin-top:3px;word-wrap:break-word;line-height:1.25}
figcaption b{color:#111}
.genrow figure.src figcaption{color:#0b3d91}
.genrow.photorow figure{width:144px} .genrow.photorow img{width:136px;height:170px}
img.px{image-rendering:pixelated;background:#ddd}
.panels{display:flex;flex-wrap:wrap;gap:12px}
.query{display:flex;gap:12px;background:#fff;border:1px solid #d5dae3;border-radius:6px;padding:8px;
  flex:0 0 auto}
.query>figure{width:80px} .query img{height:128px;width:64px;object-fit:contain}
.ranks{display:flex;flex-direction:column;gap:6px}
.rankrow{display:flex;gap:6px;align-items:center}
.rankrow .lab{width:92px;font-size:12px;font-weight:600;line-height:1.2}
.rankrow figure{width:66px;text-align:center}
.q img{outline:4px solid #3b6fd6;outline-offset:-2px}
.hit img{outline:4px solid #1a9850;outline-offset:-2px}
.miss img{outline:4px solid #d73027;outline-offset:-2px}
.empty img{opacity:.3}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:-1px}
img.plot{max-width:100%;background:#fff;border:1px solid #d5dae3}
footer{color:#7a8292;font-size:12px;margin-top:40px}
"""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _e(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise InputError(f"{path} is not valid JSON: {e}") from None


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


class Skip(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a section that cannot be built; the message says precisely what is missing (and where)."""


@dataclass(frozen=True)
class Report:
    """What :func:`write_page` wrote: the page, the kind of folder, the sections built and those skipped."""

    path: Path
    kind: str
    built: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]  # (section id, reason)


def pose_extra_missing() -> str | None:
    """Why the ``pose`` extra (mediapipe) cannot run here, or None: the import is really tried, so an
    installed mediapipe is never reported missing."""
    try:
        import mediapipe  # noqa: F401
    except Exception as e:  # a broken install raises anything (e.g. a protobuf mismatch)
        from dlcr.errors import first_line

        return f"mediapipe cannot be imported ({first_line(e)})"
    from dlcr.generation.parsers.pose import mediapipe_missing

    return mediapipe_missing()  # installed, but perhaps another release than the one the backend needs


class _Assets:
    """Writes thumbnails into ``figures/thumbs`` once each and hands back their relative links."""

    def __init__(self, root: Path):
        self.root = root
        self.figures = root / "figures"
        self.thumbs = self.figures / "thumbs"
        self._done: dict[str, str] = {}

    def figure_path(self, name: str) -> Path:
        return self.figures / name

    def href(self, path: Path) -> str:
        return _rel(self.root, path)

    def image(self, src: Path | None, overlay: Path | None = None) -> str | None:
        """Link to a thumbnail of ``src`` (with the mask ``overlay`` blended in); None if unreadable.

        With ``src=None`` the label map ``overlay`` is drawn on a plain grey image of its size (the
        mask of an image whose original is not at hand)."""
        from dlcr.report.figures import mask_overlay, save_png, thumbnail

        key = f"{src}|{overlay}"
        if key in self._done:
            return self._done[key]
        try:
            if src is None:
                if overlay is None:
                    return None
                labels = read_label_map(overlay)
                rgb = mask_overlay(np.full((*labels.shape, 3), 190, np.uint8), labels)
            else:
                rgb = read_rgb(src)
                if overlay is not None:
                    rgb = mask_overlay(rgb, read_label_map(overlay))
        except DlcrError as e:
            log.warning("report: %s", e)
            return None
        named = src if src is not None else overlay
        assert named is not None
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", named.stem)[-48:]
        tag = hashlib.sha1(key.encode()).hexdigest()[:10]
        out = self.thumbs / f"{stem}{'-mask' if overlay else ''}-{tag}.png"
        save_png(out, thumbnail(rgb))
        self._done[key] = self.href(out)
        return self._done[key]


def _img(href: str | None, alt: str) -> str:
    if href is None:
        return f'<div style="height:128px;width:64px;background:#eee" title="{_e(alt)}">?</div>'
    return f'<img class="px" src="{_e(href)}" alt="{_e(alt)}" loading="eager">'


# --------------------------------------------------------------------------------------------
# Section 1: results
# --------------------------------------------------------------------------------------------


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


def fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _to_percent(v: Any) -> str:
    """A fraction as a percentage with two decimals (as ``dlcr evaluate`` prints it); – when not a number."""
    n = _num(v)
    return "–" if n is None else f"{100 * n:.2f}"


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
        rows.append(f'<tr><td class="arm">{_e(ARM_LABELS.get(a, a))}<br><small>{_e(a)}</small></td>'
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


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"


# --------------------------------------------------------------------------------------------
# Section 2: generation grid
# --------------------------------------------------------------------------------------------


def _read_rows(path: Path) -> list[dict[str, Any]]:
    from dlcr.io.tables import read_table

    try:
        return read_table(path)
    except Exception as e:  # pyarrow raises its own error types for damaged files
        raise InputError(f"cannot read {path}: {e}") from None


def pick_sources(rows: Sequence[Mapping[str, Any]], n: int) -> list[tuple[str, list[Mapping[str, Any]]]]:
    """Up to ``n`` source images with the most variants, spread over the list, one per identity."""
    from dlcr.report.figures import one_per_key, spread

    by_src: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        if isinstance(r.get("source"), str) and isinstance(r.get("file"), str):
            by_src.setdefault(r["source"], []).append(r)
    if not by_src:
        return []
    most = max(len(v) for v in by_src.values())
    full = spread(sorted(s for s, v in by_src.items() if len(v) == most), n)
    chosen = one_per_key(full, lambda s: by_src[s][0].get("pid", s), n)
    return [(s, sorted(by_src[s], key=lambda r: (_num(r.get("variant")) or 0))) for s in chosen]


def _outfit_prompts(work: Path) -> dict[str, str]:
    path = work / OUTFITS
    if not path.is_file():
        return {}
    try:
        rows = _read_rows(path)
    except InputError as e:
        log.warning("report: %s", e)
        return {}
    return {str(r["clothes_key"]): str(r.get("prompt") or "") for r in rows if r.get("clothes_key") is not None}


_PART_LEGEND = (
    '<span style="color:#c62828">upper</span> / <span style="color:#2f5fc4">lower</span> / '
    '<span style="color:#23853f">shoes</span>'
)


def _gen_row(assets: _Assets, source: str, variants: Sequence[Mapping[str, Any]], *, images: Path | None,
             masks: Path, gen_dir: Path, outfits: Mapping[str, str]) -> str:
    """One row: the original (from ``images``; a placeholder when None), its clothes mask, its variants."""
    from dlcr.generation.parsing import label_path

    src = safe_join(images, source) if images is not None else None
    figs = []
    key = variants[0].get("source_clothes_key")
    cap = f"<b>original</b> {_e(PurePosixPath(source).stem)}"
    if key is not None and outfits.get(str(key)):
        cap += f"<br>{_e(outfits[str(key)])}"
    if src is None:
        cap += "<br>(not at hand)"
    figs.append(f'<figure class="src">{_img(assets.image(src) if src else None, source)}<figcaption>{cap}'
                "</figcaption></figure>")
    mask = label_path(masks, source)
    if mask.is_file():
        figs.append(f'<figure class="src">{_img(assets.image(src, overlay=mask), "mask " + source)}'
                    "<figcaption><b>clothes mask</b><br>" + _PART_LEGEND + "</figcaption></figure>")
    else:
        figs.append('<figure class="src"><div style="height:160px;width:80px;background:#eee"></div>'
                    "<figcaption><b>no mask</b></figcaption></figure>")
    for r in variants:
        path = safe_join(gen_dir, r["file"])
        v = r.get("variant", "?")
        figs.append(f'<figure>{_img(assets.image(path), str(r.get("prompt", "")))}<figcaption><b>v{_e(v)}'
                    f'</b> {_e(r.get("prompt", ""))}</figcaption></figure>')
    return f'<div class="genrow">{"".join(figs)}</div>'


def pending_parts(out_dir: Path) -> int:
    """Part files of a generation folder not yet merged into its manifest (committed images of a
    killed or still running ``dlcr generate inpaint``)."""
    from dlcr.generation.outputs import PARTS_DIR

    parts = out_dir / PARTS_DIR
    return sum(1 for p in parts.glob("*.parquet") if p.is_file()) if parts.is_dir() else 0


def missing_manifest(out_dir: Path, command: str) -> str:
    """Why ``out_dir`` has no manifest, precisely: the path looked for, and what is there instead."""
    from dlcr.generation.outputs import GENERATED_MANIFEST, PARTS_DIR

    manifest = out_dir / GENERATED_MANIFEST
    if not out_dir.is_dir():
        return f"no {manifest} ({out_dir} does not exist; run `{command}`)"
    n = pending_parts(out_dir)
    if n:
        return (f"no {manifest}, but {n} part file(s) in {out_dir / PARTS_DIR} hold committed images not yet "
                f"consolidated (run `{command}` again to finish and consolidate)")
    return f"no {manifest} (run `{command}`)"


def generation_grid(assets: _Assets, work: Path, images: Path | None, *, n_rows: int = N_GEN_ROWS,
                    images_note: str = "") -> str:
    """Originals, clothes masks and generated variants of a few training images of the work folder
    ``work`` (and one query's variants), originals read from ``images`` (None: not at hand, and
    ``images_note`` says why). :class:`Skip` when there is no generation manifest."""
    from dlcr.generation.outputs import GENERATED_MANIFEST

    manifest = work / GENERATED / GENERATED_MANIFEST
    if not manifest.is_file():
        raise Skip("no generated images (" + missing_manifest(work / GENERATED, "dlcr generate inpaint") + ")")
    rows = _read_rows(manifest)
    chosen = pick_sources(rows, n_rows)
    if not chosen:
        raise Skip(f"the generation manifest {manifest} is empty")
    outfits = _outfit_prompts(work)
    n_src = len({r.get("source") for r in rows})
    out = [f'<p class="expl">{len(rows)} images were generated for {n_src} training images. Each row: the '
           "original, its clothes mask (red = upper garment, blue = lower, green = shoes; the rest is "
           "dimmed), and its variants with the outfit prompt each was made from.</p>"]
    if images is None and images_note:
        out.append(_note(images_note))
    grid = functools.partial(_gen_row, assets, images=images, masks=work / MASKS, outfits=outfits)
    out += [grid(s, v, gen_dir=work / GENERATED) for s, v in chosen]
    qman = work / QUERY_GENERATED / GENERATED_MANIFEST
    if qman.is_file():
        qrows = _read_rows(qman)
        qchosen = pick_sources(qrows, 1)
        if qchosen:
            out.append(f"<h3>Query variants (used by the refinement step; {len(qrows)} in all)</h3>")
            out += [grid(s, v, gen_dir=work / QUERY_GENERATED) for s, v in qchosen]
    return "\n".join(out)


def _meta(results: Mapping[str, Any] | None) -> Mapping[str, Any]:
    meta = results.get("meta") if results else None
    return meta if isinstance(meta, Mapping) else {}


def images_root(root: Path, results: Mapping[str, Any] | None) -> Path:
    """Where a demo or ablation folder's original images are: the demo's ``world/``, an ablation's
    dataset root (``meta.images``)."""
    return Path(_meta(results)["images"]) if _meta(results).get("images") else root / "world"


def work_root(root: Path, results: Mapping[str, Any] | None) -> Path:
    """A demo's ``work/`` or an ablation's work folder (``meta.work``, relative to ``root`` or absolute)."""
    return root / str(_meta(results).get("work") or "work")


def _generation_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    return generation_grid(assets, work_root(root, results), images_root(root, results))


# --------------------------------------------------------------------------------------------
# Section 2b: stage 1 on real photographs (written by dlcr.demo.realphoto.run_real_photo_stage)
# --------------------------------------------------------------------------------------------


def _realphoto_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.demo.realphoto import MANIFEST, REALPHOTO_DIRNAME

    base = root / REALPHOTO_DIRNAME
    path = base / MANIFEST
    if not path.is_file():
        # Say why only when it is true here: the pose extra is tried for real (an import), not assumed.
        from dlcr.demo.realphoto import available_photos

        why = pose_extra_missing()
        if why is None and not available_photos():
            why = "no photograph is installed (pip install scikit-image; matplotlib ships grace_hopper.jpg)"
        raise Skip(f"the real-photo stage did not run (no {path}; "
                   + (f"it cannot run here: {why})" if why else
                      "everything it needs is installed here: re-run `dlcr demo` on this folder to add it)"))
    m = _read_json(path)
    if not isinstance(m, Mapping):
        raise InputError(f"{path} does not hold an object")
    if m.get("status") != "ok":
        raise Skip(str(m.get("reason") or f"the real-photo stage did not finish ({path} has status "
                                            f"{m.get('status')!r})"))
    rows = [r for r in m.get("photos") or [] if isinstance(r, Mapping)]
    if not rows:
        raise Skip(f"the real-photo manifest {path} lists no photograph")
    secs = m.get("seconds") if isinstance(m.get("seconds"), Mapping) else {}
    timing = ", ".join(f"{_e(k)} {_fmt_s(_num(v))}" for k, v in secs.items())
    credits = "; ".join(_e(r.get("credit", r.get("name", "?"))) for r in rows)
    out = [f'<p class="expl">Stage 1 on real photographs ({credits}): the person is cropped with the pose '
           "model's person mask, parsed by the <code>pose</code> backend (mediapipe's bundled pose landmarks and "
           "person mask turned into LIP labels by body geometry), described by the <code>rule</code> captioner and "
           f"repainted by <code>recolor</code> with {_e(m.get('k', '?'))} outfits drawn from a fixed list. "
           f"Images without a usable pose use a fixed-geometry fallback: {_e(m.get('fallbacks', 0))} here. "
           f"Times: {timing or 'not recorded'}. Both are upper-body portraits, so only the upper garment "
           "is repainted.</p>"]
    for r in rows:
        src, mask = safe_join(base, str(r["original"])), safe_join(base, str(r["mask"]))
        name = str(r.get("name", src.stem))
        figs = [f'<figure class="src">{_img(assets.image(src), name)}<figcaption><b>crop</b> {_e(name)}<br>'
                f'{_e(r.get("caption", ""))}</figcaption></figure>',
                f'<figure class="src">{_img(assets.image(src, overlay=mask), "mask " + name)}<figcaption><b>'
                f'{"pose mask" if r.get("pose_found") else "fallback mask (no pose)"}</b><br>{_PART_LEGEND}'
                "</figcaption></figure>"]
        for v in r.get("variants") or []:
            if isinstance(v, Mapping) and isinstance(v.get("file"), str):
                prompt = str(v.get("prompt", ""))
                figs.append(f'<figure>{_img(assets.image(safe_join(base, v["file"])), prompt)}<figcaption>'
                            f"{_e(prompt)}</figcaption></figure>")
        out.append(f'<div class="genrow photorow">{"".join(figs)}</div>')
    return "\n".join(out)


# --------------------------------------------------------------------------------------------
# Runs: discovery and features
# --------------------------------------------------------------------------------------------


def find_runs(root: Path) -> dict[str, dict[int, Path]]:
    """``runs/<arm>_s<seed>/`` folders as {arm: {seed: path}}."""
    runs: dict[str, dict[int, Path]] = {}
    base = root / "runs"
    if not base.is_dir():
        return runs
    for d in sorted(base.iterdir()):
        m = re.fullmatch(r"(.+)_s(\d+)", d.name)
        if m and d.is_dir():
            runs.setdefault(m.group(1), {})[int(m.group(2))] = d
    return runs


def _run_for(arm: str, runs: Mapping[str, Mapping[int, Path]], results: Mapping[str, Any] | None) -> Path | None:
    seeds = runs.get(arm) or {}
    if not seeds:
        return None
    wanted = []
    if results and isinstance(results.get(arm), Mapping):
        wanted.append(results[arm].get("seed"))
    if results and isinstance(results.get("meta"), Mapping):
        wanted += list(results["meta"].get("seeds") or [])[:1]
    for s in wanted:
        if isinstance(s, int) and s in seeds:
            return seeds[s]
    return seeds[min(seeds)]


FEATURE_KEYS = ("q_feats", "q_pids", "q_camids", "q_clothes", "g_feats", "g_pids", "g_camids", "g_clothes")


def load_features(run: Path) -> dict[str, np.ndarray]:
    path = run / "eval" / "features.npz"
    if not path.is_file():
        raise InputError(f"{path} not found")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in FEATURE_KEYS if k not in z.files]
        if missing:
            raise InputError(f"{path} lacks {', '.join(missing)}")
        f = {k: np.asarray(z[k]) for k in FEATURE_KEYS}
    for side in ("q", "g"):
        n = f[f"{side}_feats"].shape[0]
        if f[f"{side}_feats"].ndim != 2 or any(f[f"{side}_{k}"].shape != (n,) for k in ("pids", "camids", "clothes")):
            raise InputError(f"{path}: {side}_* arrays have inconsistent shapes")
    if f["q_feats"].shape[1] != f["g_feats"].shape[1]:
        raise InputError(f"{path}: query and gallery features differ in width")
    return f


def _compared_runs(root: Path, results: Mapping[str, Any] | None
                   ) -> tuple[tuple[Path, dict[str, np.ndarray]], tuple[Path, dict[str, np.ndarray]]] | None:
    """(run folder, features) of the baseline and of the DLCR arm, or None when either run is missing."""
    runs = find_runs(root)
    rb, rd = _run_for(BASELINE, runs, results), _run_for(DLCR, runs, results)
    if rb is None or rd is None:
        return None
    return (rb, load_features(rb)), (rd, load_features(rd))


def load_paths(run: Path) -> dict[str, list[str]] | None:
    path = run / "eval" / "paths.json"
    if not path.is_file():
        return None
    d = _read_json(path)
    if not isinstance(d, Mapping) or not all(isinstance(d.get(k), list) for k in ("query", "gallery")):
        raise InputError(f"{path} must hold lists 'query' and 'gallery'")
    return {"query": [str(p) for p in d["query"]], "gallery": [str(p) for p in d["gallery"]]}


def _align(order: Sequence[str], other: Sequence[str], what: str) -> np.ndarray:
    """Index array taking ``other``'s rows into ``order``'s order (they must hold the same paths)."""
    if list(order) == list(other):
        return np.arange(len(order))
    pos = {p: i for i, p in enumerate(other)}
    if len(pos) != len(other) or set(pos) != set(order):
        raise InputError(f"the two runs were evaluated on different {what} sets")
    return np.array([pos[p] for p in order])


# --------------------------------------------------------------------------------------------
# Section 3: retrieval
# --------------------------------------------------------------------------------------------


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


def check_paths(run: Path, f: Mapping[str, np.ndarray], p: Mapping[str, Sequence[str]]) -> None:
    if len(p["query"]) != len(f["q_pids"]) or len(p["gallery"]) != len(f["g_pids"]):
        raise InputError(f"{run}/eval: paths.json and features.npz disagree in length")


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


# --------------------------------------------------------------------------------------------
# Section 4: training curves
# --------------------------------------------------------------------------------------------


def _curves_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.report.figures import curve_from_history, plot_curves

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


# --------------------------------------------------------------------------------------------
# Section 5: feature space
# --------------------------------------------------------------------------------------------


def _features_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    from dlcr.report.figures import FeatureView, distance_ratio, pca_2d, pick_identities, plot_pca

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


# --------------------------------------------------------------------------------------------
# Page
# --------------------------------------------------------------------------------------------

def _world_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    """The synthetic world's contact sheet (rows: a person's outfits; columns: cameras)."""
    sheet = root / "figures" / "contact_sheet.png"
    if not sheet.is_file():
        raise Skip(f"{sheet} not found (`dlcr demo` draws it when it renders the world)")
    return ('<figure><img src="figures/contact_sheet.png" alt="synthcc contact sheet" '
            'style="max-width:100%;image-rendering:pixelated"><figcaption>every outfit of four training '
            'identities (rows) across the cameras (columns); gray: that camera never saw that outfit'
            '</figcaption></figure>')


SECTIONS: tuple[tuple[str, str, Callable[[Path, Any, _Assets], str]], ...] = (
    ("results", "Results", _results_section),
    ("world", "The synthetic world", _world_section),
    ("generation", "Generated clothes variants", _generation_section),
    ("realphoto", "Real photographs", _realphoto_section),
    ("retrieval", "Retrieval examples", _retrieval_section),
    ("curves", "Training curves", _curves_section),
    ("features", "Feature space (PCA)", _features_section),
)


Section = tuple[str, str, Callable[[], str]]


def write_page(root: Path, *, kind: str, title: str, subtitle: str, sections: Sequence[Section],
               t0: float | None = None) -> Report:
    """Build every section (a :class:`Skip` or a damaged input makes that section a note saying why,
    never the page fail) and write ``root/report.html``."""
    t0 = time.perf_counter() if t0 is None else t0
    body, built, skipped = [], [], []
    for sid, heading, fn in sections:
        try:
            content = fn()
            built.append(sid)
        except Skip as e:
            content = _note(f"skipped: {e}")
            skipped.append((sid, str(e)))
        except _SECTION_ERRORS as e:
            log.warning("report: section %r skipped: %s", sid, e)
            content = _note(f"skipped: {e}")
            skipped.append((sid, str(e)))
        body.append(f'<section id="{sid}"><h2>{_e(heading)}</h2>\n{content}\n</section>')
    nav = "".join(f'<a href="#{sid}">{_e(heading)}</a>' for sid, heading, _ in sections)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"<h1>{_e(title)}</h1>"
        f'<p class="sub">{_e(subtitle)}</p><nav>{nav}</nav>'
        + "\n".join(body)
        + f"<footer>Written by <code>dlcr report</code> in {time.perf_counter() - t0:.1f} s.</footer>"
        "</main></body></html>\n"
    )
    out = root / "report.html"
    atomic_write_text(out, page)
    log.info("report written to %s", out)
    return Report(path=out, kind=kind, built=tuple(built), skipped=tuple(skipped))


def is_demo_folder(root: Path) -> bool:
    """A folder ``dlcr demo --out`` wrote: its ``results.json``, or (a demo still running or killed)
    its ``world/`` and ``work/`` folders."""
    return (root / "results.json").is_file() or ((root / "world").is_dir() and (root / "work").is_dir())


def demo_report(root: Path) -> Report:
    """:func:`build_demo_report`, returning the :class:`Report` (sections built and skipped)."""
    t0 = time.perf_counter()
    results_path = root / "results.json"
    results: Mapping[str, Any] | None = None
    results_err = None
    if results_path.is_file():
        try:
            loaded = _read_json(results_path)
            if isinstance(loaded, Mapping):
                results = loaded
            else:
                results_err = f"{results_path} does not hold an object"
        except InputError as e:
            results_err = str(e)
    assets = _Assets(root)

    def section(sid: str, fn: Callable[[Path, Any, _Assets], str]) -> Callable[[], str]:
        def build() -> str:
            if sid == "results" and results_err:
                raise InputError(results_err)
            return fn(root, results, assets)

        return build

    meta = results.get("meta") if results and isinstance(results.get("meta"), Mapping) else {}
    sub = []
    if meta.get("backend"):
        sub.append(f"generator backend: {meta['backend']}")
    for k in ("k", "l", "m"):
        if k in meta:
            sub.append(f"{k.upper()}={meta[k]}")
    if meta.get("quick"):
        sub.append("quick mode")
    ablation = meta.get("kind") == "ablation"
    if ablation:
        sub.insert(0, f"dataset: {meta.get('dataset', '?')}")
    return write_page(root, kind="demo", title="DLCR ablation report" if ablation else "DLCR demo report",
                      subtitle=" · ".join(sub) if sub else root.name,
                      sections=[(sid, title, section(sid, fn)) for sid, title, fn in SECTIONS], t0=t0)


def build_demo_report(demo_dir: str | Path) -> Path:
    """Write ``<demo_dir>/report.html`` (and ``figures/``) from a ``dlcr demo`` folder; return its path."""
    root = Path(demo_dir)
    if not root.is_dir():
        raise InputError(f"demo folder not found: {root}")
    return demo_report(root.resolve()).path
