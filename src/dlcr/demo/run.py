"""``dlcr demo``: the whole of DLCR on the embedded synthetic world, sized for 2 CPU cores.

Stages: render synthcc → hold out a few training identities as a validation split → clothes masks from
the real offline ``pose`` parser (mediapipe; the world's ground-truth label maps with ``masks="truth"``,
or when the pose model is not installed, with a logged reason) and their IoU against the ground truth →
rule descriptions (offline, labelled) → plan K target outfits per training image → inpaint them
(``recolor`` by default; ``tiny`` runs the real diffusers code path with tiny random weights,
meaningless images) → train every arm with the same recipe, seeds and epochs, evaluating the validation
split every ``eval_every`` epochs (the learning curves) → evaluate each arm once on the test set
(standard / same-clothes / clothes-changing), the progressive model again with prediction refinement
on ``l`` generated variants of every query → ``results.json`` + ``report.html``.

The arms are the rows of the paper's Table A1 (:data:`TABLE_A1`), each adding one component, plus the
concatenated arm. Rows 2-4 pair every real image with one of its variants in each batch with no
curriculum (``sampler.schedule=all``), row 5 adds the progressive curriculum, row 6 is row 5's model
evaluated with prediction refinement:

1. ``baseline``: the originals only;
2. ``dlcr_unmasked``: generated data without the ID-preserving mask ("standard diffusion": the whole
   person repainted, identity cues included; ``generate.mask_region=person``, data in ``work_unmasked/``);
3. ``dlcr_random_prompts``: the clothes mask, random garment-vocabulary prompts instead of the
   dataset's outfits (Table A3 row 1; ``generate.prompt_source=vocabulary``, data in ``work_random/``);
4. ``dlcr_paired``: the clothes mask and the dataset's own described outfits (``work/``);
5. ``dlcr_progressive``: + progressive learning;
6. ``dlcr_progressive_refined``: + prediction refinement.

``dlcr_concat``: the data of row 4, concatenated to the originals (no pairing).

``results.json`` keys (per arm, as before: the six metrics, their ``_std`` over seeds, ``seed``,
``seeds``, ``per_seed``):

- ``table_a1``: ``{"rows": [{"row", "arm", "name", "mask_region", "prompt_source", "sampler",
  "refine", <metric>, <metric>_std, ...}, ...], "concat": {same fields}, "metrics": [...], "seeds":
  [...], "epochs": E}``, the table shaped like the paper's Table A1 (mean ± std over seeds);
- ``curves``: ``{arm: {"epochs": [...], "val_top1", "val_map", "val_cc_top1", "val_cc_map", "loss"
  (lists, mean over seeds, fractions), the same with ``_std``, "per_seed": {seed: [{"epoch", ...}]}}}``
  for every trained arm: validation metrics every ``eval_every`` epochs (never the test set);
- ``meta.masks``: ``{"source": "pose" | "truth", "requested", "reason", "fallbacks", "iou": {"clothes",
  "person", "upper", "lower", "footwear", "images"}}`` (mean per-image IoU of the demo's masks
  against the world's ground truth; 1.0 with ``truth``);
- ``meta.validation``: ``{"ids", "query", "gallery", "eval_every", "pids"}``.

Every arm of one seed shares the world, the masks, the descriptions and the recipe; only the data use
(and, for rows 2 and 3, the generated data) differs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlcr.ablation import (  # noqa: F401 - re-exported: the demo's arms are the ablation's
    ARM_WORK,
    ARMS,
    CONCAT_ROW,
    CORE_ARMS,
    CURVE_KEYS,
    GEN_VARIANTS,
    METRIC_KEYS,
    MODE,
    RESULT_ARMS,
    SCHEDULE,
    TABLE_A1,
    aggregate,
    aggregate_curves,
    arm_sets,
    collect_results,
    curves_of,
    results_table,
    share_work,
    versions,
    write_eval,
)
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


MASK_SOURCES = ("pose", "truth")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. ``quick`` is the ~2-minute smoke version the tests run."""

    # sized so that `dlcr demo` (the Table A1 rows and the concatenated arm, one seed) stays within about
    # 10 minutes on 2 CPU cores; `--ids 150 --epochs 20` and friends give the larger world
    ids: int = 100
    height: int = 128  # rendered world (and generated images)
    width: int = 64
    train_height: int = 64  # network input: half the rendered size keeps the arms within minutes on 2 cores
    train_width: int = 32
    world_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    k: int = 4
    l: int = 6  # noqa: E741 - the paper's name
    m: int = 5
    epochs: int = 12
    cal_start: int = 7
    progressive_every: int = 3  # 4 partitions: all variants allowed from epoch 10 (1-based) on
    milestones: tuple[int, ...] = (10,)
    widths: tuple[int, ...] = (16, 32, 64, 128)  # small_resnet's stages: half its default widths, ~2x faster
    cache_images: bool = True  # decoded, resized training images kept in RAM (the demo's data is small)
    batch_size: int = 32
    num_instances: int = 4
    lr: float = 1e-3  # from scratch (no ImageNet weights here) a larger step than CAL's 3.5e-4 is needed
    threads: int = 1  # torch threads; the small network is fastest on one (and oversubscription is ruinous)
    backend: str = "recolor"
    workers: int = 0
    refine_variant: str = "paper"
    quick: bool = False
    extra_sets: tuple[str, ...] = field(default=())
    masks: str = "pose"  # "pose" (the offline real parser) | "truth" (the world's label maps)
    ablation: bool = True  # train the Table A1 rows 2-4 too (False: baseline, concat, progressive)
    val_fraction: float = 0.1  # training identities held out as the validation split
    val_min_ids: int = 2
    eval_every: int = 2  # validation every that many epochs (and after the last)
    jobs: int = 2  # worker processes running the stages and trainings side by side (1: all in this one)

    @classmethod
    def quick_settings(cls, **kw: Any) -> DemoSettings:
        base = {"ids": 40, "k": 4, "l": 3, "epochs": 4, "cal_start": 2, "progressive_every": 1,
                "milestones": (3,), "batch_size": 16, "eval_every": 1, "quick": True}
        base.update(kw)
        return cls(**base)

    @property
    def arms(self) -> tuple[str, ...]:
        return ARMS if self.ablation else CORE_ARMS


def arm_config(st: DemoSettings, arm: str, seed: int, world_root: Path) -> Any:
    """The packaged ``synthcc`` config with the demo's sizes; per arm only ``sampler.mode`` /
    ``sampler.schedule`` and the generated data (``generate.mask_region`` / ``prompt_source``) differ."""
    from dlcr.config import load_config

    sets = [
        f"data.root={world_root}", f"data.height={st.train_height}", f"data.width={st.train_width}",
        f"data.workers={st.workers}", f"data.cache_images={str(st.cache_images).lower()}",
        f"model.widths={list(st.widths)}", f"train.epochs={st.epochs}", f"train.seed={seed}",
        f"train.eval_every={st.eval_every}", f"loss.cal_start_epoch={st.cal_start}",
        f"optim.milestones={list(st.milestones)}", f"optim.lr={st.lr}",
        f"sampler.batch_size={st.batch_size}", f"sampler.num_instances={st.num_instances}",
        f"sampler.progressive_every={st.progressive_every}", *arm_sets(arm),
        f"generate.k={st.k}", f"generate.query_variants={st.l}", f"generate.backend={st.backend}",
        f"eval.refine_l={st.l}", f"eval.refine_m={st.m}", f"eval.refine_variant={st.refine_variant}",
        *st.extra_sets,
    ]
    return load_config("synthcc", sets)


# ----------------------------------------------------------------------------- validation split
VAL_PROTOCOLS_SPEC = (("val", "standard"), ("val_cc", "CC"))


def holdout_validation(ds: Any, *, fraction: float, min_ids: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """``ds`` with ``max(min_ids, round(fraction * ids))`` training identities moved out of ``train``
    into ``val_query`` / ``val_gallery`` (every third image of a held-out person, in path order, is a
    query; the rest is its gallery, so each query has the person's other outfits and cameras to be
    found in: a clothes-changing validation). The remaining training split is relabelled 0..N-1; the
    test splits are untouched. Returns the new dataset and a summary."""
    import numpy as np

    from dlcr.data.datasets.base import CCReIDDataset, Record, relabel_test, relabel_train
    from dlcr.errors import ConfigError

    pids = sorted({s.pid for s in ds.train})
    n = max(int(min_ids), int(round(float(fraction) * len(pids))))
    if n >= len(pids):
        raise ConfigError(f"cannot hold out {n} of {len(pids)} training identities for validation")
    held = {int(p) for p in np.random.default_rng([int(seed), 7411]).choice(pids, size=n, replace=False)}

    def rec(s: Any) -> Any:
        return Record(path=s.path, pid=int(s.pid), camid=s.camid, clothes_key=s.clothes_key, tracklet=s.tracklet,
                      frames=s.frames)

    keep = [rec(s) for s in ds.train if s.pid not in held]
    val_q, val_g = [], []
    for pid in sorted(held):
        mine = sorted((s for s in ds.train if s.pid == pid), key=lambda s: s.path)
        for i, s in enumerate(mine):
            (val_q if i % 3 == 0 else val_g).append(rec(s))
    splits = {k: v for k, v in ds.splits.items() if k != "train"}
    splits["train"] = relabel_train(keep)
    splits.update(relabel_test({"val_query": val_q, "val_gallery": val_g}))
    out = CCReIDDataset(name=ds.name, root=ds.root, splits=splits, video=ds.video, protocols=ds.protocols,
                        skipped=ds.skipped)
    info = {"ids": n, "pids": sorted(held), "query": len(val_q), "gallery": len(val_g),
            "train_ids": len(pids) - n, "train_images": len(keep)}
    return out, info


def validation_data(ds: Any) -> Any:
    """:class:`~dlcr.engine.trainer.TrainData` whose only evaluation splits and protocols are the
    validation ones: the trainer's periodic evaluation never sees the test set."""
    from dlcr.engine.trainer import TrainData
    from dlcr.types import EvalProtocol

    data = TrainData.from_dataset(ds)
    data.eval_splits = {k: v for k, v in data.eval_splits.items() if k in ("val_query", "val_gallery")}
    data.protocols = tuple(EvalProtocol(name, "val_query", "val_gallery", mode) for name, mode in VAL_PROTOCOLS_SPEC)
    return data


# ----------------------------------------------------------------------------- masks
def choose_masks(requested: str) -> tuple[str, str]:
    """(source used, reason when it is not the one asked for) for ``requested`` masks: ``pose`` falls
    back to ``truth`` with a logged reason when the pose parser cannot be built (mediapipe missing)."""
    from dlcr.errors import ConfigError

    if requested not in MASK_SOURCES:
        raise ConfigError(f"--masks must be one of {', '.join(MASK_SOURCES)}, got {requested!r}")
    if requested == "pose":
        try:
            from dlcr.generation.parsing import create_parser

            create_parser("pose")
        except Exception as e:  # mediapipe missing or unusable: the ground truth, said loudly
            from dlcr.errors import first_line

            reason = f"the pose parser is unavailable ({first_line(str(e))}); using the ground-truth label maps"
            log.warning("masks: %s", reason)
            return "truth", reason
    return requested, ""


def mask_iou(samples: Sequence[Any], world_root: Path, label_root: Path) -> dict[str, Any]:
    """Mean per-image IoU of the label maps in ``label_root`` against the world's ground truth: of the
    clothes mask, the person mask and each garment part (an image where both masks are empty counts 1)."""
    import numpy as np

    from dlcr.generation.parsers.folder import SynthCCParser
    from dlcr.generation.parsing import clothes_mask, label_path, part_masks
    from dlcr.io.images import read_label_map

    gt_parser = SynthCCParser()
    sums: dict[str, float] = {"clothes": 0.0, "person": 0.0, "upper": 0.0, "lower": 0.0, "footwear": 0.0}

    def iou(a: Any, b: Any) -> float:
        union = int(np.count_nonzero(a | b))
        return 1.0 if union == 0 else int(np.count_nonzero(a & b)) / union

    paths = sorted({s.path for s in samples})
    for p in paths:
        pred = read_label_map(label_path(label_root, p))
        gt = gt_parser.read(p, world_root)
        if pred.shape != gt.shape:
            from PIL import Image

            pred = np.asarray(Image.fromarray(pred).resize(gt.shape[::-1], Image.Resampling.NEAREST))
        sums["clothes"] += iou(clothes_mask(pred), clothes_mask(gt))
        sums["person"] += iou(pred != 0, gt != 0)
        pp, gp = part_masks(pred), part_masks(gt)
        for part in ("upper", "lower", "footwear"):
            sums[part] += iou(pp[part], gp[part])
    n = max(len(paths), 1)
    return {**{k: v / n for k, v in sums.items()}, "images": len(paths)}


def table_a1(results: dict[str, Any], st: DemoSettings) -> dict[str, Any]:
    """The Table A1 rows (mean ± std over seeds) of a demo's per-arm results."""
    from dlcr.ablation import table_a1 as _table

    return _table(results, seeds=st.seeds, epochs=st.epochs)


# ----------------------------------------------------------------------------- tasks
# The demo's work is a handful of tasks (stage 1, one generation per data variant, one training per arm
# and seed) run by a pool of ``DemoSettings.jobs`` processes in dependency order: the baseline trains
# while the masks are made, and the ablation's generations and trainings share the two cores. Each task
# finds what it needs on disk (the world, the work folders) and leaves its outputs there, so it is
# resumable and its results do not depend on the process that ran it.
def _paths(out: Path, tag: str) -> dict[str, Path]:
    return {"world": out / "world", "work": out / f"work{tag}", "runs": out / f"runs{tag}"}


_DATASETS: dict[tuple[str, float, int, int], tuple[Any, dict[str, Any]]] = {}


def _dataset(world_root: Path, st: DemoSettings) -> tuple[Any, dict[str, Any]]:
    """The world's dataset with the validation identities held out (cached per process)."""
    from dlcr.data.datasets import create_dataset

    key = (str(world_root), st.val_fraction, st.val_min_ids, st.world_seed)
    if key not in _DATASETS:
        _DATASETS[key] = holdout_validation(create_dataset("synthcc", world_root), fraction=st.val_fraction,
                                            min_ids=st.val_min_ids, seed=st.world_seed)
    return _DATASETS[key]


def _queries(ds: Any) -> list[Any]:
    from dlcr.generation import stages

    return [s for name in stages.query_splits(ds.splits) if not name.startswith("val") for s in ds.splits[name]]


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Any, *a: Any, **kw: Any) -> Any:
        t0 = time.time()
        r = fn(*a, **kw)
        dt = time.time() - t0
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        log.info("[demo] %s done in %.1f s", name, dt)
        return r


def _stage1_task(st: DemoSettings, out: Path, tag: str, source: str) -> dict[str, Any]:
    """Masks (+ their IoU against the ground truth), descriptions and every job plan."""
    from dlcr.generation import stages
    from dlcr.generation.describe import create_captioner, create_summarizer
    from dlcr.generation.parsing import create_parser

    timed = _Timer()
    p = _paths(out, tag)
    ds, _ = _dataset(p["world"], st)
    queries = _queries(ds)
    parser = create_parser("pose" if source == "pose" else "synthcc")
    mrep = timed("masks", stages.run_masks, parser, list(ds.train) + queries, p["world"], p["work"])
    iou = timed("mask_iou", mask_iou, list(ds.train) + queries, p["world"], p["work"] / stages.MASKS)
    log.info("[demo] %s masks: clothes IoU %.3f against the ground truth (%d images)", source, iou["clothes"],
             iou["images"])
    timed("describe", stages.run_describe, ds.train, p["world"], p["work"], captioner=create_captioner("rule"),
          summarizer=create_summarizer("vote"))
    cfg0 = arm_config(st, "dlcr_progressive", st.seeds[0], p["world"])
    for suffix in sorted({ARM_WORK[a] for a in st.arms if a in ARM_WORK}):
        w = out / f"work{suffix}{tag}"
        if suffix:
            share_work(p["work"], w)
        timed(f"plan{suffix}", stages.run_plan, ds.train, w, k=st.k, seed=cfg0.generate.seed,
              allow_same_person=False, num_partitions=cfg0.sampler.num_partitions, dataset="synthcc",
              generator=st.backend, prompt_source=GEN_VARIANTS[suffix][1])
    timed("plan_queries", stages.run_plan_queries, queries, p["work"], l=st.l, seed=cfg0.generate.seed,
          dataset="synthcc", generator=st.backend)
    return {"timings": timed.seconds, "parser": str(getattr(parser, "description", source)),
            "fallbacks": int(getattr(mrep, "fallbacks", 0) or 0), "iou": iou}


def _generate_task(st: DemoSettings, out: Path, tag: str, suffix: str) -> dict[str, Any]:
    """Inpaint one data variant's jobs (and, for the dataset's, the query variants of refinement)."""
    from dlcr.generation import stages

    timed = _Timer()
    p = _paths(out, tag)
    g = arm_config(st, "dlcr_progressive", st.seeds[0], p["world"]).generate
    opts = stages.inpainter_options(st.backend, g)
    batch = g.batch_size if st.backend != "recolor" else 64
    w = out / f"work{suffix}{tag}"
    timed(f"inpaint{suffix}", stages.run_inpaint, w, p["world"], backend=st.backend, backend_options=opts,
          batch_size=batch, mask_region=GEN_VARIANTS[suffix][0])
    if not suffix:
        timed("inpaint_queries", stages.run_inpaint, w, p["world"], backend=st.backend, backend_options=opts,
              batch_size=batch, queries=True)
    return {"timings": timed.seconds}


def _train_task(st: DemoSettings, out: Path, tag: str, arm: str, seed: int) -> dict[str, Any]:
    """Train one arm for one seed (validation every ``eval_every`` epochs), then evaluate it once on the
    test set (the progressive arm with and without refinement) into ``runs/<arm>_s<seed>/eval``."""
    import torch

    from dlcr.engine.evaluate import EvalSettings, evaluate_model
    from dlcr.engine.trainer import GeneratedData, Trainer
    from dlcr.generation import stages
    from dlcr.generation.runner import MANIFEST
    from dlcr.io.tables import read_table

    timed = _Timer()
    p = _paths(out, tag)
    run_dir = p["runs"] / f"{arm}_s{seed}"
    done = run_dir / "eval" / "metrics.json"
    if done.is_file():
        return {"timings": {}}
    ds, _ = _dataset(p["world"], st)
    gen = None
    if arm != "baseline":
        w = out / f"work{ARM_WORK[arm]}{tag}"
        gen = GeneratedData(rows=read_table(w / stages.GENERATED / MANIFEST), root=w / stages.GENERATED)
    tr = Trainer(arm_config(st, arm, seed, p["world"]), validation_data(ds), run_dir, generated=gen)
    tr.resume()
    timed(f"train_{arm}", tr.fit)
    es = EvalSettings(height=st.train_height, width=st.train_width, batch_size=256, workers=st.workers)
    refine = arm == "dlcr_progressive"
    qrows = read_table(p["work"] / stages.QUERY_GENERATED / MANIFEST) if refine else None
    metrics = timed(f"eval_{arm}", evaluate_model, tr.model, ds.splits, p["world"], ds.protocols, es,
                    refine_rows=qrows, refine_root=p["work"] / stages.QUERY_GENERATED, l=st.l, m=st.m,
                    variant=st.refine_variant, keep_features=True)
    write_eval(run_dir, metrics, ds.splits)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return {"timings": timed.seconds}


def _exit_with_parent(interval: float = 2.0) -> None:
    """End this pool process when the demo that started it is gone (killed, not interrupted): a
    worker must not go on training for nobody."""
    import threading

    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="dlcr-demo-parent-watch", daemon=True).start()


def _init_worker(threads: int, level: int) -> None:
    """A pool process: the parent's log level in plain lines, no progress bars (they would interleave)."""
    import torch

    from dlcr.utils import progress
    from dlcr.utils.logging import LEVELS, setup_logging

    _exit_with_parent()
    name = next((k for k, v in LEVELS.items() if v == level), "normal")
    setup_logging(name, rich=False)
    progress.set_quiet(True)
    if threads > 0:
        torch.set_num_threads(threads)


def _stop_pool(pool: Any) -> None:
    """Stop a pool at once (a failed task, Ctrl-C, SIGTERM): pending tasks are cancelled and the
    processes of running ones terminated instead of waited for -- what they committed stays, and the
    same command resumes from it."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # the executor keeps no public handle
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        p.terminate()
    for p in procs:
        p.join(timeout=10)


def _run_tasks(tasks: list[tuple[str, tuple[str, ...], Any, dict[str, Any]]], jobs: int, threads: int
               ) -> dict[str, Any]:
    """Run ``(key, deps, fn, kwargs)`` tasks, each once every task it depends on is done: in this process
    in list order (``jobs`` <= 1), else on a pool of ``jobs`` spawned processes (ready tasks submitted in
    list order). The first failure, Ctrl-C or SIGTERM stops the run at once (:func:`_stop_pool`) and is raised."""
    results: dict[str, Any] = {}
    if jobs <= 1:
        for key, _, fn, kw in tasks:
            results[key] = fn(**kw)
        return results
    import logging
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    level = logging.getLogger("dlcr").getEffectiveLevel()
    todo = list(tasks)
    running: dict[Any, str] = {}
    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                               initargs=(threads, level))
    try:
        while todo or running:
            for t in [t for t in todo if all(d in results for d in t[1])]:
                todo.remove(t)
                running[pool.submit(t[2], **t[3])] = t[0]
            if not running:
                raise RuntimeError(f"demo tasks with unmet dependencies: {[t[0] for t in todo]}")
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for f in finished:
                results[running.pop(f)] = f.result()
    except BaseException:
        _stop_pool(pool)
        raise
    pool.shutdown(wait=True)
    return results


def run_demo(out: str | os.PathLike, st: DemoSettings, *, report: bool = True) -> dict[str, Any]:
    """Run every stage into ``out`` (resumable: finished stages and runs are reused)."""
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
    from dlcr.testing.photos import run_real_photo_stage

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
    if report:
        from dlcr.report import build_demo_report

        timed("report", build_demo_report, out)
        results["meta"]["stage_seconds"]["report"] = round(timed.seconds["report"], 2)
        atomic_write_json(out / "results.json", results)
    return results
