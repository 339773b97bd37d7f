"""``dlcr demo``: the whole of DLCR on the embedded synthetic world, sized for 2 CPU cores.

Stages: render synthcc → ground-truth label maps → rule descriptions (offline, labelled) → plan K
target outfits per training image → inpaint them (``recolor`` by default; ``tiny`` runs the real
diffusers code path with tiny random weights, meaningless images) → train the baseline on the
originals, then the same recipe with DLCR data (concatenated; paired + progressive) → evaluate each
(standard / same-clothes / clothes-changing), and the progressive model again with prediction
refinement on ``l`` generated variants of every query → ``results.json`` + ``report.html``.

Every arm of one seed shares the world, the generated data and the recipe; only the data use differs.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlcr.utils.logging import get_logger

log = get_logger(__name__)

ARMS = ("baseline", "dlcr_concat", "dlcr_progressive")
RESULT_ARMS = ARMS + ("dlcr_progressive_refined",)
MODE = {"baseline": "none", "dlcr_concat": "concat", "dlcr_progressive": "paired"}
METRIC_KEYS = ("cc_top1", "cc_map", "sc_top1", "sc_map", "top1", "map")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. ``quick`` is the ~2-minute smoke version the tests run."""

    ids: int = 150
    height: int = 128  # rendered world (and generated images)
    width: int = 64
    train_height: int = 64  # network input: half the rendered size keeps 3 arms within minutes on 2 cores
    train_width: int = 32
    world_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    k: int = 8
    l: int = 6  # noqa: E741 - the paper's name
    m: int = 5
    epochs: int = 20
    cal_start: int = 12
    progressive_every: int = 4  # 4 partitions: all variants allowed from epoch 13 (1-based) on
    milestones: tuple[int, ...] = (16,)
    batch_size: int = 32
    num_instances: int = 4
    lr: float = 1e-3  # from scratch (no ImageNet weights here) a larger step than CAL's 3.5e-4 is needed
    threads: int = 1  # torch threads; the small network is fastest on one (and oversubscription is ruinous)
    backend: str = "recolor"
    workers: int = 0
    refine_variant: str = "paper"
    quick: bool = False
    extra_sets: tuple[str, ...] = field(default=())

    @classmethod
    def quick_settings(cls, **kw: Any) -> DemoSettings:
        base = {"ids": 40, "k": 4, "l": 3, "epochs": 4, "cal_start": 2, "progressive_every": 1,
                "milestones": (3,), "batch_size": 16, "quick": True}
        base.update(kw)
        return cls(**base)


def arm_config(st: DemoSettings, arm: str, seed: int, world_root: Path) -> Any:
    """The packaged ``synthcc`` config with the demo's sizes; only ``sampler.mode`` differs per arm."""
    from dlcr.config import load_config

    sets = [
        f"data.root={world_root}", f"data.height={st.train_height}", f"data.width={st.train_width}",
        f"data.workers={st.workers}", f"train.epochs={st.epochs}", f"train.seed={seed}",
        f"train.eval_every={st.epochs}", f"loss.cal_start_epoch={st.cal_start}",
        f"optim.milestones={list(st.milestones)}", f"optim.lr={st.lr}",
        f"sampler.batch_size={st.batch_size}", f"sampler.num_instances={st.num_instances}",
        f"sampler.mode={MODE[arm]}", f"sampler.progressive_every={st.progressive_every}",
        f"generate.k={st.k}", f"generate.query_variants={st.l}", f"generate.backend={st.backend}",
        f"eval.refine_l={st.l}", f"eval.refine_m={st.m}", f"eval.refine_variant={st.refine_variant}",
        *st.extra_sets,
    ]
    return load_config("synthcc", sets)


def _row(metrics: dict[str, Any], suffix: str = "") -> dict[str, float]:
    def g(proto: str, key: str) -> float:
        return float(metrics[f"{proto}{suffix}"][key])

    return {"cc_top1": g("cc", "top1"), "cc_map": g("cc", "mAP"), "sc_top1": g("sc", "top1"),
            "sc_map": g("sc", "mAP"), "top1": g("standard", "top1"), "map": g("standard", "mAP")}


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("dlcr", "torch", "torchvision", "numpy", "diffusers", "transformers"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


def aggregate(per_seed: Sequence[dict[str, float]]) -> dict[str, Any]:
    import numpy as np

    out: dict[str, Any] = {}
    for k in METRIC_KEYS:
        vals = np.array([r[k] for r in per_seed], dtype=np.float64)
        out[k] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    out["seed"] = int(per_seed[0]["seed"])
    out["seeds"] = [int(r["seed"]) for r in per_seed]
    out["per_seed"] = list(per_seed)
    return out


def run_demo(out: str | os.PathLike, st: DemoSettings, *, report: bool = True) -> dict[str, Any]:
    """Run every stage into ``out`` (resumable: finished stages and runs are reused)."""
    import numpy as np
    import torch

    from dlcr.data.datasets import create_dataset
    from dlcr.engine.evaluate import EvalSettings, evaluate_model, save_features
    from dlcr.engine.trainer import GeneratedData, TrainData, Trainer
    from dlcr.generation import stages
    from dlcr.generation.describe import create_captioner, create_summarizer
    from dlcr.generation.parsing import create_parser
    from dlcr.generation.runner import MANIFEST
    from dlcr.io.atomic import atomic_write_json
    from dlcr.io.tables import read_table
    from dlcr.synth import render_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if st.threads > 0:
        torch.set_num_threads(st.threads)
    world_root, work = out / "world", out / "work"
    timings: dict[str, float] = {}

    def timed(name: str, fn: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.time()
        r = fn(*a, **kw)
        timings[name] = timings.get(name, 0.0) + time.time() - t0
        log.info("[demo] %s done in %.1f s", name, time.time() - t0)
        return r

    world = timed("render", render_world, world_root, ids=st.ids, seed=st.world_seed, height=st.height,
                  width=st.width)
    from dlcr.synth import contact_sheet

    contact_sheet(world_root, out / "figures" / "contact_sheet.png", n_ids=4, zoom=2)
    ds = create_dataset("synthcc", world_root)
    queries = [s for name in stages.query_splits(ds.splits) for s in ds.splits[name]]
    timed("masks", stages.run_masks, create_parser("synthcc"), list(ds.train) + queries, world_root, work)
    timed("describe", stages.run_describe, ds.train, world_root, work, captioner=create_captioner("rule"),
          summarizer=create_summarizer("vote"))
    cfg0 = arm_config(st, "dlcr_progressive", st.seeds[0], world_root)
    g = cfg0.generate
    timed("plan", stages.run_plan, ds.train, work, k=st.k, seed=g.seed, allow_same_person=False,
          num_partitions=cfg0.sampler.num_partitions, dataset="synthcc", generator=st.backend)
    opts = stages.inpainter_options(st.backend, g)
    timed("inpaint", stages.run_inpaint, work, world_root, backend=st.backend, backend_options=opts,
          batch_size=g.batch_size if st.backend != "recolor" else 64)
    timed("plan_queries", stages.run_plan_queries, queries, work, l=st.l, seed=g.seed, dataset="synthcc",
          generator=st.backend)
    timed("inpaint_queries", stages.run_inpaint, work, world_root, backend=st.backend, backend_options=opts,
          batch_size=g.batch_size if st.backend != "recolor" else 64, queries=True)

    # stage 1 on real photographs (pose masks → rule captions → recolor), shown next to synthcc in the
    # report; skipped with a reason when the optional offline models are not installed
    from dlcr.testing.photos import run_real_photo_stage

    real = timed("realphoto", run_real_photo_stage, out / "realphoto", k=4, seed=st.world_seed)
    if real.get("status") != "ok":
        log.warning("real-photo stage skipped: %s", real.get("reason"))

    data = TrainData.from_dataset(ds)
    gen = GeneratedData(rows=read_table(work / stages.GENERATED / MANIFEST), root=work / stages.GENERATED)
    qrows = read_table(work / stages.QUERY_GENERATED / MANIFEST)
    per_arm: dict[str, list[dict[str, float]]] = {a: [] for a in RESULT_ARMS}
    for seed in st.seeds:
        for arm in ARMS:
            cfg = arm_config(st, arm, seed, world_root)
            run_dir = out / "runs" / f"{arm}_s{seed}"
            done = run_dir / "eval" / "metrics.json"
            if done.is_file():
                metrics = json.loads(done.read_text())
            else:
                tr = Trainer(cfg, data, run_dir, generated=None if arm == "baseline" else gen)
                tr.resume()
                timed(f"train_{arm}", tr.fit)
                es = EvalSettings(height=st.train_height, width=st.train_width, batch_size=256, workers=st.workers)
                refine = arm == "dlcr_progressive"
                metrics = timed(f"eval_{arm}", evaluate_model, tr.model, ds.splits, world_root, ds.protocols, es,
                                refine_rows=qrows if refine else None, refine_root=work / stages.QUERY_GENERATED,
                                l=st.l, m=st.m, variant=st.refine_variant, keep_features=True)
                feats = metrics.pop("_features")
                extras = metrics.pop("_extras")
                (run_dir / "eval").mkdir(parents=True, exist_ok=True)
                save_features(run_dir / "eval" / "features.npz", feats["query"], feats["gallery"])
                atomic_write_json(run_dir / "eval" / "paths.json",
                                  {"query": [s.path for s in ds.splits["query"]],
                                   "gallery": [s.path for s in ds.splits["gallery"]]})
                if "standard_refined_sims" in extras:
                    from dlcr.io.atomic import atomic_write

                    with atomic_write(run_dir / "eval" / "refined_sims.npy", "wb") as fh:
                        np.save(fh, np.asarray(extras["standard_refined_sims"], dtype=np.float32))
                atomic_write_json(done, metrics)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            per_arm[arm].append({**_row(metrics), "seed": seed})
            if arm == "dlcr_progressive":
                per_arm["dlcr_progressive_refined"].append({**_row(metrics, "_refined"), "seed": seed})

    results: dict[str, Any] = {arm: aggregate(rows) for arm, rows in per_arm.items()}
    results["meta"] = {"seeds": list(st.seeds), "stage_seconds": {k: round(v, 2) for k, v in timings.items()},
                       "versions": _versions(), "quick": st.quick, "backend": st.backend, "k": st.k, "l": st.l,
                       "m": st.m, "world": world, "settings": asdict(st)}
    atomic_write_json(out / "results.json", results)
    if report:
        from dlcr.report import build_demo_report

        timed("report", build_demo_report, out)
        results["meta"]["stage_seconds"]["report"] = round(timings["report"], 2)
        atomic_write_json(out / "results.json", results)
    return results


def results_table(results: dict[str, Any]) -> str:
    head = f"{'arm':<28}" + "".join(f"{k:>9}" for k in METRIC_KEYS)
    lines = [head]
    for arm in RESULT_ARMS:
        r = results[arm]
        lines.append(f"{arm:<28}" + "".join(f"{100 * r[k]:>9.1f}" for k in METRIC_KEYS))
    return "\n".join(lines)
