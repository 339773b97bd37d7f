"""Prediction refinement with clothes-changed query variants (DLCR, Algorithm 1; docs/design.md §8).

Input: ``sims`` of shape (1 + l, n_query, n_gallery); ``sims[0]`` holds the cosine similarities of
the original queries, ``sims[k]`` those of each query's k-th clothes-changed variant.

``variant="paper"`` (Algorithm 1). I_k = top-m gallery items of matrix k. Subjects S = persons in
I_0. ``score[s] = sum_{j in I_0, pid_j = s} cos_0j / max_{I_0} cos_0``; then for every variant k
and every s in S: ``score[s] += sum_{j in I_k, pid_j = s} cos_kj / max_{I_k} cos_k``. Subjects
outside S are ignored. Refined similarity: each original top-m entry j becomes
``max(score[pid_j], cos_0j)``; every other entry keeps ``cos_0j``.

``variant="official"`` (what the released code computes). Similarities are ``1 + cos``. Within
each top-m, a subject keeps its *maximum* similarity ``x_k[s]``. Scores start at ``x_0[s]`` for s
in S; then for every matrix *including the original* each s in S present in I_k gains
``x_k[s]**2 / max_{I_k}(1 + cos)``. Refined similarity: original top-m entries become
``max(score, 1 + cos)``, the others ``1 + cos`` -- so ``.sims`` is on the 1 + cos scale here.

Prediction: ``argmax`` of the score.

Tie rules (both implementations, so they agree exactly):

* top-m: larger similarity first, equal similarities by lower gallery index (the order of
  ``np.argsort(-row, kind="stable")``). The vectorised path takes ``torch.topk`` of m + 1 (plus
  the row's exclusions, which it then drops) and redoes, with a stable sort, only the rows where
  the m-th value ties the next one.
* argmax: among subjects with equal scores the one appearing first in the original top-m ranking.
* sums are accumulated sequentially: within a matrix in top-m order, then across matrices in
  order 0..l (official: the initial ``x_0`` first, then the gains of matrices 0..l).

Scores are computed in float64 from the given similarities; refined similarities are float32.
``m`` larger than the number of selectable gallery items is reduced to that number. Similarities
must not be NaN or +inf (outside excluded entries), and no top-m entry may be -inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from dlcr.errors import InputError

__all__ = ["VARIANTS", "Refinement", "combine_scores", "refine", "refine_reference"]

VARIANTS = ("paper", "official")
_NONFINITE = "sims contains NaN or +inf, or -inf among a top-m (outside excluded entries)"


@dataclass(frozen=True)
class Refinement:
    """Result of :func:`refine`.

    ``pred_pids`` (n_query,) predicted person ids; ``sims`` (n_query, n_gallery) float32 refined
    similarities (larger = closer; use ``-sims`` as a distance); ``topm`` (n_query, m) the original
    queries' top-m gallery indices in ranking order; ``scores`` (n_query, m) float64 score of the
    subject of each of those entries.
    """

    pred_pids: np.ndarray
    sims: np.ndarray
    topm: np.ndarray
    scores: np.ndarray


def _as_tensor(sims: Any) -> Any:
    import torch

    t = sims.detach().cpu() if isinstance(sims, torch.Tensor) else torch.from_numpy(np.asarray(sims))
    if not (t.is_floating_point()):
        t = t.double()
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    return t


class _Excluded:
    """Gallery items a query may not select, kept as sorted ``row * n_gallery + col`` keys."""

    def __init__(self, keys: np.ndarray, nq: int, ng: int) -> None:
        self.keys, self.nq, self.ng = keys, nq, ng
        self.counts = np.bincount(keys // ng, minlength=nq) if len(keys) else np.zeros(nq, dtype=np.int64)

    @classmethod
    def build(cls, exclude: Any, nq: int, ng: int) -> _Excluded:
        if isinstance(exclude, tuple):  # (rows, cols) of the excluded entries
            if len(exclude) != 2:
                raise InputError("exclude as a tuple must be (rows, cols)")
            rows = np.asarray(exclude[0], dtype=np.int64).reshape(-1)
            cols = np.asarray(exclude[1], dtype=np.int64).reshape(-1)
            if rows.shape != cols.shape:
                raise InputError(f"exclude rows and cols differ in length: {len(rows)} vs {len(cols)}")
            if len(rows) and (rows.min() < 0 or rows.max() >= nq or cols.min() < 0 or cols.max() >= ng):
                raise InputError(f"exclude indices must lie within {(nq, ng)}")
            return cls(np.unique(rows * ng + cols), nq, ng)
        dense = np.asarray(exclude, dtype=bool)
        if dense.shape != (nq, ng):
            raise InputError(f"exclude must have shape {(nq, ng)}, got {dense.shape}")
        return cls(np.flatnonzero(dense).astype(np.int64), nq, ng)

    def dense(self) -> np.ndarray:
        out = np.zeros(self.nq * self.ng, dtype=bool)
        out[self.keys] = True
        return out.reshape(self.nq, self.ng)

    def contains(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whether each (row, col) pair is excluded (any shapes that broadcast)."""
        if not len(self.keys):
            return np.zeros(np.broadcast(rows, cols).shape, dtype=bool)
        k = rows * self.ng + cols
        pos = np.minimum(np.searchsorted(self.keys, k), len(self.keys) - 1)
        return self.keys[pos] == k


def _check(sims: Any, g_pids: Any, m: int, variant: str, exclude: Any) -> tuple[Any, ...]:
    if variant not in VARIANTS:
        raise InputError(f"unknown refinement variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    t = _as_tensor(sims)
    if t.ndim != 3:
        raise InputError(f"sims must have shape (1 + l, n_query, n_gallery), got {tuple(t.shape)}")
    n_mat, nq, ng = t.shape
    if n_mat == 0 or nq == 0 or ng == 0:
        raise InputError(f"sims is empty (shape {tuple(t.shape)})")
    gp = np.asarray(g_pids.detach().cpu().numpy() if hasattr(g_pids, "detach") else g_pids).reshape(-1)
    if len(gp) != ng:
        raise InputError(f"g_pids has {len(gp)} entries but sims has {ng} gallery columns")
    if int(m) < 1:
        raise InputError(f"m must be >= 1, got {m}")
    excl = None
    n_free = ng
    if exclude is not None:
        excl = _Excluded.build(exclude, nq, ng)
        n_free = int(ng - excl.counts.max())
        if n_free == 0:
            raise InputError("a query has every gallery item excluded; nothing to refine with")
    return t, gp, min(int(m), n_free), excl


def _stable_top(row: np.ndarray, m: int) -> np.ndarray:
    """Indices of the m largest entries, larger first, ties by lower index."""
    return np.argsort(-row, kind="stable")[:m]


# --------------------------------------------------------------------------------------------
# plain reference


def refine_reference(sims: Any, g_pids: Any, m: int = 5, variant: str = "paper",
                     exclude: Any = None) -> Refinement:
    """One query at a time, with dictionaries: a literal transcription of the rules above."""
    t, gp, m, excluded = _check(sims, g_pids, m, variant, exclude)
    excl = None if excluded is None else excluded.dense()
    s = t.numpy()
    n_mat, nq, ng = s.shape
    out = np.empty((nq, ng), dtype=np.float32)
    preds = np.empty(nq, dtype=gp.dtype)
    topm = np.empty((nq, m), dtype=np.int64)
    scores = np.empty((nq, m), dtype=np.float64)
    for q in range(nq):
        rows = [s[k, q] if excl is None else np.where(excl[q], -np.inf, s[k, q]) for k in range(n_mat)]
        tops = [_stable_top(r, m) for r in rows]
        if any(np.isnan(r).any() or np.isposinf(r).any() or not np.isfinite(r[top]).all()
               for r, top in zip(rows, tops, strict=True)):
            raise InputError(_NONFINITE)
        score: dict[Any, float] = {}
        if variant == "paper":
            for k in range(n_mat):
                top, row = tops[k], rows[k]
                mx = float(row[top[0]])
                if mx <= 0:
                    raise InputError("the paper refinement needs a positive top-1 similarity per matrix")
                inner: dict[Any, float] = {}
                for j in top:
                    if k == 0 or gp[j] in score:
                        inner[gp[j]] = inner.get(gp[j], 0.0) + float(row[j]) / mx
                if k == 0:
                    score = inner
                else:
                    for subj, v in inner.items():
                        score[subj] += v
            base = s[0, q].astype(np.float32)
            base_top = [float(s[0, q, j]) for j in tops[0]]
        else:
            best_sim: list[dict[Any, float]] = []
            for k in range(n_mat):
                per: dict[Any, float] = {}
                for j in tops[k]:
                    per[gp[j]] = max(per.get(gp[j], -np.inf), 1.0 + float(rows[k][j]))
                best_sim.append(per)
            score = dict(best_sim[0])
            for k in range(n_mat):
                mx = 1.0 + float(rows[k][tops[k][0]])
                if mx <= 0:
                    raise InputError("the official refinement needs a top-1 similarity above -1 per matrix")
                for subj, x in best_sim[k].items():
                    if subj in score:
                        score[subj] += x * x / mx
            base = s[0, q].astype(np.float32) + np.float32(1.0)
            base_top = [1.0 + float(s[0, q, j]) for j in tops[0]]
        best_subj, best_val = None, -np.inf
        for subj, v in score.items():
            if v > best_val:
                best_subj, best_val = subj, v
        preds[q] = best_subj
        for i, j in enumerate(tops[0]):
            base[j] = np.float32(max(score[gp[j]], base_top[i]))
            scores[q, i] = score[gp[j]]
        out[q] = base
        topm[q] = tops[0]
    return Refinement(pred_pids=preds, sims=out, topm=topm, scores=scores)


# --------------------------------------------------------------------------------------------
# vectorised


def _top_m(mat: Any, m: int, excl: _Excluded | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Top-m values (float64) and indices of each row of a (nq, ng) tensor, in the documented order,
    skipping excluded entries.

    ``torch.topk`` takes m + 1 + (the most exclusions of any row) candidates, the excluded ones are
    dropped, and rows where the m-th kept value ties the next candidate (or the last one topk took,
    beyond which equal values may lie) are redone with a stable sort: the matrix is never copied.
    """
    import torch

    nq, ng = mat.shape
    j = int(excl.counts.max()) if excl is not None and len(excl.keys) else 0
    kk = min(m + 1 + j, ng)
    vals_t, idx_t = torch.topk(mat, kk, dim=1, largest=True, sorted=True)
    vals, idx = vals_t.numpy(), idx_t.numpy()
    rows = np.arange(nq)[:, None]
    if j:
        bad = excl.contains(rows, idx)  # type: ignore[union-attr]
        keep = np.argsort(bad, axis=1, kind="stable")  # kept candidates first, in topk order
        vals, idx = np.take_along_axis(vals, keep, 1), np.take_along_axis(idx, keep, 1)
        avail = kk - bad.sum(1)  # >= m: m was capped at the fewest selectable items of a row
    else:
        avail = np.full(nq, kk)
    if not np.isfinite(vals[:, :m]).all():  # torch.topk ranks NaN above everything: NaN always shows here
        raise InputError(_NONFINITE)
    boundary = vals_t.numpy()[:, kk - 1]
    nxt = np.where(avail > m, vals[:, min(m, kk - 1)], -np.inf)
    tied = np.flatnonzero((vals[:, m - 1] == nxt) | ((kk < ng) & (vals[:, m - 1] == boundary)))
    vals, idx = vals[:, :m].copy(), idx[:, :m].copy()
    if len(tied):  # the m-th place is shared: redo those rows exactly
        full = mat[torch.from_numpy(tied)].numpy().astype(np.float64)
        if excl is not None:
            full[excl.contains(tied[:, None], np.arange(ng)[None, :])] = -np.inf
        exact = np.argsort(-full, axis=1, kind="stable")[:, :m]
        idx[tied] = exact
        vals[tied] = np.take_along_axis(full, exact, axis=1)
    order = np.lexsort((idx, -vals), axis=-1)  # value desc, then index asc
    return (np.take_along_axis(vals, order, axis=1).astype(np.float64),
            np.take_along_axis(idx, order, axis=1).astype(np.int64))


def combine_scores(vals: np.ndarray, idx: np.ndarray, codes: np.ndarray, variant: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The scores of Algorithm 1 from every matrix's top-m: ``vals`` (nq, 1 + l, m) float64 similarities
    and ``idx`` their gallery columns, in the documented order; ``codes`` the gallery's person codes.
    Returns ``(score, raised)``, both (nq, m) float64: the score of the subject of each original top-m
    entry, and the refined similarity of that entry (before its float32 rounding)."""
    pc = codes[idx]  # (nq, L, m) subject of every candidate
    slot = pc[:, 0, :]  # (nq, m) subjects of the original top-m, in ranking order
    same = pc[:, None, :, :] == slot[:, :, None, None]  # (nq, slot, L, m)
    if variant == "paper":
        mx = vals[:, :, :1]
        if not (mx > 0).all():
            raise InputError("the paper refinement needs a positive top-1 similarity per matrix")
        w = vals / mx
        inner = np.cumsum(np.where(same, w[:, None], 0.0), axis=-1)[..., -1]  # (nq, slot, L)
        score = np.cumsum(inner, axis=-1)[..., -1]
        return score, np.maximum(score, vals[:, 0, :])
    v = 1.0 + vals
    mx = v[:, :, 0]  # (nq, L)
    if not (mx > 0).all():
        raise InputError("the official refinement needs a top-1 similarity above -1 per matrix")
    present = same.any(-1)  # (nq, slot, L)
    best = np.where(same, v[:, None], -np.inf).max(-1)
    with np.errstate(invalid="ignore", over="ignore"):
        gain = np.where(present, best * best / mx[:, None, :], 0.0)
    score = np.cumsum(np.concatenate([best[:, :, :1], gain], axis=-1), axis=-1)[..., -1]
    return score, np.maximum(score, v[:, 0, :])


def refine(sims: Any, g_pids: Any, m: int = 5, variant: str = "paper", exclude: Any = None,
           out: np.ndarray | None = None) -> Refinement:
    """Refine predictions with query variants, vectorised over queries (see the module docstring).

    ``sims``: (1 + l, n_query, n_gallery) numpy array or torch tensor of cosine similarities, index 0
    the original queries. ``g_pids``: (n_gallery,). ``exclude``: gallery items a query may not select
    (e.g. junk under the evaluation rule), as a boolean (n_query, n_gallery) mask or as a
    ``(rows, cols)`` pair of index arrays; excluded entries keep their original value in ``.sims``.
    ``out``: a float32 (n_query, n_gallery) array to write ``.sims`` into (saves an allocation when
    called block after block). Gives the same result as :func:`refine_reference`, bit for bit.
    """
    t, gp, m, excl = _check(sims, g_pids, m, variant, exclude)
    n_mat, nq, ng = t.shape
    if out is not None and (out.shape != (nq, ng) or out.dtype != np.float32):
        raise InputError(f"out must be a float32 array of shape {(nq, ng)}, got {out.dtype} {out.shape}")
    vals = np.empty((nq, n_mat, m), dtype=np.float64)
    idx = np.empty((nq, n_mat, m), dtype=np.int64)
    for k in range(n_mat):
        vals[:, k], idx[:, k] = _top_m(t[k], m, excl)
    _, codes = np.unique(gp, return_inverse=True)
    score, raised = combine_scores(vals, idx, codes.reshape(-1), variant)
    s0 = t[0].numpy()
    if variant == "paper":
        if out is None:
            out = s0.astype(np.float32, copy=True)
        else:
            np.copyto(out, s0, casting="same_kind")
    else:
        out = np.add(s0, np.float32(1.0), out=out, dtype=np.float32)  # float32 arithmetic, as the reference
    rows = np.arange(nq)
    pick = np.argmax(score, axis=1)  # first maximum = earliest in the original ranking
    out[rows[:, None], idx[:, 0, :]] = raised.astype(np.float32)
    return Refinement(pred_pids=gp[idx[rows, 0, pick]], sims=out, topm=idx[:, 0, :].copy(), scores=score)
