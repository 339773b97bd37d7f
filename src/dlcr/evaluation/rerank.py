"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-bounded.

Semantics: the public ``re_ranking`` of michuanhaohao/reid-strong-baseline (``utils/re_ranking.py``;
Matlab original: zhunzhong07/person-re-ranking), restated in :mod:`dlcr.testing.rerank_reference`,
which the tests hold this module to. On the pool of all n = q + g features, queries first:

1. ``d(i, j) = max(|x_i|^2 + |x_j|^2 - 2 x_i.x_j, 0)`` (squared euclidean; ``2 - 2 cos`` for
   L2-normalised features), ``d(i, i) = 0``; each row is divided by its maximum: ``dn(i, j)``.
2. ``N(i, k)``: the k + 1 items nearest to i by ``dn(i, .)``, equal values by lower pool index (the
   public code's quicksort leaves that order open). ``R(i, k) = {j in N(i, k): i in N(j, k)}``.
3. Expansion: ``E(i) = R(i, k1)`` plus every ``R(c, round(k1 / 2))`` (numpy's round-half-even) of a
   ``c`` in ``R(i, k1)`` that shares more than 2/3 of its items with ``R(i, k1)``.
4. ``V(i, j) = exp(-dn(i, j)) / sum_{j' in E(i)} exp(-dn(i, j'))`` for j in E(i), 0 elsewhere;
   query expansion (k2 > 1): ``V(i) <- mean of V(j)`` over the k2 nearest j of i (i itself first).
5. Jaccard distance ``J(i, j) = 1 - s / (2 - s)``, ``s = sum_l min(V(i, l), V(j, l))``; the result is
   ``(1 - lambda) J(i, j) + lambda dn(i, j)`` for the queries i against the gallery j.

The public code holds V, its expansion and the Jaccard sums in float16; here they are float64.

Memory. Never a (q + g)^2 array, and the features are not copied. The neighbour lists come from
square tiles of the symmetric distance matrix on and above the diagonal (matmul, ``torch.topk``
folded into running lists of each tile's rows and columns); V is sparse (CSR: only E(i) is
non-zero, a few tens of items per row); the Jaccard sums of a block of queries come from V's
gallery columns (an inverted index). Peak: O(n (k1 + 1) + nnz(V)) for the state (nnz(V) ~ n k2 |E|)
plus one working block of O(``chunk_elements``) (default 4M: a 2048 x 2048 float32 tile; the
other passes size their int64 / float64 pieces to about as many bytes), plus the caller's
(rows, g) output block. The steps themselves: :mod:`dlcr.evaluation.rerank_sets`.

Time. The tiles: O(n^2 D / 2) matmul and O(n^2) top-k; the sets: O(n k1^3) index comparisons;
V: O(n |E|) (dot products only for the few E(i) items beyond i's lists); the Jaccard sums: one
term per (query i, l, gallery j) with V(i, l), V(j, l) != 0, about q (k2 |E|)^2; the final mix:
O(q g D). PRCC (3.9k x 3.4k, 2048-d) and LTCC (493 x 7k) take seconds on two cores
(``benchmarks/bench_rerank.py``).

Protocols. The neighbourhoods use every query and gallery feature, without labels. The junk rules
of a protocol (same camera; same or other clothes) are applied afterwards by the evaluator, to the
re-ranked distances, exactly as it applies them to plain distances.

Streaming. :class:`Reranker` is prepared once per query/gallery pair; ``distances(r0, r1)`` then
gives the re-ranked (r1 - r0, g) block of queries r0:r1 (bit-identical to the whole matrix's rows
for blocks on the evaluator's row grid), so an evaluator can score it block by block like its
similarities. :func:`rerank` is the whole matrix. With refinement: :mod:`dlcr.evaluation.rerank_refine`.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch

from dlcr.errors import ConfigError, InputError
from dlcr.evaluation.features import SIM_BLOCK
from dlcr.evaluation.rerank_sets import (
    Overrides,
    Pairs,
    Pool,
    distance_block,
    expansion,
    neighbours,
    query_expansion,
    weights,
)

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "DEFAULT_K1", "DEFAULT_K2", "DEFAULT_LAMBDA", "ROW_GRID", "Pairs",
           "Reranker", "check_rerank_params", "rerank"]

DEFAULT_K1, DEFAULT_K2, DEFAULT_LAMBDA = 20, 6, 0.3
#: Elements of one working block (a distance row block, or a Jaccard pass's pairs).
DEFAULT_CHUNK_ELEMENTS = 1 << 22
#: Row grid of the query-gallery distances in :meth:`Reranker.distances`: the evaluator's similarity
#: row block, whose multiples its query blocks are.
ROW_GRID = SIM_BLOCK


def check_rerank_params(k1: Any, k2: Any, lambda_value: Any) -> tuple[int, int, float]:
    """``(k1, k2, lambda)`` validated: integers >= 1 and a number in [0, 1] (else ConfigError)."""
    for name, v in (("k1", k1), ("k2", k2)):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
            raise ConfigError(f"re-ranking {name} must be an integer >= 1, got {v!r}")
    if (isinstance(lambda_value, bool) or not isinstance(lambda_value, numbers.Real)
            or not 0.0 <= float(lambda_value) <= 1.0):
        raise ConfigError(f"re-ranking lambda must be a number in [0, 1], got {lambda_value!r}")
    return int(k1), int(k2), float(lambda_value)


def _features(x: Any, name: str, dtype: torch.dtype) -> torch.Tensor:
    t = (x.detach() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).cpu().to(dtype)
    if t.ndim != 2 or t.shape[0] == 0 or t.shape[1] == 0:
        raise InputError(f"{name} features must have shape (n, D) with n, D >= 1, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise InputError(f"{name} features contain NaN or inf")
    return t.contiguous()


class Reranker:
    """k-reciprocal re-ranking of ``query`` (q, D) against ``gallery`` (g, D), prepared once.

    ``k1``, ``k2``, ``lambda_value``: the paper's parameters (ConfigError when invalid).
    ``qg_dist``: optional ``(rows, cols, distances)`` replacing the initial distance of those
    (query, gallery) pairs (and of their mirrored gallery-query pairs), e.g. refined ones (see
    :mod:`dlcr.evaluation.rerank_refine`); each pair at most once. ``dtype``: of the features'
    distances (float32 default; float64 for tests against the reference). ``chunk_elements``:
    the size of the working blocks (see the module docstring, "Memory"). The features are held,
    not copied, when already CPU float tensors of ``dtype``: leave them unchanged meanwhile.
    """

    def __init__(self, query: Any, gallery: Any, *, k1: int = DEFAULT_K1, k2: int = DEFAULT_K2,
                 lambda_value: float = DEFAULT_LAMBDA, qg_dist: Pairs | None = None,
                 dtype: torch.dtype = torch.float32, chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> None:
        self.k1, self.k2, self.lambda_value = check_rerank_params(k1, k2, lambda_value)
        if dtype not in (torch.float32, torch.float64):
            raise InputError(f"re-ranking dtype must be torch.float32 or torch.float64, got {dtype}")
        if int(chunk_elements) < 1:
            raise InputError(f"chunk_elements must be >= 1, got {chunk_elements}")
        q, g = _features(query, "query", dtype), _features(gallery, "gallery", dtype)
        if q.shape[1] != g.shape[1]:
            raise InputError(f"query and gallery features differ in size: {q.shape[1]} vs {g.shape[1]}")
        self.n_query, self.n_gallery, self.dtype = len(q), len(g), dtype
        self.chunk_elements = chunk = int(chunk_elements)
        self._pool = pool = Pool(q, g)
        self._ov = ov = Overrides(qg_dist, self.n_query, self.n_gallery)
        n = pool.n
        k, kh, kq = min(n, self.k1 + 1), min(n, int(np.around(self.k1 / 2)) + 1), min(n, self.k2)
        nbr, known, self._rowmax = neighbours(pool, ov, max(k, kq), chunk)
        indptr, cols = expansion(nbr, k, kh, chunk)
        vals = weights(pool, ov, self._rowmax.double().numpy(), (nbr, known), indptr, cols, chunk)
        if self.k2 != 1:
            indptr, cols, vals = query_expansion(indptr, cols, vals, np.ascontiguousarray(nbr[:, :kq]), chunk)
        self._v = (indptr, cols, vals)
        self._inverted(indptr, cols, vals)

    def _inverted(self, indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """V's gallery rows by column (rows increasing), and each query's Jaccard pair count."""
        nq, n = self.n_query, self._pool.n
        g0 = indptr[nq]
        order = np.argsort(cols[g0:], kind="stable")
        rows = np.repeat(np.arange(self.n_gallery), np.diff(indptr[nq:]))
        self._g_rows, self._g_vals = rows[order], vals[g0:][order]
        counts = np.bincount(cols[g0:], minlength=n)
        self._g_ptr = np.concatenate([[0], np.cumsum(counts)])
        q_rows = np.repeat(np.arange(nq), np.diff(indptr[:nq + 1]))
        self._q_cost = np.bincount(q_rows, weights=counts[cols[:g0]], minlength=nq).astype(np.int64)

    def _blocks(self, r0: int, r1: int) -> list[tuple[int, int]]:
        """Query blocks of r0:r1 with at most ``chunk_elements / 8`` Jaccard pairs (each costs six
        8-byte entries; one query alone may have more) and ``chunk_elements / 4`` float64 sums."""
        cum = np.concatenate([[0], np.cumsum(self._q_cost[r0:r1])])
        most, pairs = max(1, self.chunk_elements // (4 * self.n_gallery)), max(1, self.chunk_elements // 8)
        out, a = [], r0
        while a < r1:
            b = r0 + int(np.searchsorted(cum, cum[a - r0] + pairs, side="right")) - 1
            b = min(r1, a + most, max(b, a + 1))
            out.append((a, b))
            a = b
        return out

    def _jaccard(self, a: int, b: int) -> np.ndarray:
        """(b - a, g) Jaccard distances of queries a:b to the gallery (float64)."""
        indptr, cols, vals = self._v
        e0, e1 = indptr[a], indptr[b]
        q_local = np.repeat(np.arange(b - a), np.diff(indptr[a:b + 1]))
        lc, vq = cols[e0:e1], vals[e0:e1]
        cnt = self._g_ptr[lc + 1] - self._g_ptr[lc]
        pos = np.repeat(self._g_ptr[lc] - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        ng = self.n_gallery
        keys = np.repeat(q_local, cnt) * ng + self._g_rows[pos]
        s = np.bincount(keys, weights=np.minimum(np.repeat(vq, cnt), self._g_vals[pos]), minlength=(b - a) * ng)
        s = s.astype(np.float64, copy=False).reshape(b - a, ng)  # int64 when there is no pair at all
        np.divide(s, 2 - s, out=s)
        return np.subtract(1, s, out=s)

    def distances(self, r0: int = 0, r1: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Re-ranked distances (r1 - r0, g) of queries r0:r1 to the gallery (smaller = closer), in
        ``dtype``, or written into ``out`` (that shape and dtype).

        The initial distances are made in row pieces on a fixed grid of :data:`ROW_GRID` rows, so a
        block whose ends are multiples of it is bit-identical to those rows of the whole matrix
        (other blocks differ by the matmul's rounding at most).
        """
        nq, ng, r0 = self.n_query, self.n_gallery, int(r0)
        r1 = nq if r1 is None else int(r1)
        if not 0 <= r0 < r1 <= nq:
            raise InputError(f"query rows {r0}:{r1} are not a non-empty range within 0:{nq}")
        if out is None:
            out = torch.empty(r1 - r0, ng, dtype=self.dtype)
        elif tuple(out.shape) != (r1 - r0, ng) or out.dtype != self.dtype:
            raise InputError(f"out must be a {self.dtype} tensor of shape {(r1 - r0, ng)}, "
                             f"got {out.dtype} {tuple(out.shape)}")
        grid = max(1, min(ROW_GRID, self.chunk_elements // ng))
        for a in range(r0 - r0 % grid, r1, grid):  # dn first, written straight into out
            lo, hi = max(a, r0), min(a + grid, r1)
            d = distance_block(self._pool, self._ov, lo, hi, nq, nq + ng)
            out[lo - r0:hi - r0] = d.div_(self._rowmax[lo:hi, None])
        lam = self.lambda_value
        for a, b in self._blocks(r0, r1):
            blk = out[a - r0:b - r0]
            jac, dn = self._jaccard(a, b), blk.double().numpy()  # in place, in the reference's order:
            jac *= 1 - lam  # (1 - lambda) J + lambda dn
            dn *= lam
            blk.copy_(torch.from_numpy(np.add(jac, dn, out=jac)))
        return out

    def similarities(self, r0: int = 0, r1: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """``1 - distances(r0, r1)`` (larger = closer), e.g. for prediction refinement."""
        return self.distances(r0, r1, out).neg_().add_(1.0)


def rerank(query: Any, gallery: Any, k1: int = DEFAULT_K1, k2: int = DEFAULT_K2,
           lambda_value: float = DEFAULT_LAMBDA, **kw: Any) -> torch.Tensor:
    """The whole (q, g) re-ranked distance matrix (``kw``: see :class:`Reranker`)."""
    return Reranker(query, gallery, k1=k1, k2=k2, lambda_value=lambda_value, **kw).distances()
