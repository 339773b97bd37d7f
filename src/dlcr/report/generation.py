"""Originals, clothes masks and generated variants of a work folder (:func:`generation_grid`), shown
by the demo report and by the work-folder report, and how a generation folder's manifest is missing."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from dlcr.errors import InputError
from dlcr.generation.stages import GENERATED, MASKS, OUTFITS, QUERY_GENERATED
from dlcr.io.paths import safe_join
from dlcr.report.common import (
    _PART_LEGEND,
    N_GEN_ROWS,
    Skip,
    _Assets,
    _e,
    _img,
    _note,
    _num,
    _read_rows,
    images_root,
    work_root,
)
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


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


def _generation_section(root: Path, results: Mapping[str, Any] | None, assets: _Assets) -> str:
    return generation_grid(assets, work_root(root, results), images_root(root, results))
