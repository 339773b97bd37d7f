"""The building steps of :class:`~dlcr.evaluation.rerank.Reranker`: initial distances by tiles,
neighbour lists, k-reciprocal sets and their expansion, and the sparse V with its query expansion.

Rules and notation: :mod:`dlcr.evaluation.rerank`. Sparse rows are CSR ``(indptr, cols[, vals])``
with increasing columns within a row. Every pass works in pieces sized from ``chunk`` (the
Reranker's ``chunk_elements``): float32 tiles of ``chunk`` elements, int64 / float64 temporaries of
about ``chunk / 8`` entries per array.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError

__all__ = ["Overrides", "Pairs", "Pool", "distance_block", "expansion", "indptr_of", "neighbours",
           "query_expansion", "row_ranges", "weights"]

#: ``(rows, cols, distances)``: initial distances replacing the features' own for some
#: (query row, gallery column) pairs, and for the mirrored gallery-query pairs.
Pairs = tuple[Any, Any, Any]


class Pool:
    """Query features ``q`` and gallery features ``g`` as one pool (queries first), not copied."""

    def __init__(self, q: torch.Tensor, g: torch.Tensor) -> None:
        self.q, self.g, self.nq, self.n = q, g, len(q), len(q) + len(g)
        self.sq = torch.cat([(q * q).sum(1), (g * g).sum(1)])

    def rows(self, a: int, b: int) -> torch.Tensor:
        nq = self.nq
        if b <= nq:
            return self.q[a:b]
        if a >= nq:
            return self.g[a - nq:b - nq]
        return torch.cat([self.q[a:], self.g[:b - nq]])

    def take(self, idx: np.ndarray) -> torch.Tensor:
        out = torch.empty(len(idx), self.q.shape[1], dtype=self.q.dtype)
        m = idx < self.nq
        out[torch.from_numpy(m)] = self.q[torch.from_numpy(idx[m])]
        out[torch.from_numpy(~m)] = self.g[torch.from_numpy(idx[~m] - self.nq)]
        return out


class Overrides:
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


def distance_block(pool: Pool, ov: Overrides, r0: int, r1: int, c0: int, c1: int) -> torch.Tensor:
    """Initial distances of pool rows r0:r1 to pool columns c0:c1 (the one place they are made)."""
    d = pool.sq[r0:r1, None] + pool.sq[None, c0:c1]
    d.sub_(torch.mm(pool.rows(r0, r1), pool.rows(c0, c1).T), alpha=2).clamp_(min=0)  # (a + b) - 2 x.y
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


def neighbours(pool: Pool, ov: Overrides, width: int, chunk: int) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Every item's ``width`` nearest pool items by ``dn``, exactly ordered (ties by lower index),
    their ``dn`` (float64), and every row's largest distance.

    The distance matrix is symmetric: only tiles on and above the diagonal are computed, each folded
    into the lists of its rows and of its columns. Lists of ``width + 1`` by distance are then sorted
    by (dn, index); a row whose width-th value ties the next one is redone with a stable sort of the
    whole row (ties beyond the list could belong in it).
    """
    n = pool.n
    kk = min(width + 1, n)
    side = max(1, math.isqrt(chunk))
    best_v = torch.full((n, kk), math.inf, dtype=pool.sq.dtype)
    best_i = torch.zeros((n, kk), dtype=torch.long)
    rowmax = torch.full((n,), -math.inf, dtype=pool.sq.dtype)
    for r0 in range(0, n, side):
        for c0 in range(r0, n, side):
            d = distance_block(pool, ov, r0, min(n, r0 + side), c0, min(n, c0 + side))
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
            row = distance_block(pool, ov, int(i), int(i) + 1, 0, n).div_(rowmax[i])[0].numpy()
            idx[i] = np.argsort(row, kind="stable")[:kk]
            dn[i] = row[idx[i]]
    return idx[:, :width], dn[:, :width].astype(np.float64), rowmax


def row_ranges(n: int, per_row: int, chunk: int) -> list[tuple[int, int]]:
    """Row pieces of 0:n with about ``chunk`` elements each at ``per_row`` elements a row."""
    step = max(1, chunk // max(1, per_row))
    return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]


def indptr_of(rows: np.ndarray, n: int) -> np.ndarray:
    """CSR row pointers of the (sorted) row ids of the entries."""
    return np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])


def _reciprocal(nbr: np.ndarray, k: int, chunk: int) -> np.ndarray:
    """``mask[i, a]``: whether ``nbr[i, a]`` (a < k) is in R(i, k - 1)."""
    n = len(nbr)
    head = np.ascontiguousarray(nbr[:, :k])
    mask = np.empty((n, k), dtype=bool)
    for r0, r1 in row_ranges(n, 8 * k * k, chunk):
        mask[r0:r1] = (head[head[r0:r1]] == np.arange(r0, r1)[:, None, None]).any(-1)
    return mask


def expansion(nbr: np.ndarray, k: int, kh: int, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """E(i) of every item as CSR ``(indptr, cols)``: R(i, k - 1) plus the accepted R(c, kh - 1)."""
    n = len(nbr)
    rmask, hmask = _reciprocal(nbr, k, chunk), _reciprocal(nbr, kh, chunk)
    head_h = np.ascontiguousarray(nbr[:, :kh])
    rows_out, cols_out = [], []
    for r0, r1 in row_ranges(n, k * kh * k, chunk):
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
    return indptr_of(np.concatenate(rows_out), n), np.concatenate(cols_out)


def weights(pool: Pool, ov: Overrides, rowmax: np.ndarray, near: tuple[np.ndarray, np.ndarray],
            indptr: np.ndarray, cols: np.ndarray, chunk: int) -> np.ndarray:
    """V's values on E: ``exp(-dn)`` normalised over each row (float64). ``dn`` comes from the
    neighbour lists ``near = (indices, dn)`` where they hold the pair, else from a dot product."""
    idx, known = near
    rows = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
    dn = np.empty(len(cols))
    step = max(1, chunk // (4 * max(idx.shape[1], pool.q.shape[1])))
    for s in range(0, len(cols), step):
        i, j = rows[s:s + step], cols[s:s + step]
        hit = idx[i] == j[:, None]
        found = hit.any(1)
        dn[s:s + step] = known[i, hit.argmax(1)]
        mi, mj = i[~found], j[~found]
        ti, tj = torch.from_numpy(mi), torch.from_numpy(mj)
        d = (pool.sq[ti] + pool.sq[tj]).sub_((pool.take(mi) * pool.take(mj)).sum(1), alpha=2)
        d = d.clamp_(min=0).double().numpy()
        d[mi == mj] = 0.0
        replaced, v = ov.lookup(mi, mj)
        dn[s + np.flatnonzero(~found)] = np.where(replaced, v, d) / rowmax[mi]
    w = np.exp(-dn)
    total = np.bincount(rows, weights=w, minlength=len(indptr) - 1)
    out = w / total[rows]
    if not np.isfinite(out).all():
        raise InputError("re-ranking weights overflow: an initial distance lies far below its row's others")
    return out


def query_expansion(indptr: np.ndarray, cols: np.ndarray, vals: np.ndarray, near: np.ndarray,
                    chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of ``V(i) <- mean of V(near[i, t])``: summed in the order t = 0, 1, ... (as numpy's mean)."""
    n, k2 = near.shape
    lens = np.diff(indptr)
    parts = []
    for r0, r1 in row_ranges(n, 8 * k2 * max(1, int(lens.max())), chunk):
        src = near[r0:r1].reshape(-1)
        cnt = lens[src]
        pos = np.repeat(indptr[src] - np.cumsum(cnt) + cnt, cnt) + np.arange(int(cnt.sum()))
        keys = np.repeat(np.repeat(np.arange(r0, r1), k2), cnt) * n + cols[pos]
        uniq, inv = np.unique(keys, return_inverse=True)
        mean = np.bincount(inv.reshape(-1), weights=vals[pos]) / k2
        parts.append((uniq[mean != 0], mean[mean != 0]))
    keys = np.concatenate([p[0] for p in parts])
    return indptr_of(keys // n, n), keys % n, np.concatenate([p[1] for p in parts])
