"""How many entries of a similarity row rank before given values, under a decreasing transform.

The evaluator ranks by distances that are float32 transforms f(s) of the similarities s: the plain
distance ``1 - s``, the refined ``-s`` (paper) and ``-(1 + s)`` (official). Each f is
non-increasing (float rounding keeps it monotone), so ``f(s) < v`` holds exactly on the entries
from some position on in the ascending rows of s. One sort of a block's similarities therefore
answers, for any f, "how many entries have ``f(s) < v``" (or ``<= v``) by a binary search that
evaluates f on the sorted values themselves: no transformed copy of a row is ever made, and the
comparisons are those of the distance matrix, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["TRANSFORMS", "SortedRows", "ties_before"]

_ONE = np.float32(1.0)

#: The float32 distance transforms, exactly as the distance matrices are computed.
TRANSFORMS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "one_minus": lambda s: np.subtract(_ONE, s, dtype=np.float32),  # cosine distance: (-s) + 1
    "neg": np.negative,  # paper refinement: -sims
    "neg_one_plus": lambda s: np.negative(np.add(s, _ONE, dtype=np.float32)),  # official: -(1 + s)
}


class SortedRows:
    """The ascending rows of a float32 block (sorted once, into ``buf`` when given)."""

    def __init__(self, sims: np.ndarray, buf: np.ndarray | None = None) -> None:
        if buf is None:
            self.rows = np.array(sims, dtype=np.float32, copy=True)
        else:
            self.rows = buf
            np.copyto(self.rows, sims)
        self.rows.sort(axis=1)
        self.n = self.rows.shape[1]

    def count(self, rows: np.ndarray, values: np.ndarray, f: str, strict: bool = True) -> np.ndarray:
        """For rows ``rows`` (k,) and values (k, P): entries of each whole row with ``f(s) < v``
        (``strict``) or ``f(s) <= v``, as int64 (k, P)."""
        fn = TRANSFORMS[f]
        n = self.n
        shape = values.shape
        v = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
        base = np.repeat(np.asarray(rows, dtype=np.int64) * n, shape[1] if len(shape) > 1 else 1)
        flat = self.rows.reshape(-1)
        lo = np.zeros(len(v), dtype=np.int64)  # first position where the predicate holds lies in [lo, hi]
        hi = np.full(len(v), n, dtype=np.int64)
        for _ in range(int(n).bit_length()):
            mid = (lo + hi) >> 1
            fx = fn(flat[base + np.minimum(mid, n - 1)])
            hold = (fx < v) if strict else (fx <= v)
            open_ = lo < hi
            hi = np.where(open_ & hold, mid, hi)
            lo = np.where(open_ & ~hold, mid + 1, lo)
        return (n - lo).reshape(shape)


#: Elements of the transformed rows built at once by :func:`ties_before`.
_TIE_ELEMENTS = 1 << 22


def ties_before(sims: np.ndarray, rows: np.ndarray, cols: np.ndarray, values: np.ndarray, f: str,
                patch: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """For each (row, col, value): entries of ``f(sims[row, :col])`` equal to ``value``.

    ``patch = (columns, distances)``, each (n_rows_of_sims, m): the distance row is ``f(sims[row])``
    with those columns replaced by those distances (the refined rows)."""
    fn = TRANSFORMS[f]
    out = np.empty(len(rows), dtype=np.int64)
    n = sims.shape[1]
    step = max(1, _TIE_ELEMENTS // n)
    ar = np.arange(n)
    for s in range(0, len(rows), step):
        r, c, v = rows[s:s + step], cols[s:s + step], values[s:s + step]
        d = fn(sims[r])
        if patch is not None:
            np.put_along_axis(d, patch[0][r], patch[1][r], axis=1)
        out[s:s + step] = ((d == v[:, None]) & (ar[None, :] < c[:, None])).sum(1)
    return out
