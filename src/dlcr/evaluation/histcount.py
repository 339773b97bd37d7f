"""Row counts without sorting: how many entries of each similarity row are >= given thresholds.

What :class:`~dlcr.evaluation.rowcount.SortedRows` answers with one sort of every row (about 30 ns
an entry on a CPU without a vectorised sort), answered here with a few vectorised passes, exactly.

Distance queries become thresholds. "How many entries have ``f(s) < v``" (or ``<= v``), for one of
the decreasing float32 transforms f of :data:`~dlcr.evaluation.rowcount.TRANSFORMS`, is "how many
have ``s >= t``" for the smallest float32 t at which the predicate holds (it holds on an upper set
of the floats, as f decreases): :func:`thresholds` finds t by bisecting the order of the float32
bit patterns, evaluating the predicate with f's own arithmetic.

Thresholds become bucket counts. Every entry gets a bucket, the truncation of ``(s - lo) * scale``
in float32 (lo the block's smallest entry), a non-decreasing function of s, and every row a
histogram of its buckets. For a threshold t in bucket b, the entries of higher buckets are all
>= t (the function does not decrease), those of lower buckets all < t; only the entries of bucket b
itself are compared with t. They are found in one pass that marks the buckets holding a threshold,
and compared through one sort of their (bucket, value) keys.
"""

from __future__ import annotations

import numpy as np
import torch

from dlcr.evaluation.rowcount import TRANSFORMS

__all__ = ["BUCKETS", "HistRows", "count_many", "float_keys", "thresholds"]

#: Buckets per row.
BUCKETS = 8192

_NEG_INF_KEY = 0x007FFFFF  # float_keys(-inf)
_POS_INF_KEY = 0xFF800000  # float_keys(+inf)


def float_keys(x: np.ndarray) -> np.ndarray:
    """int64 keys ordered like the float32 values ``x`` (not NaN); -0.0 sorts just below +0.0."""
    b = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32).astype(np.int64)
    return np.where(b >= 2**31, (2**32 - 1) - b, b + 2**31)


def _from_keys(k: np.ndarray) -> np.ndarray:
    b = np.where(k >= 2**31, k - 2**31, (2**32 - 1) - k).astype(np.uint32)
    return b.view(np.float32)


#: The real inverse of each transform, for a first guess of the threshold (float64).
_GUESS = {"one_minus": lambda v: 1.0 - v, "neg_one_plus": lambda v: -v - 1.0}


def thresholds(values: np.ndarray, f: str, strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """For each value v: the smallest float32 t with ``f(t) < v`` (``<= v`` when not ``strict``),
    and whether there is one (if not, no entry satisfies the predicate).

    ``-t < v`` is ``t > -v``: the next float above ``-v``. The others are bisected over the float32
    bit patterns, evaluating f itself, from a bracket around the real solution (checked; the whole
    range of floats where the check fails)."""
    v = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    shape = np.shape(values)
    if f == "neg":
        w = np.negative(v)
        if strict:
            return np.nextafter(w, np.float32(np.inf)).reshape(shape), (w < np.inf).reshape(shape)
        return w.reshape(shape), np.ones(shape, dtype=bool)
    fn = TRANSFORMS[f]

    def holds(keys: np.ndarray, vv: np.ndarray) -> np.ndarray:
        fx = fn(_from_keys(keys))
        return (fx < vv) if strict else (fx <= vv)

    guess = _GUESS[f](v.astype(np.float64))
    width = 2.0**-18 * np.maximum(1.0, np.abs(guess))
    with np.errstate(over="ignore", invalid="ignore"):
        lo = float_keys((guess - width).astype(np.float32))  # the predicate should fail here ...
        hi = float_keys((guess + width).astype(np.float32))  # ... and hold here
    ok = np.isfinite(guess) & (lo < hi)
    ok[ok] = ~holds(lo[ok], v[ok]) & holds(hi[ok], v[ok])
    lo = np.where(ok, lo, _NEG_INF_KEY - 1)  # the first key where it holds is in (lo, hi]
    hi = np.where(ok, hi, _POS_INF_KEY + 1)  # (these two ends stand for "fails" / "holds")
    todo = np.flatnonzero(hi - lo > 1)
    while len(todo):
        mid = (lo[todo] + hi[todo]) >> 1
        h = holds(mid, v[todo])
        hi[todo[h]] = mid[h]
        lo[todo[~h]] = mid[~h]
        todo = todo[hi[todo] - lo[todo] > 1]
    found = hi <= _POS_INF_KEY
    return _from_keys(np.minimum(hi, _POS_INF_KEY)).reshape(shape), found.reshape(shape)


class HistRows:
    """Bucket histograms of the rows of a float32 block (c, n) and the block itself, for
    :meth:`count_ge`. ``buf`` = (float32 (c, n), int32 (c, n)) scratch arrays, reused when given."""

    def __init__(self, sims: np.ndarray, buf: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        c, n = sims.shape
        self.sims, self.c, self.n = sims, c, n
        self.lo, self.hi = np.float32(sims.min()), np.float32(sims.max())
        span = float(self.hi) - float(self.lo)
        self.scale = np.float32((BUCKETS - 0.5) / span) if span > 0 else np.float32(0.0)
        tmp, keys = buf if buf is not None else (np.empty((c, n), np.float32), np.empty((c, n), np.int32))
        self.keys = keys
        self._bucket(sims, out=tmp)
        np.copyto(keys, tmp, casting="unsafe")  # truncation to 0 .. BUCKETS - 1
        keys += (np.arange(c, dtype=np.int32) * BUCKETS)[:, None]  # one bucket range per row
        hist = torch.bincount(torch.from_numpy(keys.reshape(-1)), minlength=c * BUCKETS).numpy()
        ge = np.zeros((c, BUCKETS + 1), dtype=np.int64)  # ge[r, b]: entries of row r in buckets >= b
        ge[:, :BUCKETS] = np.cumsum(hist.reshape(c, BUCKETS)[:, ::-1], axis=1)[:, ::-1]
        self.ge = ge

    def _bucket(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The bucket of each value in [lo, hi], before truncation: ``(x - lo) * scale`` in float32,
        in [0, BUCKETS - 0.5] up to rounding (the same arithmetic for entries and thresholds: it must
        be one function)."""
        y = np.subtract(x, self.lo, out=out, dtype=np.float32)
        return np.multiply(y, self.scale, out=y)

    def count_ge(self, rows: np.ndarray, t: np.ndarray) -> np.ndarray:
        """For row indices ``rows`` (k,) and float32 thresholds ``t`` (k,): entries of the row >= t."""
        rows = np.asarray(rows, dtype=np.int64)
        t = np.asarray(t, dtype=np.float32)
        inside = np.clip(t, self.lo, self.hi)  # outside [lo, hi] the answer is n or 0, set below
        b = self._bucket(inside).astype(np.int64)
        out = self.ge[rows, b + 1]
        group = rows * BUCKETS + b  # the key bucket of each threshold
        mark = np.zeros(self.c * BUCKETS, dtype=np.uint8)
        mark[group] = 1
        marked = torch.index_select(torch.from_numpy(mark), 0, torch.from_numpy(self.keys.reshape(-1)))
        pos = np.flatnonzero(marked.numpy().view(bool))  # the entries sharing a bucket with a threshold
        member = (self.keys.reshape(-1)[pos].astype(np.int64) << 32) | _canon_keys(self.sims.reshape(-1)[pos])
        member.sort()
        lo = np.searchsorted(member, (group << 32) | _canon_keys(inside), side="left")
        hi = np.searchsorted(member, (group + 1) << 32, side="left")
        return np.where(t <= self.lo, self.n, np.where(t > self.hi, 0, out + (hi - lo)))


def _canon_keys(x: np.ndarray) -> np.ndarray:
    """:func:`float_keys` with -0.0 taken as +0.0 (``>=`` does not tell them apart)."""
    return float_keys(np.add(x, np.float32(0.0), dtype=np.float32))


def count_many(counter: HistRows, requests: list[tuple[np.ndarray, str, bool]]) -> list[np.ndarray]:
    """For each request ``(values, f, strict)``, values (c, P) one row of values per row of the
    block: the entries of that row with ``f(s) < v`` (``<= v`` when not strict), int64 (c, P),
    as :meth:`~dlcr.evaluation.rowcount.SortedRows.count` gives them. One pass for all requests."""
    ts, founds, rows = [], [], []
    for values, f, strict in requests:
        t, found = thresholds(values, f, strict)
        ts.append(t.reshape(-1))
        founds.append(found)
        rows.append(np.repeat(np.arange(values.shape[0], dtype=np.int64), values.shape[1]))
    got = counter.count_ge(np.concatenate(rows), np.concatenate(ts))
    out, at = [], 0
    for (values, _, _), found in zip(requests, founds, strict=True):
        out.append(np.where(found, got[at:at + values.size].reshape(values.shape), 0))
        at += values.size
    return out
