"""``run_demo``: every stage of the demo into one folder, resumable."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dlcr.ablation import ARM_WORK, collect_results, versions
from dlcr.demo.masks import choose_masks
from dlcr.demo.settings import DemoSettings
from dlcr.demo.tasks import _dataset, _generate_task, _paths, _run_tasks, _stage1_task, _Timer, _train_task
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


def table_a1(results: dict[str, Any], st: DemoSettings) -> dict[str, Any]:
    """The Table A1 rows (mean ± std over seeds) of a demo's per-arm results."""
    from dlcr.ablation import table_a1 as _table

    return _table(results, seeds=st.seeds, epochs=st.epochs)


def run_demo(out: str | os.PathLike, st: DemoSettings, *, report: Callable[[Path], Any] | None = None
             ) -> dict[str, Any]:
    """Run every stage into ``out`` (resumable: finished stages and runs are reused); then
    ``report(out)`` when given (``dlcr demo`` passes :func:`dlcr.report.build_demo_report`), timed
    into ``meta.stage_seconds.report``."""
    import torch

    from dlcr.io.atomic import atomic_write_json
    from dlcr.synth import contact_sheet, render_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if st.threads > 0:
        torch.set_num_threads(st.threads)
    t_start = time.time()
    timed = _Timer()
    source, mask_reason = choose_masks(st.masks)
    tag = "" if source == "pose" else "_truth"  # masks of another source never share a folder
    p = _paths(out, tag)
    world = timed("render", render_world, p["world"], ids=st.ids, seed=st.world_seed, height=st.height,
                  width=st.width)
    contact_sheet(p["world"], out / "figures" / "contact_sheet.png", n_ids=4, zoom=2)
    _, val_info = _dataset(p["world"], st)
    val_info["eval_every"] = st.eval_every

    common = {"st": st, "out": out, "tag": tag}
    tasks: list[tuple[str, tuple[str, ...], Any, dict[str, Any]]] = [
        ("stage1", (), _stage1_task, {**common, "source": source})]
    tasks += [(f"train:baseline:{s}", (), _train_task, {**common, "arm": "baseline", "seed": s}) for s in st.seeds]
    suffixes = sorted({ARM_WORK[a] for a in st.arms if a in ARM_WORK})
    tasks += [(f"gen:{x}", ("stage1",), _generate_task, {**common, "suffix": x}) for x in suffixes]
    tasks += [(f"train:{a}:{s}", (f"gen:{ARM_WORK[a]}",), _train_task, {**common, "arm": a, "seed": s})
              for s in st.seeds for a in st.arms if a != "baseline"]
    # finished trainings are not run again; with none left (a resumed demo) the remaining, resumed stages
    # are cheap and run in this process (no pool to start)
    tasks = [t for t in tasks if not (t[0].startswith("train:") and
                                      (p["runs"] / f"{t[3]['arm']}_s{t[3]['seed']}" / "eval" / "metrics.json").is_file())]
    left = [t for t in tasks if t[0].startswith("train:")]
    done = _run_tasks(tasks, st.jobs if left else 1, st.threads)
    done.update({f"train:{a}:{s}": {"timings": {}} for s in st.seeds for a in st.arms if f"train:{a}:{s}" not in done})
    for r in done.values():
        for k, v in r["timings"].items():
            timed.seconds[k] = timed.seconds.get(k, 0.0) + v
    s1 = done["stage1"]
    masks_meta = {"source": source, "requested": st.masks, "reason": mask_reason, "parser": s1["parser"],
                  "fallbacks": s1["fallbacks"], "iou": s1["iou"]}

    # stage 1 on real photographs (pose masks → rule captions → recolor), shown next to synthcc in the
    # report; skipped with a reason when the optional offline models are not installed
    from dlcr.demo.realphoto import run_real_photo_stage

    real = timed("realphoto", run_real_photo_stage, out / "realphoto", k=4, seed=st.world_seed)
    if real.get("status") != "ok":
        log.warning("real-photo stage skipped: %s", real.get("reason"))

    results = collect_results(p["runs"], st.arms, st.seeds, refined="dlcr_progressive" in st.arms,
                              epochs=st.epochs)
    timed.seconds["total"] = time.time() - t_start
    results["meta"] = {"seeds": list(st.seeds), "stage_seconds": {k: round(v, 2) for k, v in timed.seconds.items()},
                       "versions": versions(), "quick": st.quick, "backend": st.backend, "k": st.k, "l": st.l,
                       "m": st.m, "world": world, "settings": asdict(st), "masks": masks_meta,
                       "validation": val_info, "arms": list(st.arms), "work": p["work"].name,
                       "runs": p["runs"].name}
    atomic_write_json(out / "results.json", results)
    if report is not None:
        timed("report", report, out)
        results["meta"]["stage_seconds"]["report"] = round(timed.seconds["report"], 2)
        atomic_write_json(out / "results.json", results)
    return results
