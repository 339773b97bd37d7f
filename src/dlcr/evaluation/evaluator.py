"""Run a benchmark's evaluation protocols on extracted features, with optional refinement.

Independent of models and datasets: it takes :class:`~dlcr.evaluation.features.Features` per split
name and :class:`~dlcr.types.EvalProtocol` records, so it can be tested with plain tensors.

Refinement and junk. With ``exclude_junk=True`` (default) the gallery items that are junk for a
query under the protocol's rule (same person, same camera; for CC also same clothes; for SC also
other clothes) cannot enter any top-m during refinement, just as they are removed from the ranking
when scoring. Otherwise an SC/CC protocol would let the refinement vote with exactly the gallery
images the protocol forbids. ``exclude_junk=False`` refines over the whole gallery, as code that
refines before evaluating does.

Memory. A query/gallery pair is scored a block of query rows at a time, sized from a budget
(``max_memory_gb``): the distances, the (1 + l) similarities of the block's queries and their
variants, the refined similarities and the junk masks of one block exist at once, never those of
the whole pair. Every query is scored on its own, and the blocks are whole multiples of the
similarity product's row block (:data:`~dlcr.evaluation.features.SIM_BLOCK`), so the result is
bit-identical to scoring the whole matrix at once, whatever the budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.features import SIM_BLOCK, Features, cosine_distance, cosine_similarity
from dlcr.evaluation.metrics import (
    RankAccumulator,
    evaluate,
    junk_counts,
    normalise_mode,
    same_person_matches,
)
from dlcr.evaluation.refinement import refine
from dlcr.types import EvalProtocol

__all__ = ["DEFAULT_MAX_MEMORY_GB", "evaluate_features", "evaluate_protocols", "evaluate_refined",
           "query_rows_per_block", "similarity_stack"]

#: Ranks reported in every result dict.
RANKS = (1, 5, 10, 20)

#: Default budget (GiB) of the per-block arrays of one query/gallery pair (``eval.max_memory_gb``).
DEFAULT_MAX_MEMORY_GB = 4.0


def _split(features: Mapping[str, Features], name: str) -> Features:
    if name not in features:
        raise InputError(f"no features for split {name!r} (have: {', '.join(sorted(features)) or 'none'})")
    return features[name]


def evaluate_features(query: Features, gallery: Features, mode: str = "standard", *,
                      dist: torch.Tensor | None = None) -> dict[str, float | int]:
    """Cosine-distance ranking of ``query`` against ``gallery``: top1/5/10/20, mAP, mINP, counts.

    ``dist``: their cosine distance when the caller already has it (several protocols share it).
    """
    if dist is None:
        dist = cosine_distance(query.feats, gallery.feats)
    m = evaluate(dist, query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                 gallery.clothes_ids, mode=mode)
    return m.as_dict(RANKS)


def similarity_stack(query: Features, variants: torch.Tensor, gallery: Features) -> torch.Tensor:
    """The (1 + l, n_query, n_gallery) cosine similarities of the queries and their l variants
    (``variants``: shape (l, n_query, D), L2-normalised) to the gallery, as refinement takes them."""
    v = _check_variants(variants, query)
    sims = torch.empty(1 + v.shape[0], len(query), len(gallery))
    sims[0] = cosine_similarity(query.feats, gallery.feats)
    for k in range(v.shape[0]):
        sims[1 + k] = cosine_similarity(v[k], gallery.feats)
    return sims


def _check_variants(variants: Any, query: Features) -> torch.Tensor:
    v = torch.as_tensor(variants).float()
    nq, dim = query.feats.shape
    if v.ndim != 3 or v.shape[1] != nq or v.shape[2] != dim:
        raise InputError(f"variant features must have shape (l, {nq}, {dim}), got {tuple(v.shape)}")
    return v


def bytes_per_query_row(n_gallery: int, n_variants: int) -> int:
    """Bytes one query row of a block costs: float32 similarities, distances and sorted similarities
    (and, with l variants, the variants' similarities, refined similarities and their negation),
    plus the finiteness check's and one ranking pass's temporaries. Buffers are allocated once per pair and reused block after block."""
    floats = 3 + ((1 + n_variants) + 2 if n_variants else 0)
    return int(n_gallery) * (4 * floats + 2)


def query_rows_per_block(n_query: int, n_gallery: int, n_variants: int = 0,
                         max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB) -> int:
    """Query rows scored at once within ``max_memory_gb`` (None: all of them).

    A whole multiple of :data:`~dlcr.evaluation.features.SIM_BLOCK` (which keeps the similarities
    bit-identical to the whole matrix's), and at least one such block.
    """
    if max_memory_gb is None:
        return max(1, int(n_query))
    if not float(max_memory_gb) > 0:
        raise InputError(f"max_memory_gb must be > 0, got {max_memory_gb}")
    rows = int(float(max_memory_gb) * 2**30 // bytes_per_query_row(n_gallery, n_variants))
    rows = max(SIM_BLOCK, rows // SIM_BLOCK * SIM_BLOCK)
    return max(1, min(rows, int(n_query)))


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
    from dlcr.evaluation.metrics import sorted_counts

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


def _score_pair(q: Features, g: Features, protocols: list[EvalProtocol], variants: torch.Tensor | None, *,
                m: int, variant: str, exclude_junk: bool, keep_refined: bool,
                max_memory_gb: float | None) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Metrics (and, with variants, refined metrics) of every protocol on one query/gallery pair,
    a block of query rows at a time. Returns ``(results, refined similarity matrices)``."""
    nq, ng = len(q), len(g)
    n_var = 0 if variants is None else int(variants.shape[0])
    rows = query_rows_per_block(nq, ng, n_var, max_memory_gb)
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


def evaluate_refined(query: Features, variants: torch.Tensor, gallery: Features,
                     protocol: EvalProtocol | str = "standard", *, m: int = 5, variant: str = "paper",
                     exclude_junk: bool = True, max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB
                     ) -> tuple[dict[str, float | int], np.ndarray]:
    """Evaluate with prediction refinement; returns ``(metrics, refined_sims)``.

    ``variants``: features of the l clothes-changed variants of every query, shape (l, n_query, D),
    L2-normalised like ``query.feats``. ``protocol``: an :class:`EvalProtocol` or a mode name.
    The (1 + l) cosine similarities of each block of queries are refined
    (:func:`~dlcr.evaluation.refinement.refine`) and ranked by the refined similarity (distance
    ``-sims``, which keeps ties exactly). ``metrics`` has the keys of :func:`evaluate_features` plus
    ``pred_top1``: the fraction of evaluated queries (those with a good match) whose refined
    prediction is their person. ``refined_sims`` is the (n_query, n_gallery) float32 refined
    similarity (on the 1 + cos scale for the official variant).
    """
    p = protocol if isinstance(protocol, EvalProtocol) else EvalProtocol("p", "query", "gallery", protocol)
    results, kept = _score_pair(query, gallery, [p], _check_variants(variants, query), m=m, variant=variant,
                                exclude_junk=exclude_junk, keep_refined=True, max_memory_gb=max_memory_gb)
    return results[f"{p.name}_refined"], kept[p.name]


def evaluate_protocols(qg_features: Mapping[str, Features], protocols: Iterable[EvalProtocol], *,
                       refine_variants: Mapping[str, torch.Tensor] | None = None, m: int = 5,
                       variant: str = "paper", exclude_junk: bool = True,
                       refined_out: dict[str, np.ndarray] | None = None,
                       max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB) -> dict[str, dict[str, Any]]:
    """Metrics of every protocol: ``{protocol.name: {"top1", "top5", "top10", "top20", "mAP", "mINP",
    "num_queries", "num_skipped"}}`` (fractions in [0, 1]).

    ``refine_variants`` maps a query split name to the features of its queries' clothes-changed
    variants, shape (l, n_query, D). For every protocol whose query split has an entry, a second
    result ``"<name>_refined"`` is added (see :func:`evaluate_refined`; it also holds ``pred_top1``).
    ``refined_out``, when given, receives each refined similarity matrix as
    ``"<name>_refined_sims"`` (whole matrices: only for sizes where they fit).

    Protocols on the same query/gallery pair (standard, SC and CC usually are) share each block's
    distances and similarities; ``max_memory_gb`` bounds the blocks (None: one block per pair).
    """
    protocols = list(protocols)
    pairs: dict[tuple[str, str], list[EvalProtocol]] = {}
    for p in protocols:
        pairs.setdefault((p.query, p.gallery), []).append(p)
    scored: dict[str, dict[str, Any]] = {}
    for (qname, gname), group in pairs.items():
        q, g = _split(qg_features, qname), _split(qg_features, gname)
        v = refine_variants.get(qname) if refine_variants is not None else None
        res, kept = _score_pair(q, g, group, None if v is None else _check_variants(v, q), m=m, variant=variant,
                                exclude_junk=exclude_junk, keep_refined=refined_out is not None,
                                max_memory_gb=max_memory_gb)
        scored.update(res)
        if refined_out is not None:
            refined_out.update({f"{name}_refined_sims": mat for name, mat in kept.items()})
    results: dict[str, dict[str, Any]] = {}
    for p in protocols:  # in the protocols' order, each refined result right after its plain one
        results[p.name] = scored[p.name]
        if f"{p.name}_refined" in scored:
            results[f"{p.name}_refined"] = scored[f"{p.name}_refined"]
    return results
