"""The vectorised scoring behind :func:`~dlcr.evaluation.metrics.evaluate`: every query row's first-hit
rank, AP and INP from sorted distance values, a per-person index of the gallery and an explicit count
of the tied pairs (see :mod:`dlcr.evaluation.metrics`, "Speed"). :mod:`dlcr.evaluation.metrics`
re-exports the public names."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Elements per chunk of the distance matrix processed at once by :func:`evaluate`.
_CHUNK_ELEMENTS = 1 << 22


def _good_mask(same_cam: np.ndarray, same_clothes: np.ndarray | None, mode: str) -> np.ndarray:
    """Among same-person pairs: which are good matches (the rest are junk)."""
    if mode == "standard":
        return ~same_cam
    assert same_clothes is not None
    return ~same_cam & (~same_clothes if mode == "CC" else same_clothes)


def _person_index(gp: np.ndarray, qp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gallery columns of each person, padded with -1, plus each query's row in that table.

    Columns within a row are increasing (stable sort), which the tie order relies on. Queries whose
    person is absent from the gallery point at an extra all-padding row.
    """
    uniq, codes = np.unique(gp, return_inverse=True)
    codes = codes.reshape(-1)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes, minlength=len(uniq))
    width = max(1, int(counts.max()))
    table = np.full((len(uniq) + 1, width), -1, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(len(gp)) - np.repeat(starts, counts)
    table[codes[order], slot] = order
    pos = np.searchsorted(uniq, qp)
    posc = np.minimum(pos, len(uniq) - 1)
    found = (pos < len(uniq)) & (uniq[posc] == qp)
    return table, np.where(found, posc, len(uniq))


def _tie_counts(d: np.ndarray, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray) -> np.ndarray:
    """For each (row, col, value): how many entries of ``d[row, :col]`` equal ``value``."""
    out = np.empty(len(rows), dtype=np.int64)
    ng = d.shape[1]
    step = max(1, _CHUNK_ELEMENTS // ng)
    ar = np.arange(ng)
    for s in range(0, len(rows), step):
        r, c, v = rows[s:s + step], cols[s:s + step], vals[s:s + step]
        out[s:s + step] = ((d[r] == v[:, None]) & (ar[None, :] < c[:, None])).sum(1)
    return out


#: ``counts(rows, values) -> (less, less_or_equal)``: see :meth:`RankAccumulator.add`.
RankCounts = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def sorted_counts(sorted_rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Entries of each ascending ``sorted_rows`` row smaller than / not larger than each value of the
    matching row of ``values`` (binary searches batched over rows)."""
    import torch

    srt = torch.from_numpy(np.ascontiguousarray(sorted_rows))
    v = torch.from_numpy(np.ascontiguousarray(values))
    return torch.searchsorted(srt, v).numpy(), torch.searchsorted(srt, v, right=True).numpy()


def add_ranks(good: np.ndarray, before: np.ndarray, cmc_counts: np.ndarray, aps: list[np.ndarray],
              inps: list[np.ndarray]) -> None:
    """Add the first-hit ranks, APs and INPs of query rows to the accumulators, from each row's
    same-person entries in ranking order: ``good`` (n, P) whether each is a good match (the others
    are junk or padding), ``before`` (n, P) int64 how many gallery entries rank before it (junk
    included). Every row must have a good match."""
    positions = np.arange(good.shape[1])  # same-person entries ranked before each one
    max_rank = len(cmc_counts)
    k = np.cumsum(good, axis=1) - 1  # goods ranked before it
    rank = before - positions[None, :] + k + 1  # 1-based rank among other persons + goods
    n_good = good.sum(1)
    big = np.iinfo(np.int64).max
    first = np.where(good, rank, big).min(1)
    last = np.where(good, rank, 0).max(1)
    precision = np.where(good, (k + 1) / np.where(good, rank, 1), 0.0)
    aps.append(np.cumsum(precision, axis=1)[:, -1] / n_good)
    inps.append(n_good / last)
    cmc_counts += np.bincount(first[first <= max_rank] - 1, minlength=max_rank)


def _score_rows(d: np.ndarray, qp: np.ndarray, gp: np.ndarray, qc: np.ndarray, gc: np.ndarray,
                ql: np.ndarray | None, gl: np.ndarray | None, mode: str, cmc_counts: np.ndarray,
                aps: list[np.ndarray], inps: list[np.ndarray], chunk: int | None,
                counts: RankCounts | None = None) -> None:
    """Add the first-hit ranks, APs and INPs of every query row of ``d`` to the accumulators."""

    nq, ng = d.shape
    rows_per_chunk = int(chunk) if chunk is not None else max(1, _CHUNK_ELEMENTS // ng)
    table, qrow = _person_index(gp, qp)
    for r0 in range(0, nq, rows_per_chunk):
        r1 = min(nq, r0 + rows_per_chunk)
        block = d[r0:r1]
        cols = table[qrow[r0:r1]]  # (C, P): same-person gallery columns, -1 padded
        valid = cols >= 0
        if not valid.any():
            continue
        colc = np.where(valid, cols, 0)
        dist = np.take_along_axis(block, colc, axis=1)
        good = valid & _good_mask(gc[colc] == qc[r0:r1, None],
                                  None if gl is None else gl[colc] == ql[r0:r1, None], mode)
        has_good = good.any(1)
        if not has_good.any():
            continue
        # keep only queries with a good match; order their same-person entries by (distance, column)
        sel = np.flatnonzero(has_good)
        block, valid, colc, dist, good = block[sel], valid[sel], colc[sel], dist[sel], good[sel]
        order = np.argsort(np.where(valid, dist, np.inf), axis=1, kind="stable")
        dist = np.take_along_axis(dist, order, axis=1)
        good = np.take_along_axis(good, order, axis=1)
        colc = np.take_along_axis(colc, order, axis=1)
        # entries of the whole row strictly smaller than each same-person distance
        if counts is None:
            lt, le = sorted_counts(np.sort(block, axis=1), dist)
        else:
            lt, le = counts(r0 + sel, dist)
        before = lt.astype(np.int64)
        tied = good & (le - lt > 1)  # another entry has exactly this distance: count lower columns
        if tied.any():
            tr, tc = np.nonzero(tied)
            before[tr, tc] += _tie_counts(block, tr, colc[tr, tc], dist[tr, tc])
        add_ranks(good, before, cmc_counts, aps, inps)
