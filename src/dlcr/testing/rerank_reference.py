"""Plain k-reciprocal re-ranking (Zhong et al., CVPR 2017) on the whole (q + g) x (q + g) matrix.

Test helper only: a direct restatement, one pool item at a time with dense numpy arrays, of the
public ``re_ranking`` of michuanhaohao/reid-strong-baseline (``utils/re_ranking.py``; the Matlab
original is zhunzhong07/person-re-ranking). :mod:`dlcr.evaluation.rerank` is checked against it.
It costs O((q + g)^2) memory and a Python loop per item, so keep the sizes small.

Where this restatement pins down what the public code leaves open (the fast version follows the
same rules):

* squared euclidean distances ``|x|^2 + |y|^2 - 2 x.y`` clamped at 0, the diagonal exactly 0;
* ``initial_rank`` is a *stable* argsort, so equal distances rank by lower pool index (the public
  code's default quicksort orders them arbitrarily);
* V, its query expansion and the Jaccard sums are float64 (the public code stores float16).

``qg_dist``: an optional dense (q, g) matrix that replaces the initial distance of every query-gallery
pair (and, the matrix being symmetric, of every gallery-query pair).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dlcr.evaluation.refinement import Refinement, refine_reference

__all__ = ["refine_then_rerank_reference", "refined_qg_distance", "rerank_reference",
           "rerank_then_refine_reference"]


def _np(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float64)


def _k_reciprocal(initial_rank: np.ndarray, i: int, k: int) -> np.ndarray:
    forward = initial_rank[i, :k + 1]
    backward = initial_rank[forward, :k + 1]
    return forward[np.where(backward == i)[0]]


def rerank_reference(query: Any, gallery: Any, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                     qg_dist: np.ndarray | None = None) -> np.ndarray:
    """Re-ranked (q, g) float64 distances, computed the way the public code does (see the module doc)."""
    x = np.concatenate([_np(query), _np(gallery)])
    nq, n = len(_np(query)), len(x)
    sq = (x * x).sum(1)
    dist = np.maximum(sq[:, None] + sq[None, :] - 2.0 * (x @ x.T), 0.0)
    np.fill_diagonal(dist, 0.0)
    if qg_dist is not None:
        dist[:nq, nq:] = qg_dist
        dist[nq:, :nq] = np.asarray(qg_dist).T
    original = np.transpose(dist / np.max(dist, axis=0))
    v = np.zeros_like(original)
    initial_rank = np.argsort(original, axis=1, kind="stable")
    half = int(np.around(k1 / 2))
    for i in range(n):
        recip = _k_reciprocal(initial_rank, i, k1)
        expansion = recip
        for cand in recip:
            cand_recip = _k_reciprocal(initial_rank, cand, half)
            if len(np.intersect1d(cand_recip, recip)) > 2 / 3 * len(cand_recip):
                expansion = np.append(expansion, cand_recip)
        expansion = np.unique(expansion)
        weight = np.exp(-original[i, expansion])
        v[i, expansion] = weight / np.sum(weight)
    original = original[:nq]
    if k2 != 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = np.mean(v[initial_rank[i, :k2]], axis=0)
        v = v_qe
    inv_index = [np.where(v[:, j] != 0)[0] for j in range(n)]
    jaccard = np.zeros_like(original)
    for i in range(nq):
        temp_min = np.zeros(n)
        nonzero = np.where(v[i] != 0)[0]
        for col in nonzero:
            rows = inv_index[col]
            temp_min[rows] = temp_min[rows] + np.minimum(v[i, col], v[rows, col])
        jaccard[i] = 1 - temp_min / (2 - temp_min)
    final = jaccard * (1 - lambda_value) + original * lambda_value
    return final[:, nq:]


def rerank_then_refine_reference(query: Any, variants: Any, gallery: Any, g_pids: Any, m: int = 5,
                                 variant: str = "paper", exclude: Any = None, **kw: Any) -> Refinement:
    """Re-rank the queries and, separately, each set of variants against the gallery; refine on the
    re-ranked similarities ``1 - distance`` (``kw``: k1, k2, lambda_value)."""
    sets = [_np(query)] + [_np(v) for v in _np(variants)]
    sims = np.stack([1.0 - rerank_reference(s, gallery, **kw) for s in sets])
    return refine_reference(sims, g_pids, m, variant, exclude)


def refined_qg_distance(refinement: Refinement, variant: str) -> np.ndarray:
    """The dense (q, g) initial distance that a refinement stands for: ``2 - 2 s`` with ``s`` its
    refined similarity on the cosine scale (the official variant's ``.sims`` are ``1 + cos``)."""
    s = refinement.sims.astype(np.float64)
    if variant == "official":
        s = s - 1.0
    return 2.0 - 2.0 * s


def refine_then_rerank_reference(query: Any, variants: Any, gallery: Any, g_pids: Any, m: int = 5,
                                 variant: str = "paper", exclude: Any = None,
                                 **kw: Any) -> tuple[np.ndarray, Refinement]:
    """Refine the cosine similarities of the (L2-normalised) queries and variants, then re-rank with
    every query-gallery initial distance replaced by :func:`refined_qg_distance`.

    Returns ``(re-ranked distances, refinement)``."""
    q, g = _np(query), _np(gallery)
    sims = np.stack([q @ g.T] + [_np(v) @ g.T for v in _np(variants)])
    r = refine_reference(sims, g_pids, m, variant, exclude)
    return rerank_reference(q, g, qg_dist=refined_qg_distance(r, variant), **kw), r
