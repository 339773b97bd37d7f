"""Speed of ``dlcr.evaluation.refine`` against the per-query loop and against the top-m selection alone.

Problem: n_query original queries, each with l = 6 clothes-changed variants, a gallery of n_gallery
images, 2,048-d L2-normalised features (person centre + noise; a variant = its query + noise).
The (1 + l, n_query, n_gallery) float32 similarity tensor is built with matmuls: 7 x 5,000 x 20,000
x 4 bytes = 2.8 GB at full size (plus 0.4 GB for the refined output and ~0.5 GB of features).

The loop reference is timed on the first ``--ref-queries`` queries and scaled linearly to all
queries (it is one independent iteration per query); its output is checked bit for bit against
``refine`` on the same subset.

    python benchmarks/bench_refine.py            # 5,000 x 7 x 20,000 (a few minutes on one core)
    python benchmarks/bench_refine.py --small    # 500 x 7 x 4,000, 512-d
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from _common import best_of, line
from dlcr.evaluation.refinement import refine, refine_reference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--m", type=int, default=5)
    ap.add_argument("--variants", type=int, default=6)
    ap.add_argument("--ref-queries", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    nq, ng, dim, ids = (500, 4000, 512, 200) if args.small else (5000, 20000, 2048, 1000)
    n_mat = 1 + args.variants
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(ids, dim, generator=g)
    g_pids = torch.randint(0, ids, (ng,), generator=g)
    q_pids = torch.randint(0, ids, (nq,), generator=g)
    noise = (dim**0.5 / 3 - 1) ** 0.5  # same-person cosine ~ 3 / sqrt(dim): a hard, unsaturated problem
    gal = torch.nn.functional.normalize(centres[g_pids] + noise * torch.randn(ng, dim, generator=g), dim=1)
    qry = centres[q_pids] + noise * torch.randn(nq, dim, generator=g)
    sims = torch.empty(n_mat, nq, ng)
    for k in range(n_mat):
        v = qry if k == 0 else qry + 0.5 * noise * torch.randn(nq, dim, generator=g)
        torch.matmul(torch.nn.functional.normalize(v, dim=1), gal.T, out=sims[k])
    print(f"problem: {nq} queries x {n_mat} matrices x {ng} gallery, {dim}-d, m={args.m}, "
          f"sims {sims.numel() * 4 / 2**30:.2f} GiB float32, best of {args.repeat}")
    gp = g_pids.numpy()
    for variant in ("paper", "official"):
        nr = min(args.ref_queries, nq)
        sub = sims[:, :nr].contiguous()
        t_ref, ref = best_of(lambda s=sub, v=variant: refine_reference(s, gp, args.m, v), 1)
        t_ref_all = t_ref * nq / nr
        same_sub = refine(sub, gp, args.m, variant)
        same = all(np.array_equal(getattr(ref, f), getattr(same_sub, f))
                   for f in ("pred_pids", "sims", "topm", "scores"))
        t_top, _ = best_of(lambda: [torch.topk(sims[k], args.m, dim=1) for k in range(n_mat)], args.repeat)
        t_vec, res = best_of(lambda v=variant: refine(sims, gp, args.m, v), args.repeat)
        acc0 = float((gp[sims[0].argmax(1).numpy()] == q_pids.numpy()).mean())
        acc = float((res.pred_pids == q_pids.numpy()).mean())
        print(f"{variant}: top-1 {acc0:.4f} -> refined prediction {acc:.4f}; "
              f"identical to reference on {nr} queries: {same}")
        line(f"reference loop ({nr} queries, scaled x{nq / nr:g})", t_ref_all)
        line("top-m selection alone (torch.topk x matrices)", t_top)
        line("refine (vectorised)", t_vec,
             f"x{t_ref_all / t_vec:.1f} vs loop, x{t_vec / t_top:.2f} of top-m cost")
        if not same:
            raise SystemExit("MISMATCH between refine and refine_reference")


if __name__ == "__main__":
    main()
