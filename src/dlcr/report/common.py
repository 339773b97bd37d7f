"""What every report section shares: escaping and formatting helpers, the :class:`Skip` signal, the
:class:`Report` record, the thumbnail writer (:class:`_Assets`) and where a demo folder keeps its
originals and work folder."""

from __future__ import annotations

import hashlib
import html
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.errors import DlcrError, InputError
from dlcr.io.images import read_label_map, read_rgb
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


def fmt_pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def _to_percent(v: Any) -> str:
    """A fraction as a percentage with two decimals (as ``dlcr evaluate`` prints it); – when not a number."""
    n = _num(v)
    return "–" if n is None else f"{100 * n:.2f}"


def _fmt_s(v: float | None) -> str:
    if v is None:
        return "–"
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min"


def _read_rows(path: Path) -> list[dict[str, Any]]:
    from dlcr.io.tables import read_table

    try:
        return read_table(path)
    except Exception as e:  # pyarrow raises its own error types for damaged files
        raise InputError(f"cannot read {path}: {e}") from None


_PART_LEGEND = (
    '<span style="color:#c62828">upper</span> / <span style="color:#2f5fc4">lower</span> / '
    '<span style="color:#23853f">shoes</span>'
)


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
