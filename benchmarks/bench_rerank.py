"""Speed and peak memory of ``dlcr.evaluation.rerank`` (k1=20, k2=6, lambda=0.3) against the plain
whole-matrix reference, and alone at PRCC and LTCC test sizes.

Problem: L2-normalised features (person centre + noise, a hard, unsaturated problem) of n_query
queries and n_gallery gallery images.

1. Reference size (default 500 x 2,000): ``rerank_reference`` (numpy, dense (q+g)^2, a Python loop
   per item) once, and the fast version (float32 default; float64 too, checked against the
   reference: largest difference and identical rankings), each timed as the median of ``--repeat``
   runs after a warm-up run; the ratio is measured in this same run.
2. PRCC (3,873 clothes-changed queries x 3,384 gallery) and LTCC (493 x 7,050): the fast version
   alone, prepared and then streamed in blocks of 256 queries as an evaluator would (the blocks are
   not kept). Peak memory is measured in a fresh child process (warmed up on a tiny problem only,
   so no freed large buffers are reused): the largest resident-set growth over the features it holds, sampled every
   2 ms (torch's and numpy's buffers alike), next to what one dense float32 (q+g)^2 matrix needs.

On a shared two-core machine torch's second thread competes with the numpy work (and with other
processes); ``--threads 1`` is often faster there.

    python benchmarks/bench_rerank.py              # a few minutes on two cores
    python benchmarks/bench_rerank.py --small      # 200 x 800 and smaller "PRCC"/"LTCC", 256-d
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import torch

from _common import line
from dlcr.evaluation.rerank import Reranker
from dlcr.testing.rerank_reference import rerank_reference

PAGE = 4096


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakRss:
    """Largest resident-set size seen while the block runs, sampled by a thread."""

    def __enter__(self) -> PeakRss:
        self.base = self.peak = _rss()
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.002):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())

    @property
    def grown_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def median_time(fn, repeat: int) -> tuple[float, object]:
    """Median wall time of ``repeat`` calls after one warm-up call, and the last result."""
    out = fn()
    times = []
    for _ in range(max(1, repeat)):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def problem(nq: int, ng: int, dim: int, ids: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(ids, dim, generator=g)
    qp, gp = torch.randint(0, ids, (nq,), generator=g), torch.randint(0, ids, (ng,), generator=g)
    noise = (dim**0.5 / 3 - 1) ** 0.5 if dim > 36 else 1.0  # same-person cosine ~ 3 / sqrt(dim)
    q = torch.nn.functional.normalize(centres[qp] + noise * torch.randn(nq, dim, generator=g), dim=1)
    x = torch.nn.functional.normalize(centres[gp] + noise * torch.randn(ng, dim, generator=g), dim=1)
    return q, x, qp.numpy(), gp.numpy()


def top1(d: np.ndarray, qp: np.ndarray, gp: np.ndarray) -> float:
    return float((gp[d.argmin(1)] == qp).mean())


def against_reference(nq: int, ng: int, dim: int, repeat: int) -> None:
    q, g, qp, gp = problem(nq, ng, dim, max(10, ng // 10))
    print(f"reference size: {nq} queries x {ng} gallery, {dim}-d")
    t0 = time.perf_counter()
    ref = rerank_reference(q, g)  # timed once: a Python loop per item, nothing to warm up
    t_ref = time.perf_counter() - t0
    t32, d32 = median_time(lambda: Reranker(q, g).distances().numpy(), repeat)
    t64, d64 = median_time(lambda: Reranker(q, g, dtype=torch.float64).distances().numpy(), repeat)
    same = np.array_equal(np.argsort(d64, 1, kind="stable"), np.argsort(ref, 1, kind="stable"))
    line("reference (dense, loop per item)", t_ref)
    line("fast, float32", t32, f"x{t_ref / t32:.0f} vs reference; max |diff| {np.abs(d32 - ref).max():.1e}, "
         f"same top-1 {np.mean(d32.argmin(1) == ref.argmin(1)):.4f}")
    line("fast, float64", t64, f"x{t_ref / t64:.0f} vs reference; max |diff| {np.abs(d64 - ref).max():.1e}, "
         f"identical rankings {same}")
    plain = (2 - 2 * q @ g.T).numpy()
    print(f"  top-1: plain {top1(plain, qp, gp):.4f} -> re-ranked {top1(d32, qp, gp):.4f}")
    if not same:
        raise SystemExit("MISMATCH between the fast re-ranking and the reference")


def _stream(q: torch.Tensor, g: torch.Tensor) -> tuple[float, float, np.ndarray]:
    """Prepare, then score every block of 256 queries; (prepare s, stream s, each query's top-1)."""
    t0 = time.perf_counter()
    rr = Reranker(q, g)
    t1 = time.perf_counter()
    nq, ng = rr.n_query, rr.n_gallery
    best = np.empty(nq, dtype=np.int64)
    buf = torch.empty(min(256, nq), ng)
    for r0 in range(0, nq, 256):
        r1 = min(nq, r0 + 256)
        best[r0:r1] = rr.distances(r0, r1, out=buf[:r1 - r0]).argmin(1).numpy()
    return t1 - t0, time.perf_counter() - t1, best


def alone(name: str, nq: int, ng: int, dim: int, repeat: int, threads: int) -> None:
    q, g, qp, gp = problem(nq, ng, dim, max(10, ng // 10))
    _stream(q, g)  # warm-up
    runs = [_stream(q, g) for _ in range(max(1, repeat))]
    prep, stream = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
    child = subprocess.run([sys.executable, __file__, "--memory-child", f"{nq},{ng},{dim},{threads}"],
                           capture_output=True, text=True, check=True)
    grown = json.loads(child.stdout.strip().splitlines()[-1])["grown_mib"]
    dense = (nq + ng) ** 2 * 4 / 2**20
    print(f"{name}: {nq} queries x {ng} gallery, {dim}-d; re-ranked top-1 {np.mean(gp[runs[-1][2]] == qp):.4f}")
    line("fast re-ranking, prepare + stream all queries", prep + stream,
         f"(prepare {prep:.2f} s, stream {stream:.2f} s); peak +{grown:.0f} MiB "
         f"(one dense float32 (q+g)^2 matrix: {dense:.0f} MiB)")


def memory_child(spec: str) -> None:
    nq, ng, dim, threads = (int(v) for v in spec.split(","))
    torch.set_num_threads(threads)
    q, g, _, _ = problem(nq, ng, dim, max(10, ng // 10))
    _stream(q[:50], g[:200])  # pages in the code and the libraries' own buffers, tiny blocks only
    with PeakRss() as mem:
        _stream(q, g)
    print(json.dumps({"grown_mib": mem.grown_mib}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dim", type=int, default=None)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.memory_child:
        return memory_child(args.memory_child)
    torch.set_num_threads(args.threads)
    dim = args.dim or (256 if args.small else 2048)
    print(f"torch threads: {args.threads}; median of {args.repeat} runs after a warm-up")
    if args.small:
        against_reference(200, 800, dim, args.repeat)
        alone("PRCC-like (small)", 1000, 900, dim, args.repeat, args.threads)
        alone("LTCC-like (small)", 120, 1800, dim, args.repeat, args.threads)
    else:
        against_reference(500, 2000, dim, args.repeat)
        alone("PRCC", 3873, 3384, dim, args.repeat, args.threads)
        alone("LTCC", 493, 7050, dim, args.repeat, args.threads)


if __name__ == "__main__":
    main()
