"""The demo's work as tasks (stage 1, one generation per data variant, one training per arm and seed)
and the pool of processes that runs them in dependency order."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from dlcr.ablation import ARM_WORK, GEN_VARIANTS, RERANK_EVAL_ARMS, RERANK_PARAMS, share_work, write_eval
from dlcr.demo.masks import mask_iou
from dlcr.demo.settings import DemoSettings, arm_config
from dlcr.demo.validation import holdout_validation, validation_data
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


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
    from dlcr.generation.describers import create_captioner, create_summarizer
    from dlcr.generation.parsers import create_parser

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
    from dlcr.config_args import inpainter_options
    from dlcr.generation import stages

    timed = _Timer()
    p = _paths(out, tag)
    g = arm_config(st, "dlcr_progressive", st.seeds[0], p["world"]).generate
    opts = inpainter_options(st.backend, g)
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
    test set (the progressive arm with and without refinement; it and the baseline also with
    k-reciprocal re-ranking, both orders with refinement, as extra entries) into ``runs/<arm>_s<seed>/eval``."""
    import torch

    from dlcr.config_args import trainer_from_config
    from dlcr.engine.evaluate import EvalSettings, RerankSettings, evaluate_model
    from dlcr.engine.trainer import GeneratedData
    from dlcr.generation import stages
    from dlcr.generation.outputs import GENERATED_MANIFEST
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
        gen = GeneratedData(rows=read_table(w / stages.GENERATED / GENERATED_MANIFEST), root=w / stages.GENERATED)
    tr = trainer_from_config(arm_config(st, arm, seed, p["world"]), validation_data(ds), run_dir, generated=gen)
    tr.resume()
    timed(f"train_{arm}", tr.fit)
    es = EvalSettings(height=st.train_height, width=st.train_width, batch_size=256, workers=st.workers)
    refine = arm == "dlcr_progressive"
    qrows = read_table(p["work"] / stages.QUERY_GENERATED / GENERATED_MANIFEST) if refine else None
    metrics = timed(f"eval_{arm}", evaluate_model, tr.model, ds.splits, p["world"], ds.protocols, es,
                    refine_rows=qrows, refine_root=p["work"] / stages.QUERY_GENERATED, l=st.l, m=st.m,
                    variant=st.refine_variant, keep_features=True,
                    rerank=RerankSettings(*RERANK_PARAMS) if arm in RERANK_EVAL_ARMS else None, rerank_order="both")
    write_eval(run_dir, metrics, ds.splits, ds.protocols)
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
