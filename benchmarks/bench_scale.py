"""Scale: evaluation with prediction refinement at LaST size in bounded memory (and, with
``--part jobs``, the bookkeeping of a CCVID-size generation: see ``scale_jobs.py``).

Evaluation problem: n_query queries, each with l = 6 clothes-changed variants, against n_gallery
images, 256-d L2-normalised features (a person centre + noise; a variant = its query + noise),
LaST-like labels (many identities, a few cameras and outfits), under the standard and the
clothes-changing rule. Each measurement is one child process (so its peak RSS is its own): it
builds the features, warms up on a small problem, then times ``evaluate_protocols`` with
refinement. Figures: median over ``--repeat`` children.

The plain reference is the same computation on whole matrices (``max_memory_gb=None``: the whole
distance matrix, (1 + l) similarity stack and junk masks at once, as before streaming). It runs at
the mid size, where it fits; at LaST size it would need the memory printed instead.

    python benchmarks/bench_scale.py                      # mid 3,000 x 30,000 and LaST 10,000 x 125,000
    python benchmarks/bench_scale.py --small              # a one-minute smoke run
    python benchmarks/bench_scale.py --part jobs [...]    # the generation half (scale_jobs.py)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
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


def _child(nq: int, ng: int, l: int, dim: int, ids: int, budget: float | None, out: mp.Queue) -> None:  # noqa: E741
    import torch

    from dlcr.evaluation import evaluate_protocols
    from dlcr.types import EvalProtocol

    torch.set_num_threads(max(1, torch.get_num_threads()))
    protocols = [EvalProtocol("standard", "query", "gallery", "standard"),
                 EvalProtocol("cc", "query", "gallery", "CC")]
    warm, wv = _problem(300, 2000, l, dim, 100, seed=1)
    evaluate_protocols(warm, protocols, refine_variants=wv, m=5, max_memory_gb=budget)  # warm-up
    split, variants = _problem(nq, ng, l, dim, ids)
    t0 = time.perf_counter()
    res = evaluate_protocols(split, protocols, refine_variants=variants, m=5, max_memory_gb=budget)
    seconds = time.perf_counter() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    out.put((seconds, peak_gb, {k: (v["top1"], v["mAP"]) for k, v in res.items()}))


def measure(nq: int, ng: int, l: int, dim: int, ids: int, budget: float | None, repeat: int  # noqa: E741
            ) -> tuple[float, float, dict]:
    ctx = mp.get_context("spawn")
    runs = []
    for _ in range(max(1, repeat)):
        q: mp.Queue = ctx.Queue()
        p = ctx.Process(target=_child, args=(nq, ng, l, dim, ids, budget, q))
        p.start()
        got = q.get()
        p.join()
        if p.exitcode:
            raise SystemExit(f"child exited with {p.exitcode}")
        runs.append(got)
    return (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[-1][2])


def eval_part(args: argparse.Namespace) -> None:
    from dlcr.evaluation.evaluator import bytes_per_query_row, query_rows_per_block

    l, dim = args.variants, 256  # noqa: E741
    if args.small:  # a small budget, so that the small problems are streamed too
        mid, big = (800, 6000, 400), (2000, 20000, 1000)
        args.budget = min(args.budget, 0.05)
        args.mid_budget = min(args.mid_budget, 0.02)
    else:
        mid, big = (3000, 30000, 1500), (10000, 125000, 5000)  # LaST test: ~10k queries x ~125k gallery
    print(f"evaluation + refinement (l={l}, m=5, {dim}-d, standard and CC protocols), median of {args.repeat}; "
          f"budget eval.max_memory_gb={args.budget:g} (mid size: {min(args.budget, args.mid_budget):g})")
    print(f"  {'size':<18}{'mode':<28}{'seconds':>9}{'peak GB':>9}  ratio (streamed / whole)")
    nq, ng, ids = mid
    mid_budget = min(args.budget, args.mid_budget)  # small enough that the mid size is streamed too
    ts, ms, rs = measure(nq, ng, l, dim, ids, mid_budget, args.repeat)
    tw, mw, rw = measure(nq, ng, l, dim, ids, None, args.repeat)
    if rs != rw:
        raise SystemExit(f"streamed and whole results differ: {rs} vs {rw}")
    rows = query_rows_per_block(nq, ng, l, mid_budget)
    print(f"  {nq}x{ng:<13}{f'streamed ({rows} queries/block)':<28}{ts:>9.1f}{ms:>9.2f}  "
          f"time x{ts / tw:.2f}, peak x{ms / mw:.2f}")
    print(f"  {nq}x{ng:<13}{'whole matrices (reference)':<28}{tw:>9.1f}{mw:>9.2f}  identical metrics: yes")
    nq, ng, ids = big
    ts, ms, _ = measure(nq, ng, l, dim, ids, args.budget, args.big_repeat or args.repeat)
    rows = query_rows_per_block(nq, ng, l, args.budget)
    need = bytes_per_query_row(ng, l) * nq / 2**30
    print(f"  {nq}x{ng:<12}{f'streamed ({rows} queries/block)':<28}{ts:>9.1f}{ms:>9.2f}  "
          f"whole matrices would need ~{need:.0f} GB: not run (median of {args.big_repeat or args.repeat})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("eval", "jobs", "all"), default="eval")
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", type=int, default=6)
    ap.add_argument("--budget", type=float, default=4.0, help="eval.max_memory_gb of the streamed runs")
    ap.add_argument("--big-repeat", type=int, default=None,
                    help="runs at LaST size (default --repeat; one run there takes minutes on 2 cores)")
    ap.add_argument("--mid-budget", type=float, default=1.0, help="the budget of the mid-size streamed run")
    args, rest = ap.parse_known_args()
    if args.part in ("eval", "all"):
        eval_part(args)
    if args.part in ("jobs", "all"):
        import scale_jobs

        scale_jobs.main([*rest, *(["--small"] if args.small else []), "--repeat", str(args.repeat)])


if __name__ == "__main__":
    main()
