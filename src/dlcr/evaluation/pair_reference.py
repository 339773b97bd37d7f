"""The plain reference of the evaluator's scoring: the computation as it was before
:mod:`dlcr.evaluation.pair_scoring` (kept for tests and benchmarks, and for inputs the fast path
leaves to it: non-finite or unbounded features, empty splits).

Per block of query rows: the distance matrix ``1 - s`` and one full sort of the block's
similarities; per protocol the plain ranking through :class:`~dlcr.evaluation.metrics.RankAccumulator`
(whose counts come from the sorted rows, transformed and reversed), the junk matches through
:func:`~dlcr.evaluation.metrics.same_person_matches`, :func:`~dlcr.evaluation.refinement.refine` on
the (1 + l) similarity stack and the ranking of the negated refined similarities. The fast path
gives exactly its results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.blocks import RANKS, query_rows_per_block
from dlcr.evaluation.features import Features, cosine_similarity
from dlcr.evaluation.metrics import (
    RankAccumulator,
    junk_counts,
    normalise_mode,
    same_person_matches,
    sorted_counts,
)
from dlcr.evaluation.refinement import refine
from dlcr.types import EvalProtocol

__all__ = ["reference_bytes_per_query_row", "score_pair_reference"]


def reference_bytes_per_query_row(n_gallery: int, n_variants: int) -> int:
    """Bytes one query row of a block costs the reference: float32 similarities, distances and sorted
    similarities (and, with l variants, the variants' similarities, refined similarities and their
    negation), plus the finiteness check's and one ranking pass's temporaries."""
    floats = 3 + ((1 + n_variants) + 2 if n_variants else 0)
    return int(n_gallery) * (4 * floats + 2)


def _one_minus(x: np.ndarray) -> np.ndarray:
    return np.subtract(np.float32(1.0), x)  # float32, as cosine_distance's (-s) + 1


def _refined_base(variant: str) -> Any:
    """The refined distance ``-sims`` of an entry refinement left alone, from its similarity s:
    ``-s`` (paper) or ``-(1 + s)`` in float32 (official, whose ``.sims`` are on the 1 + cos scale)."""
    if variant == "paper":
        return np.negative
    return lambda x: np.negative(np.add(x, np.float32(1.0), dtype=np.float32))


def _sorted_transform_counts(srt: np.ndarray, f: Any) -> Any:
    """Rank counts in rows of ``f(s)``, for a decreasing elementwise ``f``, from the ascending rows
    ``srt`` of ``s``: ``f`` of the reversed rows is sorted (float rounding keeps it monotone), so
    no row is sorted again."""
    def counts(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return sorted_counts(f(srt[rows, ::-1]), values)

    return counts


def _refined_counts(srt: np.ndarray, s0: np.ndarray, neg: np.ndarray, topm: np.ndarray, variant: str) -> Any:
    """Rank counts in rows of the refined distances ``neg``: they are ``base(s0)`` except at each
    row's original top-m columns, so the counts of ``base(s0)`` (from its sorted rows) are corrected
    by the m entries refinement changed."""
    base = _refined_base(variant)
    plain = _sorted_transform_counts(srt, base)

    def counts(rows: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lt, le = plain(rows, values)
        cols = topm[rows]
        old = base(s0[rows[:, None], cols])[:, None, :]  # (n, 1, m) what the sorted rows hold there
        new = neg[rows[:, None], cols][:, None, :]  # what the refined rows hold
        v = values[:, :, None]
        lt = lt - (old < v).sum(-1) + (new < v).sum(-1)
        le = le - (old <= v).sum(-1) + (new <= v).sum(-1)
        return lt, le

    return counts


def _labels(f: Features, r0: int = 0, r1: int | None = None) -> tuple[Any, Any, Any]:
    return f.pids[r0:r1], f.camids[r0:r1], f.clothes_ids[r0:r1]


def score_pair_reference(q: Features, g: Features, protocols: list[EvalProtocol], variants: torch.Tensor | None, *,
                m: int, variant: str, exclude_junk: bool, keep_refined: bool,
                max_memory_gb: float | None) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Metrics (and, with variants, refined metrics) of every protocol on one query/gallery pair,
    a block of query rows at a time. Returns ``(results, refined similarity matrices)``."""
    nq, ng = len(q), len(g)
    n_var = 0 if variants is None else int(variants.shape[0])
    rows = query_rows_per_block(nq, ng, n_var, max_memory_gb, per_row=reference_bytes_per_query_row)
    gp, gc, gl = _labels(g)
    modes = {p.name: normalise_mode(p.mode) for p in protocols}
    plain = {p.name: RankAccumulator(modes[p.name]) for p in protocols}
    refined = {p.name: RankAccumulator(modes[p.name]) for p in protocols} if variants is not None else {}
    hits = {name: [0, 0] for name in refined}  # refined predictions that are the query's person, queries
    kept = {name: np.empty((nq, ng), dtype=np.float32) for name in refined} if keep_refined else {}
    m_eff = {}
    for name in refined:  # refinement's m is capped by the query with the fewest selectable items
        qp, qc, ql = _labels(q)
        free = ng - (junk_counts(qp, gp, qc, gc, ql, gl, mode=modes[name]).max() if exclude_junk else 0)
        if free < 1:
            raise InputError("a query has every gallery item excluded; nothing to refine with")
        m_eff[name] = min(int(m), int(free))
    # one set of buffers for all blocks (a fresh large array per block costs its page faults again)
    stack = torch.empty(1 + n_var, rows, ng)  # stack[0]: the queries' own similarities
    dist_buf = torch.empty(rows, ng)
    srt_buf = np.empty((rows, ng), dtype=np.float32)
    ref_buf = np.empty((rows, ng), dtype=np.float32) if variants is not None else None
    neg_buf = np.empty((rows, ng), dtype=np.float32) if variants is not None else None
    for r0 in range(0, nq, rows):
        r1 = min(nq, r0 + rows)
        c = r1 - r0
        qp, qc, ql = _labels(q, r0, r1)
        sim0 = cosine_similarity(q.feats[r0:r1], g.feats, out=stack[0, :c])
        dist = torch.neg(sim0, out=dist_buf[:c]).add_(1.0)  # the arithmetic of cosine_distance
        srt = srt_buf[:c]
        np.copyto(srt, sim0.numpy())
        srt.sort(axis=1)  # the block's one sort: every protocol's ranks, plain and refined, come from it
        plain_counts = _sorted_transform_counts(srt, _one_minus)
        for p in protocols:
            plain[p.name].add(dist, qp, gp, qc, gc, ql, gl, counts=plain_counts)
        if variants is None:
            continue
        for k in range(n_var):
            cosine_similarity(variants[k, r0:r1], g.feats, out=stack[1 + k, :c])
        for p in protocols:
            has_good, jr, jc = same_person_matches(qp, gp, qc, gc, ql, gl, mode=modes[p.name])
            r = refine(stack[:, :c], gp, m=m_eff[p.name], variant=variant,
                       exclude=(jr, jc) if exclude_junk else None, out=ref_buf[:c])
            neg = np.negative(r.sims, out=neg_buf[:c])
            refined[p.name].add(neg, qp, gp, qc, gc, ql, gl,
                                counts=_refined_counts(srt, sim0.numpy(), neg, r.topm, variant))
            hits[p.name][0] += int(np.count_nonzero(r.pred_pids[has_good] == np.asarray(qp)[has_good]))
            hits[p.name][1] += int(np.count_nonzero(has_good))
            if keep_refined:
                kept[p.name][r0:r1] = r.sims
    results: dict[str, dict[str, Any]] = {}
    for p in protocols:
        results[p.name] = plain[p.name].result().as_dict(RANKS)
        if p.name in refined:
            out = refined[p.name].result().as_dict(RANKS)
            out["pred_top1"] = hits[p.name][0] / hits[p.name][1]
            results[f"{p.name}_refined"] = out
    return results, kept
