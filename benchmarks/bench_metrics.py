"""Speed of ``dlcr.evaluation.evaluate`` against the plain per-query loop and a full argsort.

A synthetic but realistic problem: ``--ids`` persons with 2-4 outfits each, ``--cams`` cameras,
gallery/query images drawn from them; features = person centre + outfit offset + noise (so good
matches sit near the top of the ranking, as with a trained model); float32 cosine distances.
Prints both ratios and checks that the numbers are identical to the reference.

    python benchmarks/bench_metrics.py            # 3,000 x 15,000 (about 1 min on one core)
    python benchmarks/bench_metrics.py --small    # 600 x 3,000
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import best_of, line
from dlcr.evaluation.metrics import evaluate, evaluate_reference


def make_problem(nq: int, ng: int, ids: int, cams: int, dim: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n_outfits = rng.integers(2, 5, ids)
    centres = rng.normal(size=(ids, dim))
    outfit = rng.normal(scale=0.8, size=(ids, 4, dim))

    def draw(n: int) -> tuple[np.ndarray, ...]:
        pid = rng.integers(0, ids, n)
        clothes = rng.integers(0, n_outfits[pid])
        cam = rng.integers(0, cams, n)
        x = centres[pid] + outfit[pid, clothes] + rng.normal(scale=1.2, size=(n, dim))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return x.astype(np.float32), pid, cam, pid * 4 + clothes

    qf, qp, qc, ql = draw(nq)
    gf, gp, gc, gl = draw(ng)
    dist = 1.0 - torch.from_numpy(qf) @ torch.from_numpy(gf).T
    return dict(distmat=dist.numpy(), q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, q_clothes=ql,
                g_clothes=gl)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="600 x 3,000 instead of 3,000 x 15,000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    nq, ng, ids = (600, 3000, 150) if args.small else (3000, 15000, 750)
    p = make_problem(nq, ng, ids, cams=6, dim=64, seed=args.seed)
    run(p, f"{nq} queries x {ng} gallery, {ids} ids, clustered features", ("standard", "CC", "SC"), args)
    # worst case for the hardest good match: uniform float64 distances, goods anywhere in the ranking
    p["distmat"] = np.random.default_rng(args.seed).random((nq, ng))
    run(p, "same labels, uniform random float64 distances", ("standard",), args)


def run(p: dict[str, np.ndarray], title: str, modes: tuple[str, ...], args: argparse.Namespace) -> None:
    d = p["distmat"]
    print(f"problem: {title}, {d.dtype}, best of {args.repeat}")
    t_sort, _ = best_of(lambda: np.argsort(d, axis=1), args.repeat)
    t_stable, _ = best_of(lambda: np.argsort(d, axis=1, kind="stable"), 1)
    line("np.argsort(distmat, axis=1)", t_sort)
    line("np.argsort(distmat, axis=1, kind='stable')", t_stable)
    for mode in modes:
        t_ref, ref = best_of(lambda m=mode: evaluate_reference(**p, mode=m), 1)
        t_vec, vec = best_of(lambda m=mode: evaluate(**p, mode=m), args.repeat)
        same = (np.array_equal(ref.cmc, vec.cmc) and ref.mAP == vec.mAP and ref.mINP == vec.mINP
                and ref.num_valid == vec.num_valid)
        print(f"{mode}: top1={vec.top(1):.4f} mAP={vec.mAP:.4f} mINP={vec.mINP:.4f} "
              f"valid={vec.num_valid} identical={same}")
        line("reference loop", t_ref)
        line("evaluate (vectorised)", t_vec,
             f"x{t_ref / t_vec:.1f} vs loop, x{t_sort / t_vec:.2f} vs argsort")
        if not same:
            raise SystemExit("MISMATCH between evaluate and evaluate_reference")


if __name__ == "__main__":
    main()
