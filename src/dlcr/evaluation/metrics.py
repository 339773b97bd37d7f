"""Re-id ranking metrics (CMC, mAP, mINP) under the standard / clothes-changing / same-clothes rules.

Rules (docs/design.md §8). For a query and a gallery item of the *same* person:

============  ==========================================  ==========================================
mode          good match                                  junk (removed from the ranking)
============  ==========================================  ==========================================
``standard``  other camera                                same camera
``CC``        other camera and other clothes              same camera or same clothes
``SC``        other camera and same clothes               same camera or other clothes
============  ==========================================  ==========================================

Gallery items of other persons are never junk. In every mode the junk set is "same person but not a
good match", which the fast path below exploits. Queries without any good match are skipped.

Ranking order. Gallery items are ranked by increasing distance; equal distances are ordered by
gallery index (lower index first), i.e. the order of ``np.argsort(row, kind="stable")``. Both
:func:`evaluate` and :func:`evaluate_reference` use this order, so ties can never make them disagree.

Summation order. AP is the mean over good matches of the precision at each good match's rank,
summed *sequentially* in rank order (``np.cumsum``), not with numpy's pairwise ``sum``: the two
implementations then perform the very same floating-point operations and agree bit for bit. (The
difference to a pairwise sum is at most a few ulps.)

mINP (Ye et al., AGW): per query, ``num_good / rank_of_hardest_good`` (1-based, junk removed),
averaged over the evaluated queries.

Speed. :func:`evaluate` never argsorts a row. For every chunk of queries it sorts the distance
values (``np.sort``, SIMD-accelerated and several times cheaper than an argsort) and, for each good
match, counts the gallery items that come before it with a binary search in its sorted row. The
items of the same person (good and junk, a handful per query, found through a per-person index of
the gallery) are then subtracted, leaving the number of *other* persons ranked before it. Exact
distance ties between a good match and another item are resolved by an explicit count on the
(rare) tied pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcr.errors import InputError
from dlcr.evaluation.ranking import (
    _CHUNK_ELEMENTS,
    RankCounts,
    _good_mask,
    _person_index,
    _score_rows,
    add_ranks,
    sorted_counts,
)

__all__ = ["MODES", "Metrics", "RankAccumulator", "evaluate", "evaluate_reference", "junk_counts",
           "match_masks", "normalise_mode", "same_person_matches", "RankCounts", "sorted_counts",
           "_CHUNK_ELEMENTS", "_good_mask"]

#: Canonical mode names; :func:`normalise_mode` also accepts any capitalisation.
MODES = ("standard", "CC", "SC")

@dataclass(frozen=True)
class Metrics:
    """Result of an evaluation. ``cmc[k-1]`` is the top-k accuracy (fractions in [0, 1])."""

    cmc: np.ndarray
    mAP: float
    mINP: float
    num_valid: int
    num_skipped: int

    def top(self, k: int) -> float:
        """Top-k accuracy. Beyond the CMC's length it is 1.0 when the CMC already reached 1.0
        (the curve is non-decreasing and bounded by 1); otherwise it is unknown and refused."""
        if k < 1:
            raise InputError(f"top-k needs k >= 1, got {k}")
        if k <= len(self.cmc):
            return float(self.cmc[k - 1])
        if len(self.cmc) and self.cmc[-1] == 1.0:
            return 1.0
        raise InputError(f"top-{k} is not available: the CMC was computed up to rank {len(self.cmc)}")

    def as_dict(self, ranks: tuple[int, ...] = (1, 5, 10, 20)) -> dict[str, float | int]:
        """The usual summary (fractions in [0, 1])."""
        out: dict[str, float | int] = {f"top{k}": self.top(k) for k in ranks}
        out.update(mAP=self.mAP, mINP=self.mINP, num_queries=self.num_valid, num_skipped=self.num_skipped)
        return out


def normalise_mode(mode: str) -> str:
    """Map any capitalisation of ``standard``/``CC``/``SC`` to the canonical name."""
    canon = {m.lower(): m for m in MODES}
    key = str(mode).lower()
    if key not in canon:
        raise InputError(f"unknown evaluation mode {mode!r}; expected one of {', '.join(MODES)}")
    return canon[key]


# --------------------------------------------------------------------------------------------
# input checks shared by both implementations


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _labels(x: Any, name: str, n: int, what: str) -> np.ndarray:
    a = _to_numpy(x)
    if a.ndim != 1:
        a = a.reshape(-1) if a.size == n else a
    if a.ndim != 1 or len(a) != n:
        raise InputError(f"{name} has {a.size} entries but the distance matrix has {n} {what}")
    return a


def _prepare(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, q_clothes: Any,
             g_clothes: Any, mode: str, max_rank: int) -> tuple[np.ndarray, ...]:
    mode = normalise_mode(mode)
    d = _to_numpy(distmat)
    if d.ndim != 2:
        raise InputError(f"distmat must be 2-D (n_query, n_gallery), got shape {tuple(d.shape)}")
    nq, ng = d.shape
    if nq == 0 or ng == 0:
        raise InputError(f"empty {'query' if nq == 0 else 'gallery'} set (distmat shape {tuple(d.shape)})")
    if not np.issubdtype(d.dtype, np.floating):
        d = d.astype(np.float64)
    elif d.dtype.itemsize < 4:
        d = d.astype(np.float32)  # exact; numpy's fast paths want float32/64
    if not np.isfinite(d).all():
        raise InputError("distmat contains NaN or infinite values")
    if int(max_rank) < 1:
        raise InputError(f"max_rank must be >= 1, got {max_rank}")
    qp = _labels(q_pids, "q_pids", nq, "rows")
    gp = _labels(g_pids, "g_pids", ng, "columns")
    qc = _labels(q_camids, "q_camids", nq, "rows")
    gc = _labels(g_camids, "g_camids", ng, "columns")
    if mode != "standard":
        if q_clothes is None or g_clothes is None:
            raise InputError(f"mode {mode} needs clothes ids for both query and gallery")
        ql = _labels(q_clothes, "q_clothes", nq, "rows")
        gl = _labels(g_clothes, "g_clothes", ng, "columns")
    else:
        ql = gl = None
    return d, qp, gp, qc, gc, ql, gl, mode  # type: ignore[return-value]


def match_masks(q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, q_clothes: Any = None,
                g_clothes: Any = None, mode: str = "standard") -> tuple[np.ndarray, np.ndarray]:
    """Full ``(good, junk)`` boolean matrices (n_query, n_gallery) for small problems and tests."""
    mode = normalise_mode(mode)
    qp, gp = _to_numpy(q_pids).reshape(-1), _to_numpy(g_pids).reshape(-1)
    same_pid = qp[:, None] == gp[None, :]
    same_cam = _to_numpy(q_camids).reshape(-1)[:, None] == _to_numpy(g_camids).reshape(-1)[None, :]
    same_cl = None
    if mode != "standard":
        if q_clothes is None or g_clothes is None:
            raise InputError(f"mode {mode} needs clothes ids for both query and gallery")
        same_cl = _to_numpy(q_clothes).reshape(-1)[:, None] == _to_numpy(g_clothes).reshape(-1)[None, :]
    good = same_pid & _good_mask(same_cam, same_cl, mode)
    return good, same_pid & ~good


def same_person_matches(q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, q_clothes: Any = None,
                        g_clothes: Any = None, mode: str = "standard"
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`match_masks` without the (n_query, n_gallery) arrays: ``(has_good, junk_rows,
    junk_cols)``: whether each query has a good match, and the (row, column) pairs of its junk
    items, found through the per-person index of the gallery (rows increasing, then columns)."""
    mode = normalise_mode(mode)
    qp, gp = _to_numpy(q_pids).reshape(-1), _to_numpy(g_pids).reshape(-1)
    qc, gc = _to_numpy(q_camids).reshape(-1), _to_numpy(g_camids).reshape(-1)
    if mode != "standard" and (q_clothes is None or g_clothes is None):
        raise InputError(f"mode {mode} needs clothes ids for both query and gallery")
    if len(qp) == 0 or len(gp) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return np.zeros(len(qp), dtype=bool), empty, empty
    table, qrow = _person_index(gp, qp)
    cols = table[qrow]  # (n_query, P) same-person gallery columns, -1 padded, increasing
    valid = cols >= 0
    colc = np.where(valid, cols, 0)
    same_cl = None
    if mode != "standard":
        ql, gl = _to_numpy(q_clothes).reshape(-1), _to_numpy(g_clothes).reshape(-1)
        same_cl = gl[colc] == ql[:, None]
    good = valid & _good_mask(gc[colc] == qc[:, None], same_cl, mode)
    junk = valid & ~good
    rows, slots = np.nonzero(junk)
    order = np.lexsort((colc[rows, slots], rows))
    return good.any(1), rows[order].astype(np.int64), colc[rows, slots][order].astype(np.int64)


def junk_counts(q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, q_clothes: Any = None,
                g_clothes: Any = None, mode: str = "standard") -> np.ndarray:
    """Per query, the number of gallery items that are junk under the mode's rule (the row sums of
    :func:`match_masks`'s ``junk``), never building an (n_query, n_gallery) array."""
    _, rows, _ = same_person_matches(q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes, mode)
    return np.bincount(rows, minlength=len(_to_numpy(q_pids).reshape(-1))).astype(np.int64)


def _finish(cmc_counts: np.ndarray, aps: list[np.ndarray], inps: list[np.ndarray], nq: int,
            mode: str) -> Metrics:
    ap = np.concatenate(aps) if aps else np.zeros(0)
    inp = np.concatenate(inps) if inps else np.zeros(0)
    num_valid = len(ap)
    if num_valid == 0:
        raise InputError(f"no query has a good match in the gallery under the {mode} rule")
    cmc = np.cumsum(cmc_counts).astype(np.float64) / num_valid
    return Metrics(cmc=cmc, mAP=float(np.mean(ap)), mINP=float(np.mean(inp)), num_valid=num_valid,
                   num_skipped=nq - num_valid)


# --------------------------------------------------------------------------------------------
# the plain per-query reference


def evaluate_reference(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any,
                       q_clothes: Any = None, g_clothes: Any = None, mode: str = "standard",
                       max_rank: int = 50) -> Metrics:
    """The classic loop: stable argsort of each row, drop junk, cumulative sums. Slow; the oracle."""
    d, qp, gp, qc, gc, ql, gl, mode = _prepare(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes,
                                               g_clothes, mode, max_rank)
    nq, ng = d.shape
    max_rank = min(int(max_rank), ng)
    cmc_counts = np.zeros(max_rank, dtype=np.int64)
    aps: list[float] = []
    inps: list[float] = []
    for i in range(nq):
        order = np.argsort(d[i], kind="stable")
        same_pid = gp[order] == qp[i]
        same_cam = gc[order] == qc[i]
        same_cl = None if gl is None else gl[order] == ql[i]
        good = same_pid & _good_mask(same_cam, same_cl, mode)
        junk = same_pid & ~good
        matches = good[~junk].astype(np.int64)
        if not matches.any():
            continue
        hits = np.flatnonzero(matches)  # 0-based positions of the good matches, junk removed
        tmp_cmc = matches.cumsum()
        precision = tmp_cmc[hits] / (hits + 1)
        if hits[0] < max_rank:
            cmc_counts[hits[0]] += 1
        aps.append(np.cumsum(precision)[-1] / len(hits))
        inps.append(len(hits) / (hits[-1] + 1))
    return _finish(cmc_counts, [np.asarray(aps, dtype=np.float64)], [np.asarray(inps, dtype=np.float64)],
                   nq, mode)


def evaluate(distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, q_clothes: Any = None,
             g_clothes: Any = None, mode: str = "standard", max_rank: int = 50,
             chunk: int | None = None) -> Metrics:
    """CMC / mAP / mINP of a query x gallery distance matrix (smaller = more similar).

    ``distmat`` is a numpy array or torch tensor (n_query, n_gallery); ids are 1-D arrays. ``mode`` is
    ``"standard"``, ``"CC"`` or ``"SC"`` (clothes ids required for the latter two). The CMC has
    ``min(max_rank, n_gallery)`` entries. ``chunk`` is the number of query rows processed at once
    (default: about 4M matrix elements). Returns exactly what :func:`evaluate_reference` returns.
    """
    acc = RankAccumulator(mode, max_rank=max_rank, chunk=chunk)
    acc.add(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes, g_clothes)
    return acc.result()


class RankAccumulator:
    """:func:`evaluate` over query rows given a block at a time (a distance matrix that is never whole).

    Every query is scored independently, so ``add``-ing the row blocks of a matrix in order and then
    calling ``result`` gives exactly what :func:`evaluate` gives on the whole matrix.
    """

    def __init__(self, mode: str = "standard", *, max_rank: int = 50, chunk: int | None = None) -> None:
        if int(max_rank) < 1:
            raise InputError(f"max_rank must be >= 1, got {max_rank}")
        if chunk is not None and int(chunk) < 1:
            raise InputError(f"chunk must be >= 1, got {chunk}")
        self.mode = normalise_mode(mode)
        self.max_rank = int(max_rank)
        self.chunk = None if chunk is None else int(chunk)
        self.cmc_counts: np.ndarray | None = None
        self.aps: list[np.ndarray] = []
        self.inps: list[np.ndarray] = []
        self.nq = 0
        self.ng: int | None = None

    def add(self, distmat: Any, q_pids: Any, g_pids: Any, q_camids: Any, g_camids: Any, q_clothes: Any = None,
            g_clothes: Any = None, *, counts: RankCounts | None = None) -> None:
        """Score the queries of one block of rows (the same gallery every time).

        ``counts(rows, values)``: for rows of this block and a (len(rows), P) array of their entries'
        distances, how many entries of each whole row are smaller, and smaller or equal (two int
        arrays of that shape). By default a sort of each row answers; a caller that knows the sorted
        rows already (several protocols on one matrix) passes its own answer, which must be exact.
        """
        d, qp, gp, qc, gc, ql, gl, mode = _prepare(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes,
                                                   g_clothes, self.mode, self.max_rank)
        if self.ng is None:
            self.ng = d.shape[1]
            self.cmc_counts = np.zeros(min(self.max_rank, self.ng), dtype=np.int64)
        elif d.shape[1] != self.ng:
            raise InputError(f"a block has {d.shape[1]} gallery columns, earlier ones had {self.ng}")
        assert self.cmc_counts is not None
        _score_rows(d, qp, gp, qc, gc, ql, gl, mode, self.cmc_counts, self.aps, self.inps, self.chunk, counts)
        self.nq += d.shape[0]

    def add_ranks(self, good: np.ndarray, before: np.ndarray, n_rows: int, n_gallery: int) -> None:
        """Score a block of ``n_rows`` query rows whose ranks the caller found itself: for the rows
        with a good match (in order), their same-person entries in ranking order, ``good`` and
        ``before`` as :func:`~dlcr.evaluation.ranking.add_ranks` takes them. Adding the same
        rows through :meth:`add` gives the same result."""
        if self.ng is None:
            self.ng = int(n_gallery)
            self.cmc_counts = np.zeros(min(self.max_rank, self.ng), dtype=np.int64)
        elif int(n_gallery) != self.ng:
            raise InputError(f"a block has {n_gallery} gallery columns, earlier ones had {self.ng}")
        assert self.cmc_counts is not None
        if len(good):
            add_ranks(good, before, self.cmc_counts, self.aps, self.inps)
        self.nq += int(n_rows)

    def result(self) -> Metrics:
        if self.cmc_counts is None:
            raise InputError("no query rows were given")
        return _finish(self.cmc_counts, self.aps, self.inps, self.nq, self.mode)
