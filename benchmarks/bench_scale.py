"""Scale: evaluation with prediction refinement at LaST size in bounded memory (and, with
``--part jobs``, the bookkeeping of a CCVID-size generation: see ``scale_jobs.py``).

Evaluation problem: n_query queries, each with l = 6 clothes-changed variants, against n_gallery
images, 256-d L2-normalised features (a person centre + noise; a variant = its query + noise),
LaST-like labels (many identities, a few cameras and outfits), under the standard and the
clothes-changing rule. Each measurement is one child process (so its peak RSS is its own): it
builds the features, warms up on a small problem, then times ``evaluate_protocols`` with
refinement. Figures: median over ``--repeat`` children, with the load average of the machine
(``os.getloadavg``, 1 minute) when each child finished.

The plain reference is ``evaluate_protocols_reference``: the scoring as it was before (a distance
matrix, one full sort and per-protocol refinement and ranking passes per block of queries), under
the same budget. It runs at the mid size, alternating with the fast path, and its metrics must be
identical (the script stops otherwise); at LaST size it runs only with ``--big-reference`` (it
takes minutes there).

    python benchmarks/bench_scale.py                      # mid 3,000 x 30,000 and LaST 10,000 x 125,000
    python benchmarks/bench_scale.py --small              # a one-minute smoke run
    python benchmarks/bench_scale.py --part jobs [...]    # the generation half (scale_jobs.py)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _problem(nq: int, ng: int, l: int, dim: int, ids: int, seed: int = 0):  # noqa: E741
    import numpy as np
    import torch

    from dlcr.evaluation import Features

    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    centres = torch.nn.functional.normalize(torch.randn(ids, dim, generator=g), dim=1)

    def feats(n: int) -> Features:
        pid = rng.integers(0, ids, n)
        f = torch.nn.functional.normalize(centres[torch.from_numpy(pid)] + 0.9 * torch.randn(n, dim, generator=g) /
                                          dim ** 0.5 * 4, dim=1)
        return Features(feats=f.contiguous(), pids=pid, camids=rng.integers(0, 4, n),
                        clothes_ids=rng.integers(0, 3, n))

    q, gal = feats(nq), feats(ng)
    v = torch.nn.functional.normalize(q.feats[None] + 0.3 * torch.randn(l, nq, dim, generator=g) / dim ** 0.5 * 4,
                                      dim=-1)
    return {"query": q, "gallery": gal}, {"query": v}


def _child(nq: int, ng: int, l: int, dim: int, ids: int, budget: float | None, reference: bool,  # noqa: E741
           out: mp.Queue) -> None:
    import torch

    from dlcr.evaluation import evaluate_protocols, evaluate_protocols_reference
    from dlcr.types import EvalProtocol

    torch.set_num_threads(max(1, torch.get_num_threads()))
    run = evaluate_protocols_reference if reference else evaluate_protocols
    protocols = [EvalProtocol("standard", "query", "gallery", "standard"),
                 EvalProtocol("cc", "query", "gallery", "CC")]
    warm, wv = _problem(300, 2000, l, dim, 100, seed=1)
    run(warm, protocols, refine_variants=wv, m=5, max_memory_gb=budget)  # warm-up
    split, variants = _problem(nq, ng, l, dim, ids)
    t0 = time.perf_counter()
    res = run(split, protocols, refine_variants=variants, m=5, max_memory_gb=budget)
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    out.put((seconds, peak_gb, os.getloadavg()[0], res))


def _one(nq: int, ng: int, l: int, dim: int, ids: int, budget: float | None, reference: bool  # noqa: E741
         ) -> tuple[float, float, float, dict]:
    ctx = mp.get_context("spawn")
    q: mp.Queue = ctx.Queue()
    p = ctx.Process(target=_child, args=(nq, ng, l, dim, ids, budget, reference, q))
    p.start()
    got = q.get()
    p.join()
    if p.exitcode:
        raise SystemExit(f"child exited with {p.exitcode}")
    return got


def measure(size: tuple[int, int, int], l: int, dim: int, budget: float | None, repeat: int,  # noqa: E741
            with_reference: bool) -> dict[str, list[tuple[float, float, float, dict]]]:
    """Runs of the fast path (and, alternating with them, of the reference), one child each."""
    nq, ng, ids = size
    runs: dict[str, list] = {"fast": [], "reference": []}
    for _ in range(max(1, repeat)):
        runs["fast"].append(_one(nq, ng, l, dim, ids, budget, False))
        if with_reference:
            runs["reference"].append(_one(nq, ng, l, dim, ids, budget, True))
            if runs["reference"][-1][3] != runs["fast"][-1][3]:
                raise SystemExit(f"fast and reference metrics differ: {runs['fast'][-1][3]} vs "
                                 f"{runs['reference'][-1][3]}")
    return runs


def _row(size: str, mode: str, runs: list[tuple[float, float, float, dict]], note: str = "") -> float:
    t = statistics.median(r[0] for r in runs)
    mem = statistics.median(r[1] for r in runs)
    loads = ", ".join(f"{r[2]:.1f}" for r in runs)
    print(f"  {size:<18}{mode:<22}{t:>9.1f}{mem:>9.2f}  load {loads}{'  ' + note if note else ''}")
    return t


def eval_part(args: argparse.Namespace) -> None:
    from dlcr.evaluation.evaluator import query_rows_per_block

    l, dim = args.variants, 256  # noqa: E741
    if args.small:  # a small budget, so that the small problems are streamed too
        mid, big = (800, 6000, 400), (2000, 20000, 1000)
        args.budget = min(args.budget, 0.05)
        args.mid_budget = min(args.mid_budget, 0.02)
    else:
        mid, big = (3000, 30000, 1500), (10000, 125000, 5000)  # LaST test: ~10k queries x ~125k gallery
    mid_budget = min(args.budget, args.mid_budget)
    print(f"evaluation + refinement (l={l}, m=5, {dim}-d, standard and CC protocols), median of {args.repeat} "
          f"(LaST size: {args.big_repeat or args.repeat}); eval.max_memory_gb={args.budget:g} "
          f"(mid size: {mid_budget:g}); {os.cpu_count()} cores")
    print(f"  {'size':<18}{'scoring':<22}{'seconds':>9}{'peak GB':>9}  load at the end of each run")
    runs = measure(mid, l, dim, mid_budget, args.repeat, True)
    tf = _row(f"{mid[0]}x{mid[1]}", "fast", runs["fast"])
    tr = _row(f"{mid[0]}x{mid[1]}", "reference", runs["reference"], "identical metrics: yes")
    ratios = [r[0] / f[0] for f, r in zip(runs["fast"], runs["reference"], strict=True)]
    print(f"  {'':<18}{'fast / reference':<22}{tf / tr:>9.2f}  (per pair of runs: "
          f"{', '.join(f'{1 / x:.2f}' for x in ratios)})")
    runs = measure(big, l, dim, args.budget, args.big_repeat or args.repeat, args.big_reference)
    rows = query_rows_per_block(big[0], big[1], l, args.budget)
    tf = _row(f"{big[0]}x{big[1]}", "fast", runs["fast"], f"budget: {rows} query rows in work at once")
    if args.big_reference:
        tr = _row(f"{big[0]}x{big[1]}", "reference", runs["reference"], "identical metrics: yes")
        print(f"  {'':<18}{'fast / reference':<22}{tf / tr:>9.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("eval", "jobs", "all"), default="eval")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", type=int, default=6)
    ap.add_argument("--budget", type=float, default=4.0, help="eval.max_memory_gb of the streamed runs")
    ap.add_argument("--big-repeat", type=int, default=None,
                    help="runs at LaST size (default --repeat; one run there takes minutes on 2 cores)")
    ap.add_argument("--mid-budget", type=float, default=1.0, help="the budget of the mid-size runs")
    ap.add_argument("--big-reference", action="store_true", help="time the reference at LaST size too")
    args, rest = ap.parse_known_args()
    if args.part in ("eval", "all"):
        eval_part(args)
    if args.part in ("jobs", "all"):
        import scale_jobs

        scale_jobs.main([*rest, *(["--small"] if args.small else []), "--repeat", str(args.repeat)])


if __name__ == "__main__":
    main()
