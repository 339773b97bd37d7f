"""The evaluator's scoring of one query/gallery pair: every protocol's metrics, plain and refined.

Exactly the results of :func:`~dlcr.evaluation.pair_reference.score_pair_reference` (the same
similarities, ranks, tie order and float operations), with far fewer passes over the similarities.
Per block of query rows:

* the (1 + l) similarity products, as before (the same row blocks, so the same bits);
* one sort of the block's own similarities: every count of "entries ranked before this one", for
  the plain distance ``1 - s`` and the refined ``-s`` / ``-(1 + s)``, is a binary search in these
  sorted rows (:mod:`dlcr.evaluation.rowcount`); no distance matrix, negated copy or refined matrix
  is built (the refined one only when the caller keeps it);
* the same-person entries of each query (good and junk under every mode) from the per-person index
  of the gallery and the integer label arrays, once per block for all protocols;
* the top-(m + J) of every similarity matrix once per block (:func:`~dlcr.evaluation.candidates.top_k`,
  J = the most junk entries of any query), from which each protocol takes its top-m without its
  junk; Algorithm 1's scores then come from :func:`~dlcr.evaluation.refinement.combine_scores`;
* the refined ranks: refinement changes only the m top entries of a row, so the counts in the
  sorted rows are corrected by those m entries.

Inputs the fast path does not take (empty splits, features that are not finite or whose products
could overflow) go to the reference, which also raises its errors for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.blocks import RANKS, query_rows_per_block
from dlcr.evaluation.candidates import top_k
from dlcr.evaluation.features import Features, cosine_similarity
from dlcr.evaluation.metrics import RankAccumulator, normalise_mode
from dlcr.evaluation.pair_reference import score_pair_reference
from dlcr.evaluation.ranking import _good_mask, _person_index
from dlcr.evaluation.refinement import VARIANTS, combine_scores
from dlcr.evaluation.rowcount import TRANSFORMS, SortedRows, ties_before
from dlcr.types import EvalProtocol

__all__ = ["score_pair"]

#: Feature norms whose products stay below this give finite similarities and distances.
_SAFE_PRODUCT = 1e18


@dataclass(frozen=True)
class _Labels:
    """The pair's labels as the scoring uses them."""

    qp: np.ndarray
    qc: np.ndarray
    ql: np.ndarray
    gp: np.ndarray
    gc: np.ndarray
    gl: np.ndarray
    codes: np.ndarray  # (n_gallery,) person code of every gallery item
    qcode: np.ndarray  # (n_query,) the query's person code, -1 if the gallery lacks the person
    table: np.ndarray  # per person code, its gallery columns (increasing), -1 padded; one extra empty row
    qrow: np.ndarray  # (n_query,) each query's row of the table


def _labels(q: Features, g: Features) -> _Labels:
    qp, gp = np.asarray(q.pids).reshape(-1), np.asarray(g.pids).reshape(-1)
    uniq, codes = np.unique(gp, return_inverse=True)
    table, qrow = _person_index(gp, qp)
    qcode = np.where(qrow < len(uniq), qrow, -1)
    return _Labels(qp, np.asarray(q.camids).reshape(-1), np.asarray(q.clothes_ids).reshape(-1), gp,
                   np.asarray(g.camids).reshape(-1), np.asarray(g.clothes_ids).reshape(-1),
                   codes.reshape(-1), qcode, table, qrow)


class _Same:
    """Same-person entries of the query rows ``r0:r1``: ``cols`` (c, P) gallery columns (0 where
    ``valid`` is false), and their good matches under each mode."""

    def __init__(self, lab: _Labels, r0: int, r1: int) -> None:
        cols = lab.table[lab.qrow[r0:r1]]
        self.valid = cols >= 0
        self.cols = np.where(self.valid, cols, 0)
        self.same_cam = lab.gc[self.cols] == lab.qc[r0:r1, None]
        self.same_cl = lab.gl[self.cols] == lab.ql[r0:r1, None]
        self._good: dict[str, np.ndarray] = {}

    def good(self, mode: str) -> np.ndarray:
        if mode not in self._good:
            same_cl = None if mode == "standard" else self.same_cl
            self._good[mode] = self.valid & _good_mask(self.same_cam, same_cl, mode)
        return self._good[mode]

    def junk_counts(self, mode: str) -> np.ndarray:
        return (self.valid & ~self.good(mode)).sum(1)


def _bounded(x: torch.Tensor) -> float:
    """The largest row norm of ``x`` (NaN or inf when an entry is not finite)."""
    if x.numel() == 0:
        return 0.0
    return float(torch.linalg.vector_norm(x.float(), dim=-1).max())


def _fast_path_applies(q: Features, g: Features, variants: torch.Tensor | None) -> bool:
    if len(q) == 0 or len(g) == 0:
        return False
    qn = max(_bounded(q.feats), _bounded(variants) if variants is not None else 0.0)
    return bool(qn * _bounded(g.feats) < _SAFE_PRODUCT)  # False for NaN / inf


def _ranked(d: np.ndarray, valid: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, ...]:
    """Same-person entries ordered by (distance, column): ``(order, distances, columns, valid)``."""
    order = np.argsort(np.where(valid, d, np.inf), axis=1, kind="stable")
    return (order, np.take_along_axis(d, order, axis=1), np.take_along_axis(cols, order, axis=1),
            np.take_along_axis(valid, order, axis=1))


def _add(acc: RankAccumulator, good: np.ndarray, before: np.ndarray, n_gallery: int) -> None:
    has = good.any(1)
    acc.add_ranks(good[has], before[has], len(good), n_gallery)


def _plain_block(same: _Same, s0: np.ndarray, srt: SortedRows, protocols: list[EvalProtocol],
                 modes: dict[str, str], plain: dict[str, RankAccumulator]) -> np.ndarray:
    """Rank every protocol's plain distances ``1 - s`` of the block; returns the block's
    same-person similarities (c, P)."""
    c, ng = s0.shape
    s_same = np.take_along_axis(s0, same.cols, axis=1)
    order, d, cols, valid = _ranked(TRANSFORMS["one_minus"](s_same), same.valid, same.cols)
    before = _before(srt, s0, d, cols, valid, "one_minus")
    for p in protocols:
        _add(plain[p.name], np.take_along_axis(same.good(modes[p.name]), order, axis=1), before, ng)
    return s_same


def _before(srt: SortedRows, s0: np.ndarray, d: np.ndarray, cols: np.ndarray, valid: np.ndarray, f: str,
            top: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Entries of each distance row ranked before each same-person entry (distance ``d``, column
    ``cols``): smaller distances, and equal ones at lower columns. The row is ``f(s0)``, except with
    ``top = (columns, old distances, new distances)``, each (c, m), where refinement changed it."""
    rows = np.arange(len(d))
    lt, le = srt.count(rows, d, f, strict=True), srt.count(rows, d, f, strict=False)
    if top is not None:
        _, old, new = top
        v = d[:, :, None]
        lt = lt - (old[:, None, :] < v).sum(-1) + (new[:, None, :] < v).sum(-1)
        le = le - (old[:, None, :] <= v).sum(-1) + (new[:, None, :] <= v).sum(-1)
    before = lt.astype(np.int64)
    tied = valid & (le - lt > 1)  # another entry has exactly this distance: count lower columns
    if tied.any():
        tr, tc = np.nonzero(tied)
        patch = None if top is None else (top[0], top[2])
        before[tr, tc] += ties_before(s0, tr, cols[tr, tc], d[tr, tc], f, patch)
    return before


@dataclass
class _Refining:
    """What refinement needs for the whole pair: per protocol its m, whether it excludes junk, its
    accumulator and prediction tally, and the kept refined matrices."""

    variant: str
    exclude_junk: bool
    m: dict[str, int]
    k: int  # candidates per matrix and row: enough for every protocol's top-m after its exclusions
    acc: dict[str, RankAccumulator]
    hits: dict[str, list[int]]
    kept: dict[str, np.ndarray]


def _refining(lab: _Labels, protocols: list[EvalProtocol], modes: dict[str, str], m: int, variant: str,
              exclude_junk: bool, keep: bool) -> _Refining:
    nq, ng = len(lab.qp), len(lab.gp)
    whole = _Same(lab, 0, nq)
    m_eff, most = {}, 0
    for p in protocols:  # refinement's m is capped by the query with the fewest selectable items
        junk = int(whole.junk_counts(modes[p.name]).max()) if exclude_junk else 0
        if ng - junk < 1:
            raise InputError("a query has every gallery item excluded; nothing to refine with")
        m_eff[p.name] = min(int(m), ng - junk)
        most = max(most, junk)
    if variant not in VARIANTS:
        raise InputError(f"unknown refinement variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if min(m_eff.values()) < 1:
        raise InputError(f"m must be >= 1, got {min(m_eff.values())}")
    return _Refining(variant, exclude_junk, m_eff, max(m_eff.values()) + most,
                     {p.name: RankAccumulator(modes[p.name]) for p in protocols},
                     {p.name: [0, 0] for p in protocols},
                     {p.name: np.empty((nq, ng), dtype=np.float32) for p in protocols} if keep else {})


def _top_m(lab: _Labels, r0: int, r1: int, vals: np.ndarray, cols: np.ndarray, m: int, mode: str | None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Each matrix's top-m of the block (``vals``/``cols``: (c, 1 + l, k) candidates in ranking
    order), without the entries that are junk under ``mode`` (None: nothing excluded)."""
    if mode is not None:
        same = lab.codes[cols] == lab.qcode[r0:r1, None, None]
        same_cl = None if mode == "standard" else lab.gl[cols] == lab.ql[r0:r1, None, None]
        junk = same & ~_good_mask(lab.gc[cols] == lab.qc[r0:r1, None, None], same_cl, mode)
        keep = np.argsort(junk, axis=2, kind="stable")[:, :, :m]  # kept candidates first, in order
        return np.take_along_axis(vals, keep, axis=2), np.take_along_axis(cols, keep, axis=2)
    return vals[:, :, :m], cols[:, :, :m]


def _refined_block(ref: _Refining, lab: _Labels, same: _Same, s0: np.ndarray, s_same: np.ndarray,
                   srt: SortedRows, cand: tuple[np.ndarray, np.ndarray], p: EvalProtocol, mode: str,
                   r0: int) -> None:
    """Refine the block's queries under protocol ``p`` and rank the refined distances."""
    c, ng = s0.shape
    vals, idx = _top_m(lab, r0, r0 + c, cand[0], cand[1], ref.m[p.name], mode if ref.exclude_junk else None)
    score, raised = combine_scores(vals.astype(np.float64), idx, lab.codes, ref.variant)
    topm, new = idx[:, 0, :], raised.astype(np.float32)
    f = "neg" if ref.variant == "paper" else "neg_one_plus"
    fn = TRANSFORMS[f]
    neg_new = np.negative(new)
    hit = (same.cols[:, :, None] == topm[:, None, :]) & same.valid[:, :, None]
    d = np.where(hit.any(2), np.take_along_axis(neg_new, hit.argmax(2), axis=1), fn(s_same))
    order, d, cols, valid = _ranked(d, same.valid, same.cols)
    before = _before(srt, s0, d, cols, valid, f, (topm, fn(np.take_along_axis(s0, topm, axis=1)), neg_new))
    good = same.good(mode)
    _add(ref.acc[p.name], np.take_along_axis(good, order, axis=1), before, ng)
    has_good = good.any(1)
    pred = lab.gp[idx[np.arange(c), 0, np.argmax(score, axis=1)]]  # first maximum: earliest in the ranking
    ref.hits[p.name][0] += int(np.count_nonzero(pred[has_good] == lab.qp[r0:r0 + c][has_good]))
    ref.hits[p.name][1] += int(np.count_nonzero(has_good))
    if p.name in ref.kept:
        out = ref.kept[p.name][r0:r0 + c]
        if ref.variant == "paper":
            np.copyto(out, s0)
        else:
            np.add(s0, np.float32(1.0), out=out, dtype=np.float32)
        np.put_along_axis(out, topm, new, axis=1)


def score_pair(q: Features, g: Features, protocols: list[EvalProtocol], variants: torch.Tensor | None, *,
               m: int, variant: str, exclude_junk: bool, keep_refined: bool,
               max_memory_gb: float | None) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Metrics (and, with variants, refined metrics) of every protocol on one query/gallery pair, a
    block of query rows at a time. Returns ``(results, refined similarity matrices)``, as
    :func:`~dlcr.evaluation.pair_reference.score_pair_reference` does."""
    if not _fast_path_applies(q, g, variants):
        return score_pair_reference(q, g, protocols, variants, m=m, variant=variant, exclude_junk=exclude_junk,
                                    keep_refined=keep_refined, max_memory_gb=max_memory_gb)
    nq, ng = len(q), len(g)
    n_var = 0 if variants is None else int(variants.shape[0])
    rows = query_rows_per_block(nq, ng, n_var, max_memory_gb)
    lab = _labels(q, g)
    modes = {p.name: normalise_mode(p.mode) for p in protocols}
    plain = {p.name: RankAccumulator(modes[p.name]) for p in protocols}
    ref = None if variants is None else _refining(lab, protocols, modes, m, variant, exclude_junk, keep_refined)
    stack = torch.empty(1 + n_var, rows, ng)  # stack[0]: the queries' own similarities
    srt_buf = np.empty((rows, ng), dtype=np.float32)
    for r0 in range(0, nq, rows):
        r1 = min(nq, r0 + rows)
        c = r1 - r0
        s0 = cosine_similarity(q.feats[r0:r1], g.feats, out=stack[0, :c]).numpy()
        srt = SortedRows(s0, srt_buf[:c])
        same = _Same(lab, r0, r1)
        s_same = _plain_block(same, s0, srt, protocols, modes, plain)
        if ref is None or variants is None:
            continue
        for k in range(n_var):
            cosine_similarity(variants[k, r0:r1], g.feats, out=stack[1 + k, :c])
        tops = [top_k(stack[k, :c], ref.k) for k in range(1 + n_var)]
        cand = (np.stack([t[0] for t in tops], axis=1), np.stack([t[1] for t in tops], axis=1))
        for p in protocols:
            _refined_block(ref, lab, same, s0, s_same, srt, cand, p, modes[p.name], r0)
    results: dict[str, dict[str, Any]] = {}
    for p in protocols:
        results[p.name] = plain[p.name].result().as_dict(RANKS)
        if ref is not None:
            out = ref.acc[p.name].result().as_dict(RANKS)
            out["pred_top1"] = ref.hits[p.name][0] / ref.hits[p.name][1]
            results[f"{p.name}_refined"] = out
    return results, ref.kept if ref is not None else {}
