"""``dlcr report PATH`` on any folder dlcr writes: which kind it is, and the report of each kind.

Three kinds (:func:`folder_kind`), told apart by the files their command leaves:

- a **demo folder** (``dlcr demo --out``): ``results.json`` (or, while the demo runs, ``world/`` +
  ``work/``); its report is :func:`dlcr.report.html.build_demo_report`. An **ablation folder**
  (``dlcr ablate --out``) has the same layout and report; its ``results.json`` names the dataset's
  images and the work folder (``meta.images``, ``meta.work``);
- a **work folder** (``dlcr generate --work``, default ``out/<dataset>``): ``masks/``,
  ``captions.parquet``, ``outfits.parquet``, ``jobs.parquet``, ``generated/``, ``query_*``. Its
  report: what each stage holds (counts), the settings each stage's signature records, clothes masks
  over a few originals, and originals next to their generated variants;
- a **run folder** (``dlcr train``, ``<train.out_dir>/<name>``): ``log.jsonl``, ``history.json``,
  ``checkpoints/`` (and ``config.yaml``). Its report: final metrics (``eval/metrics.json`` of
  ``dlcr evaluate`` when present, else the last evaluation logged during training), loss and metric
  curves from ``log.jsonl``, the checkpoints, the resolved config, and retrieval panels when the run
  saved test features (``eval/features.npz`` + ``eval/paths.json``, as ``dlcr demo``'s runs do).

The originals are not part of a work or run folder: they are read from ``--root`` when given, else
from where the folder says or implies they are (the run's ``data.root``; for a work folder its
demo's ``world/``, the folder itself, or the packaged config's ``data.root`` of its dataset). Every
section that cannot be built says precisely why, with the path it looked for.
"""

from __future__ import annotations

import os
from pathlib import Path

from dlcr.report.common import Report
from dlcr.report.html import demo_report
from dlcr.report.kinds import folder_kind
from dlcr.report.runfolder import run_report
from dlcr.report.workfolder import PackagedRoot, work_report


def build_report(path: str | os.PathLike, *, images: str | os.PathLike | None = None,
                 packaged_root: PackagedRoot | None = None) -> Report:
    """Write ``PATH/report.html`` (and ``PATH/figures/``) for a demo, work or run folder.

    ``images``: the dataset root holding the original images of a work or run folder (``--root``);
    by default found as the module docstring says. A demo folder has its own (``world/``).
    ``packaged_root``: dataset name -> its packaged config's ``data.root`` (a work folder's last guess).
    """
    p = Path(path)
    kind = folder_kind(p)
    root = p.resolve()
    if kind == "demo":
        return demo_report(root)
    given = Path(images) if images is not None else None
    return work_report(root, given, packaged_root) if kind == "work" else run_report(root, given)


__all__ = ["build_report", "folder_kind", "run_report", "work_report"]
