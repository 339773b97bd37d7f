"""The top-k of the query variants' similarity rows from bfloat16 products, exactly.

Refinement needs only the top-k of each variant's similarity row (k = m + the row's junk), with
the float32 values the evaluator's similarity product gives. Computing all of every variant row in
float32 is most of an evaluation's arithmetic (l of its 1 + l products). Here, for a block of
:data:`~dlcr.evaluation.features.SIM_BLOCK` query rows:

1. the bfloat16 product ``a`` of the rows and the gallery is taken (about three times cheaper on
   CPUs with bfloat16 dot products). For rows v and g with float32 product s,
   ``|a - s| <= E0 + E1 |a|`` with ``E0 = (2u + u**2 + 2.1 g_D) |v| |g|`` and
   ``E1 = 2u / (1 - 2u)``, u = 2**-8 (bfloat16's unit roundoff), g_D = D 2**-24 / (1 - D 2**-24):
   rounding both factors to bfloat16 moves each term by at most ``(2u + u**2) |v_i g_i|``, with
   sum_i |v_i g_i| <= |v| |g|; summing D terms in float32, in any order, errs by at most
   ``g_D sum_i |v_i g_i|`` (once in the bfloat16 product, once in the float32 one); rounding the
   result to bfloat16 by at most ``u |a| / (1 - u)`` (twice that allowed, in case it truncates);
2. if B is the k-th largest chunk maximum of ``a`` in a row (chunks of consecutive columns), k
   entries have ``a >= B``, and since ``a - E1 |a|`` grows with a, their float32 values are at least
   ``L = B - E0 - E1 |B|``: so is the row's k-th largest float32 value T. The threshold t solving
   ``t + E1 |t| = L - E0`` (rounded down) then keeps every entry with ``s >= T`` (``a >= t``) and
   leaves out only entries with ``s < t + E0 + E1 |t| = L <= T``: the entries with ``a >= t`` (a
   few dozen per row) hold the top k, and their k-th place is not tied with anything outside them;
3. their float32 values are recomputed exactly: the same product (same routine, same transposes),
   :data:`_GROUP` query rows by :data:`_COLS` gathered gallery rows at a time; the top k is taken
   from them in the documented order (larger first, ties by lower column).

Step 3 relies on the BLAS giving each entry of a product the same bits whatever the product's size
(for sizes of at least 16 rows and columns), and step 1 on a bfloat16 product that accumulates in
float32. Both are checked on the data itself (:meth:`VariantTops.check`): the first block of every
pair is also computed the plain way, its entries recomputed as in step 3 (every column of two row
groups, every row of two column blocks), the bound of step 1 verified on all its entries and both
top-k compared. Any failure, or a CPU without fast bfloat16 products, leaves every block to the
plain way (the results are the same either way; only the time differs). Blocks of fewer rows (the
last one of the queries), pairs with fewer queries than a block, small galleries and features on a
GPU are always done the plain way.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from dlcr.evaluation.candidates import top_k
from dlcr.evaluation.features import SIM_BLOCK, cosine_similarity

__all__ = ["VariantTops", "bf16_is_fast"]

_U = 2.0**-8  # bfloat16's unit roundoff
_E1 = 2 * _U / (1 - 2 * _U)
#: Query rows and gallery columns of every exact recomputation product (at least 16 each: smaller
#: products may take another BLAS path).
_GROUP = 16
_COLS = 1024
#: Columns per chunk when taking chunk maxima of the bfloat16 rows.
_WIDTH = 64

_FAST_BF16: bool | None = None


def bf16_is_fast() -> bool:
    """Whether a bfloat16 product takes well under the time of a float32 one here (measured once)."""
    global _FAST_BF16
    if _FAST_BF16 is None:
        a, b = torch.randn(SIM_BLOCK, 256), torch.randn(256, 8192)
        times = []
        for x, y in ((a, b), (a.bfloat16(), b.bfloat16())):
            torch.matmul(x, y)
            t0 = time.perf_counter()
            for _ in range(3):
                torch.matmul(x, y)
            times.append(time.perf_counter() - t0)
        _FAST_BF16 = times[1] < 0.6 * times[0]
    return _FAST_BF16


class VariantTops:
    """Top-k of the rows of ``v @ gallery.T`` for variant feature rows ``v``, screened in bfloat16
    once :meth:`check` found that safe (and bfloat16 faster), else from the whole float32 product
    (see the module docstring). :meth:`top` may be called from several threads at once."""

    def __init__(self, gallery: torch.Tensor) -> None:
        self.g = gallery.float()
        self.use = False
        self._can = self.g.device.type == "cpu" and len(self.g) >= 4 * _COLS
        self._local = threading.local()
        if self._can:
            self.g16 = self.g.to(torch.bfloat16)
            self.g_norm = float(torch.linalg.vector_norm(self.g, dim=1).max())

    def _buf(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        t = getattr(self._local, name, None)
        if t is None:
            t = torch.empty(shape, dtype=dtype)
            setattr(self._local, name, t)
        return t

    def check(self, v: torch.Tensor, k_rows: np.ndarray, k: int) -> bool:
        """Decide :attr:`use` on a first block of :data:`SIM_BLOCK` variant rows: screening is used
        when bfloat16 products are fast here, the recomputation's products give every entry of the
        plain product of ``v`` bit for bit, the error bound of step 1 holds on every entry, and the
        screened top-k equals the plain one."""
        self.use = False
        if not (self._can and len(v) == SIM_BLOCK and self._screens(k) and bf16_is_fast()):
            return False
        plain = self._plain(v, k)
        full = self._buf("full", (SIM_BLOCK, len(self.g)), torch.float32)
        if not (self._same_bits(v, full) and self._bound_holds(v, full)):
            return False
        screened = self._screened(v, k_rows, k)
        self.use = screened is not None and all(
            np.array_equal(p[r, :n], s[r, :n]) for p, s in zip(plain, screened, strict=True)
            for r, n in enumerate(k_rows))
        return self.use

    def _bound_holds(self, v: torch.Tensor, full: torch.Tensor) -> bool:
        """Whether ``|a - s| <= E0 + E1 |a|`` on every entry of the block (a backend that rounded more
        than step 1 assumes would show here)."""
        approx = torch.matmul(v.to(torch.bfloat16), self.g16.T,
                              out=self._buf("approx", (SIM_BLOCK, len(self.g)), torch.bfloat16)[:len(v)])
        e0 = self._e0(torch.linalg.vector_norm(v.double(), dim=1), v.shape[1]).float()[:, None]
        for lo in range(0, len(v), _GROUP):  # a few rows at a time: small temporaries
            a = approx[lo:lo + _GROUP].float()
            if not bool(((a - full[lo:lo + _GROUP]).abs_() <= e0[lo:lo + _GROUP] + _E1 * a.abs()).all()):
                return False
        return True

    def _e0(self, v_norm: torch.Tensor, dim: int) -> torch.Tensor:
        """Step 1's E0 per row (float64)."""
        gamma = dim * 2.0**-24 / (1 - dim * 2.0**-24)
        return (2 * _U + _U**2 + 2.1 * gamma) * v_norm * self.g_norm + 1e-30  # + what flushing tiny products costs

    def _screens(self, k: int) -> bool:
        return k <= len(self.g) // _WIDTH // 2

    def top(self, v: torch.Tensor, k_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(values, columns)``, float32 and int64 (c, k), for at most :data:`SIM_BLOCK` rows ``v``
        (c, D) starting on a multiple of :data:`SIM_BLOCK`: row r's first ``k_rows[r]`` entries are
        its top ``k_rows[r]`` in the documented order (the rest, up to k, are unspecified)."""
        if self.use and len(v) == SIM_BLOCK and self._screens(k):
            got = self._screened(v, k_rows, k)
            if got is not None:
                return got
        return self._plain(v, k)

    def _plain(self, v: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        full = self._buf("full", (SIM_BLOCK, len(self.g)), torch.float32)
        return top_k(cosine_similarity(v, self.g, out=full[:len(v)]), k)

    def _same_bits(self, v: torch.Tensor, full: torch.Tensor) -> bool:
        """Whether the recomputation's products (:meth:`_exact`'s shapes) give the entries of
        ``full`` (the plain product of the rows ``v``) bit for bit: the first and last
        :data:`_GROUP` rows in every column, every row in the first and last :data:`_COLS` columns."""
        n = len(self.g)
        cols = np.resize(np.arange(n), -(-n // _COLS) * _COLS)
        out = self._buf("out", (_GROUP, _COLS), torch.float32)
        last_group, last_block = len(v) - _GROUP, len(cols) - _COLS
        for lo in range(0, len(v) - _GROUP + 1, _GROUP):
            for j in range(0, len(cols), _COLS):
                if lo not in (0, last_group) and j not in (0, last_block):
                    continue
                sub = self.g.index_select(0, torch.from_numpy(cols[j:j + _COLS]))
                torch.matmul(v[lo:lo + _GROUP], sub.T, out=out)
                m = min(_COLS, n - j)
                if not torch.equal(out[:, :m], full[lo:lo + _GROUP, j:j + m]):
                    return False
        return True

    def _screened(self, v: torch.Tensor, k_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray] | None:
        """The screened top-k, or None when too many entries pass the screen (the plain way is
        faster then)."""
        rows, cols = self._candidates(v, k_rows, k)
        c = len(v)
        if len(rows) > c * len(self.g) // 8:
            return None
        vals = self._exact(v, rows, cols)
        counts = np.bincount(rows, minlength=c)
        width = max(k, int(counts.max()))
        slot = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        cand_v = np.full((c, width), -np.inf, dtype=np.float32)
        cand_c = np.zeros((c, width), dtype=np.int64)
        cand_v[rows, slot], cand_c[rows, slot] = vals, cols  # each row's candidates in column order
        order = np.argsort(np.negative(cand_v), axis=1, kind="stable")[:, :k]
        return np.take_along_axis(cand_v, order, axis=1), np.take_along_axis(cand_c, order, axis=1)

    def _candidates(self, v: torch.Tensor, k_rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(row, column) of every entry passing step 2's screen, sorted by row, then column."""
        c, n = len(v), len(self.g)
        approx = torch.matmul(v.to(torch.bfloat16), self.g16.T,
                              out=self._buf("approx", (SIM_BLOCK, n), torch.bfloat16)[:c])
        n_chunks = n // _WIDTH
        chunks = approx[:, :n_chunks * _WIDTH].reshape(c, n_chunks, _WIDTH)
        cmax = chunks.amax(2).float()
        kth = torch.topk(cmax, k, dim=1).values
        bound = kth.gather(1, torch.from_numpy(np.asarray(k_rows, dtype=np.int64) - 1)[:, None])[:, 0].double()
        thr = self._threshold(bound, torch.linalg.vector_norm(v.double(), dim=1), v.shape[1])
        r_ch, ch = torch.nonzero(cmax >= thr[:, None], as_tuple=True)
        keep = chunks[r_ch, ch].float() >= thr[r_ch, None]  # (pairs, _WIDTH)
        pr, off = torch.nonzero(keep, as_tuple=True)
        rows, cols = r_ch[pr].numpy(), (ch[pr] * _WIDTH + off).numpy()
        if n > n_chunks * _WIDTH:  # the last columns, short of a chunk
            tr, tc = torch.nonzero(approx[:, n_chunks * _WIDTH:].float() >= thr[:, None], as_tuple=True)
            rows = np.concatenate([rows, tr.numpy()])
            cols = np.concatenate([cols, tc.numpy() + n_chunks * _WIDTH])
        order = np.argsort(rows * n + cols, kind="stable")
        return rows[order].astype(np.int64), cols[order].astype(np.int64)

    def _threshold(self, bound: torch.Tensor, v_norm: torch.Tensor, dim: int) -> torch.Tensor:
        """Step 2's threshold t per row (float32, rounded down) from the bound B and the row norms."""
        e0 = self._e0(v_norm, dim)
        y = bound - 2 * e0 - _E1 * bound.abs()
        t = torch.where(y >= 0, y / (1 + _E1), y / (1 - _E1))
        return (t - 1e-6 * (1.0 + t.abs())).float()

    def _exact(self, v: torch.Tensor, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The float32 products ``v[rows] . g[cols]``, computed :data:`_GROUP` rows by :data:`_COLS`
        gathered columns at a time (the last group overlaps the one before, never smaller)."""
        out = np.empty(len(rows), dtype=np.float32)
        buf = self._buf("out", (_GROUP, _COLS), torch.float32)
        c = len(v)
        for g0 in range(0, c, _GROUP):
            lo = min(g0, c - _GROUP)  # rows g0.. are read from the group lo..lo + _GROUP
            a, b = np.searchsorted(rows, [g0, g0 + _GROUP])
            if a == b:
                continue
            uniq, inv = np.unique(cols[a:b], return_inverse=True)
            padded = np.resize(uniq, -(-len(uniq) // _COLS) * _COLS)  # repeats fill the last block
            res = np.empty((_GROUP, len(padded)), dtype=np.float32)
            for j in range(0, len(padded), _COLS):
                sub = self.g.index_select(0, torch.from_numpy(padded[j:j + _COLS]))
                torch.matmul(v[lo:lo + _GROUP], sub.T, out=buf)
                res[:, j:j + _COLS] = buf.numpy()
            out[a:b] = res[rows[a:b] - lo, inv.reshape(-1)]
        return out
