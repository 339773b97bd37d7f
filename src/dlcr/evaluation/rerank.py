"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), memory-bounded.

Semantics are those of the public ``re_ranking`` in michuanhaohao/reid-strong-baseline
(``utils/re_ranking.py``; Matlab original: zhunzhong07/person-re-ranking), restated literally in
:mod:`dlcr.testing.rerank_reference`, which the tests hold this module to. On the pool P of all
query and gallery features (n = q + g items, queries first):

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

Memory. Never a (q + g)^2 array: the k-nearest lists come from row blocks of the distance matrix
(matmul, ``torch.topk``), V is sparse (CSR: only E(i) is non-zero, a few tens of items per row), and
the Jaccard sums of a block of queries come from V's gallery columns (an inverted index). Peak
memory is O(n (k1 + 1) + nnz(V)) for the state plus one block of at most ``chunk_elements``
elements (default 4M; a distance row block, or one Jaccard pass's (query, gallery item) pairs),
plus the caller's (rows, g) output block. nnz(V) is about n |E| k2 (|E| ~ k1 in practice).

Time. One pass of row blocks: O(n^2 D) matmul plus O(n^2) top-k; the sets: O(n k1^3) index
comparisons; V: O(n |E| D); the Jaccard sums of all queries: O(sum over V's non-zeros (i, l) of
the gallery items with V(., l) != 0), about q (k2 |E|)^2; the final mix: O(q g D). PRCC (3.9k x
3.4k, 2048-d) and LTCC (493 x 7k) take seconds on two cores (``benchmarks/bench_rerank.py``).

Protocols. The neighbourhoods use every query and gallery feature, without labels. The junk rules
of a protocol (same camera; same or other clothes) are applied afterwards by the evaluator, to the
re-ranked distances, exactly as it applies them to plain distances.

Streaming. :class:`Reranker` is prepared once per query/gallery pair; ``distances(r0, r1)`` then
gives the re-ranked (r1 - r0, g) block of queries r0:r1 (the same values whatever the blocks), so
an evaluator can score it block by block like its similarities. :func:`rerank` is the whole matrix.
Combination with prediction refinement: :mod:`dlcr.evaluation.rerank_refine`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

from dlcr.errors import ConfigError, InputError

__all__ = ["DEFAULT_CHUNK_ELEMENTS", "DEFAULT_K1", "DEFAULT_K2", "DEFAULT_LAMBDA", "Reranker",
           "check_rerank_params", "rerank"]

DEFAULT_K1, DEFAULT_K2, DEFAULT_LAMBDA = 20, 6, 0.3
#: Elements of one working block (a distance row block, or a Jaccard pass's pairs).
DEFAULT_CHUNK_ELEMENTS = 1 << 22

#: ``(rows, cols, distances)``: initial distances replacing the features' own for some
#: (query row, gallery column) pairs, and for the mirrored gallery-query pairs.
Pairs = tuple[Any, Any, Any]


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


class _Overrides:
    """Replaced initial distances of both orientations, as sorted pool keys ``row * n + col``."""

    def __init__(self, pairs: Pairs | None, nq: int, ng: int) -> None:
        n = self.n = nq + ng
        self.keys, self.vals = np.zeros(0, dtype=np.int64), np.zeros(0)
        if pairs is None:
            return
        if not isinstance(pairs, tuple) or len(pairs) != 3:
            raise InputError("qg_dist must be a (rows, cols, distances) tuple")
        rows, cols = (np.asarray(a, dtype=np.int64).reshape(-1) for a in pairs[:2])
        vals = np.asarray(pairs[2], dtype=np.float64).reshape(-1)
        if not len(rows) == len(cols) == len(vals):
            raise InputError(f"qg_dist rows, cols and distances differ in length: "
                             f"{len(rows)}, {len(cols)}, {len(vals)}")
        if len(rows) and (rows.min() < 0 or rows.max() >= nq or cols.min() < 0 or cols.max() >= ng):
            raise InputError(f"qg_dist indices must lie within (n_query, n_gallery) = {(nq, ng)}")
        if not np.isfinite(vals).all():
            raise InputError("qg_dist distances contain NaN or inf")
        keys = np.concatenate([rows * n + nq + cols, (nq + cols) * n + rows])
        order = np.argsort(keys, kind="stable")
        self.keys, self.vals = keys[order], np.concatenate([vals, vals])[order]
        if np.any(self.keys[1:] == self.keys[:-1]):
            raise InputError("qg_dist names a (query, gallery) pair twice")

    def apply(self, block: torch.Tensor, r0: int, c0: int) -> None:
        """Write the replaced entries of the pool block with top-left corner (r0, c0) into it."""
        if not len(self.keys):
            return
        c, w = block.shape
        lo, hi = np.searchsorted(self.keys, [r0 * self.n, (r0 + c) * self.n])
        k = self.keys[lo:hi]
        r, col = k // self.n - r0, k % self.n - c0
        ok = (col >= 0) & (col < w)
        block[torch.from_numpy(r[ok]), torch.from_numpy(col[ok])] = torch.from_numpy(self.vals[lo:hi][ok]).to(
            block.dtype)

    def lookup(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which (row, col) pool pairs are replaced, and their distances (garbage where not)."""
        if not len(self.keys):
            return np.zeros(len(rows), dtype=bool), np.zeros(len(rows))
        k = rows * self.n + cols
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return self.keys[pos] == k, self.vals[pos]


def _distance_block(x: torch.Tensor, sq: torch.Tensor, ov: _Overrides, r0: int, r1: int, c0: int,
                    c1: int) -> torch.Tensor:
    """Initial distances of pool rows r0:r1 to pool columns c0:c1 (the one place they are made)."""
    d = sq[r0:r1, None] + sq[None, c0:c1]
    d.sub_(torch.mm(x[r0:r1], x[c0:c1].T), alpha=2).clamp_(min=0)  # (a + b) - 2 x.y, as the reference
    lo, hi = max(r0, c0), min(r1, c1)
    if lo < hi:
        diag = torch.arange(lo, hi)
        d[diag - r0, diag - c0] = 0
    ov.apply(d, r0, c0)
    return d


def _merge(best_v: torch.Tensor, best_i: torch.Tensor, rowmax: torch.Tensor, r0: int, d: torch.Tensor,
           c0: int) -> None:
    """Fold block ``d`` (rows r0.., columns c0..) into the running row maxima and smallest lists."""
    rows = slice(r0, r0 + d.shape[0])
    rowmax[rows] = torch.maximum(rowmax[rows], d.max(dim=1).values)
    kk = best_v.shape[1]
    tv, ti = torch.topk(d, min(kk, d.shape[1]), dim=1, largest=False, sorted=False)
    cv, ci = torch.cat([best_v[rows], tv], 1), torch.cat([best_i[rows], ti + c0], 1)
    nv, pos = torch.topk(cv, kk, dim=1, largest=False, sorted=False)
    best_v[rows], best_i[rows] = nv, torch.gather(ci, 1, pos)


def _neighbours(x: torch.Tensor, sq: torch.Tensor, ov: _Overrides, width: int, keep: int,
                chunk: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Every item's ``keep`` (>= width) nearest pool items by ``dn`` with their ``dn`` (float64), the
    first ``width`` of them exactly ordered (ties by lower index), and every row's largest distance.

    The distance matrix is symmetric: only tiles on and above the diagonal are computed, each folded
    into the lists of its rows and of its columns. Lists of ``keep + 1`` by distance are then sorted
    by (dn, index); a row whose width-th value ties the next one is redone with a stable sort of the
    whole row (ties beyond the list could belong in it).
    """
    n = x.shape[0]
    kk = min(keep + 1, n)
    side = max(1, math.isqrt(chunk))
    best_v = torch.full((n, kk), math.inf, dtype=x.dtype)
    best_i = torch.zeros((n, kk), dtype=torch.long)
    rowmax = torch.full((n,), -math.inf, dtype=x.dtype)
    for r0 in range(0, n, side):
        for c0 in range(r0, n, side):
            d = _distance_block(x, sq, ov, r0, min(n, r0 + side), c0, min(n, c0 + side))
            _merge(best_v, best_i, rowmax, r0, d, c0)
            if c0 != r0:
                _merge(best_v, best_i, rowmax, c0, d.T, r0)
    if not bool(torch.isfinite(rowmax).all()) or not bool((rowmax > 0).all()):
        raise InputError("re-ranking needs a positive, finite largest distance in every row "
                         "(features all identical, or too large)")
    dn, idx = (best_v / rowmax[:, None]).numpy(), best_i.numpy()
    order = np.lexsort((idx, dn), axis=-1)
    dn, idx = np.take_along_axis(dn, order, 1), np.take_along_axis(idx, order, 1)
    if kk > width:
        for i in np.flatnonzero(dn[:, width - 1] == dn[:, width]):
            row = _distance_block(x, sq, ov, i, i + 1, 0, n).div_(rowmax[i])[0].numpy()
            idx[i] = np.argsort(row, kind="stable")[:kk]
            dn[i] = row[idx[i]]
    return idx[:, :keep], dn[:, :keep].astype(np.float64), rowmax


def _row_steps(n: int, per_row: int, chunk: int) -> range:
    return range(0, n, max(1, chunk // max(1, per_row)))


def _reciprocal(nbr: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """``mask[i, a]``: whether ``nbr[i, a]`` (a < k) is in R(i, k - 1)."""
    n = len(nbr)
    head = np.ascontiguousarray(nbr[:, :k])
    mask = np.empty((n, k), dtype=bool)
    for r0 in _row_steps(n, k * k, chunk):
        r1 = min(n, r0 + max(1, chunk // (k * k)))
        mask[r0:r1] = (head[head[r0:r1]] == np.arange(r0, r1)[:, None, None]).any(-1)
    return mask


def _expansion(nbr: np.ndarray, k: int, kh: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """E(i) of every item as CSR ``(indptr, cols)``, columns increasing within a row."""
    n = len(nbr)
    rmask, hmask = _reciprocal(nbr, k, chunk), _reciprocal(nbr, kh, chunk)
    head_h = np.ascontiguousarray(nbr[:, :kh])
    rows_out, cols_out = [], []
    per_row = k * kh * k
    for r0 in _row_steps(n, per_row, chunk):
        r1 = min(n, r0 + max(1, chunk // per_row))
        fwd = nbr[r0:r1, :k]
        recip = np.where(rmask[r0:r1], fwd, -1)  # R(i, k1), -1 padded
        cand = np.where(hmask[fwd], head_h[fwd], -1)  # (c, k, kh): R(c, k1 / 2) of each forward item
        size = (cand >= 0).sum(-1)
        inside = ((cand[..., None] == recip[:, None, None, :]) & (cand[..., None] >= 0)).any(-1).sum(-1)
        accept = rmask[r0:r1] & (inside > 2 / 3 * size)
        members = np.concatenate([recip, np.where(accept[..., None], cand, -1).reshape(r1 - r0, -1)], axis=1)
        members.sort(axis=1)
        keep = members >= 0
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        r, c = np.nonzero(keep)
        rows_out.append(r + r0)
        cols_out.append(members[r, c])
    rows, cols = np.concatenate(rows_out), np.concatenate(cols_out)
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))]), cols


def _weights(x: torch.Tensor, sq: torch.Tensor, ov: _Overrides, rowmax: np.ndarray, near: tuple[np.ndarray, np.ndarray],
             indptr: np.ndarray, cols: np.ndarray, chunk: int) -> np.ndarray:
    """V's values on E: ``exp(-dn)`` normalised over each row (float64). ``dn`` comes from the
    neighbour lists ``near = (indices, dn)`` where they hold the pair, else from a dot product."""
    idx, known = near
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    dn = np.empty(len(cols))
    step = max(1, chunk // idx.shape[1])
    for s in range(0, len(cols), step):
        i, j = rows[s:s + step], cols[s:s + step]
        hit = idx[i] == j[:, None]
        found = hit.any(1)
        dn[s:s + step] = np.where(found, known[i, hit.argmax(1)], 0.0)
        miss = np.flatnonzero(~found)
        for m0 in range(0, len(miss), max(1, chunk // x.shape[1])):
            sel = miss[m0:m0 + max(1, chunk // x.shape[1])]
            mi, mj = i[sel], j[sel]
            ti, tj = torch.from_numpy(mi), torch.from_numpy(mj)
            d = (sq[ti] + sq[tj]).sub_((x[ti] * x[tj]).sum(1), alpha=2).clamp_(min=0).double().numpy()
            d[mi == mj] = 0.0
            replaced, v = ov.lookup(mi, mj)
            dn[s + sel] = np.where(replaced, v, d) / rowmax[mi]
    w = np.exp(-dn)
    total = np.bincount(rows, weights=w, minlength=len(indptr) - 1)
    out = w / total[rows]
    if not np.isfinite(out).all():
        raise InputError("re-ranking weights overflow: an initial distance lies far below its row's others")
    return out


def _query_expansion(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, near: np.ndarray,
                     chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of ``V(i) <- mean of V(near[i, t])``: summed in the order t = 0, 1, ... (as numpy's mean)."""
    n, k2 = near.shape
    lens = np.diff(indptr)
    per_row = k2 * max(1, int(lens.max()))
    parts = []
    for r0 in _row_steps(n, per_row, chunk):
        r1 = min(n, r0 + max(1, chunk // per_row))
        src = near[r0:r1].reshape(-1)
        cnt = lens[src]
        pos = np.repeat(indptr[src] - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        keys = np.repeat(np.repeat(np.arange(r0, r1), k2), cnt) * n + cols[pos]
        uniq, inv = np.unique(keys, return_inverse=True)
        parts.append((uniq, np.bincount(inv.reshape(-1), weights=vals[pos]) / k2))
    keys = np.concatenate([p[0] for p in parts])
    v = np.concatenate([p[1] for p in parts])
    keep = v != 0
    keys, v = keys[keep], v[keep]
    return np.concatenate([[0], np.cumsum(np.bincount(keys // n, minlength=n))]), keys % n, v


class Reranker:
    """k-reciprocal re-ranking of ``query`` (q, D) against ``gallery`` (g, D), prepared once.

    ``k1``, ``k2``, ``lambda_value``: the paper's parameters (ConfigError when invalid).
    ``qg_dist``: optional ``(rows, cols, distances)`` replacing the initial distance of those
    (query, gallery) pairs (and of their mirrored gallery-query pairs), e.g. refined ones (see
    :mod:`dlcr.evaluation.rerank_refine`); each pair at most once. ``dtype``: of the features'
    distances (float32 default; float64 for tests against the reference). ``chunk_elements``:
    the size of the working blocks (see the module docstring, "Memory").
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
        self._x = torch.cat([q, g])
        self._sq = (self._x * self._x).sum(1)
        self._ov = _Overrides(qg_dist, self.n_query, self.n_gallery)
        n = len(self._x)
        k, kh, kq = min(n, self.k1 + 1), min(n, int(np.around(self.k1 / 2)) + 1), min(n, self.k2)
        width = max(k, kq)
        nbr, known, self._rowmax = _neighbours(self._x, self._sq, self._ov, width, width, chunk)
        indptr, cols = _expansion(nbr, k, kh, chunk)
        vals = _weights(self._x, self._sq, self._ov, self._rowmax.double().numpy(), (nbr, known), indptr, cols,
                        chunk)
        if self.k2 != 1:
            indptr, cols, vals = _query_expansion(indptr, cols, vals, np.ascontiguousarray(nbr[:, :kq]), chunk)
        self._v = (indptr, cols, vals)
        self._inverted(indptr, cols, vals)

    def _inverted(self, indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> None:
        """V's gallery rows by column (rows increasing), and each query's Jaccard pair count."""
        nq, n = self.n_query, len(self._x)
        g0 = indptr[nq]
        order = np.argsort(cols[g0:], kind="stable")
        rows = np.repeat(np.arange(self.n_gallery), np.diff(indptr[nq:]))
        self._g_rows, self._g_vals = rows[order], vals[g0:][order]
        counts = np.bincount(cols[g0:], minlength=n)
        self._g_ptr = np.concatenate([[0], np.cumsum(counts)])
        per_entry = counts[cols[:g0]]
        self._q_cost = np.bincount(np.repeat(np.arange(nq), np.diff(indptr[:nq + 1])), weights=per_entry,
                                   minlength=nq).astype(np.int64)

    def _blocks(self, r0: int, r1: int) -> list[tuple[int, int]]:
        """Query blocks of r0:r1 with at most ``chunk_elements`` Jaccard pairs and output elements
        each (one query alone may have more pairs)."""
        cum = np.concatenate([[0], np.cumsum(self._q_cost[r0:r1])])
        most = max(1, self.chunk_elements // self.n_gallery)
        out, a = [], r0
        while a < r1:
            b = r0 + int(np.searchsorted(cum, cum[a - r0] + self.chunk_elements, side="right")) - 1
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
        s = s.reshape(b - a, ng)
        return 1 - s / (2 - s)

    def distances(self, r0: int = 0, r1: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """Re-ranked distances (r1 - r0, g) of queries r0:r1 to the gallery (smaller = closer), in
        ``dtype`` or written into ``out``."""
        nq, ng = self.n_query, self.n_gallery
        r1 = nq if r1 is None else int(r1)
        if not 0 <= int(r0) < r1 <= nq:
            raise InputError(f"query rows {r0}:{r1} are not a non-empty range within 0:{nq}")
        if out is None:
            out = torch.empty(r1 - r0, ng, dtype=self.dtype)
        elif tuple(out.shape) != (r1 - r0, ng):
            raise InputError(f"out must have shape {(r1 - r0, ng)}, got {tuple(out.shape)}")
        lam = self.lambda_value
        for a, b in self._blocks(int(r0), r1):
            dn = _distance_block(self._x, self._sq, self._ov, a, b, nq, nq + ng).div_(self._rowmax[a:b, None])
            final = self._jaccard(a, b) * (1 - lam) + dn.double().numpy() * lam
            out[a - r0:b - r0] = torch.from_numpy(final)
        return out

    def similarities(self, r0: int = 0, r1: int | None = None, out: torch.Tensor | None = None) -> torch.Tensor:
        """``1 - distances(r0, r1)`` (larger = closer), e.g. for prediction refinement."""
        return self.distances(r0, r1, out).neg_().add_(1.0)


def rerank(query: Any, gallery: Any, k1: int = DEFAULT_K1, k2: int = DEFAULT_K2,
           lambda_value: float = DEFAULT_LAMBDA, **kw: Any) -> torch.Tensor:
    """The whole (q, g) re-ranked distance matrix (``kw``: see :class:`Reranker`)."""
    return Reranker(query, gallery, k1=k1, k2=k2, lambda_value=lambda_value, **kw).distances()
