"""The demo report: :func:`build_demo_report` reads what ``dlcr demo`` left in its folder (results,
generated images, masks, training histories, test features) and writes ``report.html`` (one
self-contained HTML page, inline CSS, no scripts) plus PNGs in ``figures/`` next to them.

Each section is built on its own; when its inputs are missing or unreadable the section says so in a
note (naming the path it looked for) and the rest of the page is still written, so a partial demo
still gets a useful report. The sections live in their own modules (:mod:`dlcr.report.results`,
:mod:`~dlcr.report.generation`, :mod:`~dlcr.report.realphoto`, :mod:`~dlcr.report.retrieval`,
:mod:`~dlcr.report.curves`, whose feature section draws the paper's Fig. A5-A7 with
:mod:`~dlcr.report.paperfigs`); the page machinery is :func:`dlcr.report.page.write_page`, which the
reports of a generation work folder and of a training run (:mod:`dlcr.report.folders`) share.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlcr.errors import InputError
from dlcr.report.common import METRICS, Report, Skip, _Assets, _read_json
from dlcr.report.curves import _curves_section, _features_section
from dlcr.report.generation import _generation_section
from dlcr.report.kinds import is_demo_folder
from dlcr.report.page import write_page
from dlcr.report.realphoto import _realphoto_section, pose_extra_missing
from dlcr.report.results import _results_section, metric_stats
from dlcr.report.retrieval import _retrieval_section


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
    ("features", "Feature space and activation maps (PCA; paper Fig. A5-A7)", _features_section),
)


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


__all__ = ["METRICS", "Report", "build_demo_report", "demo_report", "is_demo_folder", "metric_stats",
           "pose_extra_missing"]
