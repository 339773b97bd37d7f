"""The evaluation protocols scored on k-reciprocal re-ranked distances, alone or with refinement.

:func:`evaluate_reranked` is the re-ranked counterpart of
:func:`~dlcr.evaluation.evaluator.evaluate_protocols`: the same splits, protocols and metric dicts,
under these names (``<p>`` a protocol's name):

* ``<p>_reranked``: the queries ranked by their re-ranked distances
  (:class:`~dlcr.evaluation.rerank.Reranker`);
* ``<p>_reranked_refined`` (``order`` ``"rerank_refine"``): re-rank first, then refine: the queries
  and each set of their variants are re-ranked against the gallery and prediction refinement runs on
  the re-ranked similarities ``1 - distance``; ranked by the refined similarity. Holds
  ``pred_top1`` as the evaluator's refined results do;
* ``<p>_refined_reranked`` (``order`` ``"refine_rerank"``): refine first (on the cosine
  similarities, as the evaluator does), then re-rank with the refined similarities of each query's
  top-m items as their initial distances (:mod:`dlcr.evaluation.rerank_refine`). One re-ranking per
  protocol (its junk shapes the refinement) unless ``exclude_junk`` is false.

The names read in the order the steps run. Refined entries exist for the protocols whose query
split has variants in ``refine_variants``; ``order="both"`` gives both.

Junk. The neighbourhoods of re-ranking use every query and gallery feature, without labels; the
protocols' rules (same camera; same or other clothes) are applied to the final distances by the
evaluator's own ranking (:class:`~dlcr.evaluation.metrics.RankAccumulator`), so a junk gallery item
never counts, and, with ``exclude_junk``, never enters a refinement's top-m either.

Memory. A query/gallery pair is scored a block of query rows at a time within ``max_memory_gb``
(:func:`~dlcr.evaluation.blocks.query_rows_per_block`, whole multiples of the evaluator's row block,
on which the re-ranked distances are bit-identical to those of the whole matrix): the results do not
depend on the budget. Besides the blocks, each :class:`~dlcr.evaluation.rerank.Reranker` holds its
sparse state (see :mod:`dlcr.evaluation.rerank`, "Memory").
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.blocks import DEFAULT_MAX_MEMORY_GB, RANKS, query_rows_per_block
from dlcr.evaluation.evaluator import check_variants
from dlcr.evaluation.features import Features, cosine_similarity
from dlcr.evaluation.metrics import RankAccumulator, junk_counts, normalise_mode, same_person_matches
from dlcr.evaluation.refinement import VARIANTS, refine
from dlcr.evaluation.rerank import (
    DEFAULT_CHUNK_ELEMENTS,
    DEFAULT_K1,
    DEFAULT_K2,
    DEFAULT_LAMBDA,
    Reranker,
    check_rerank_params,
)
from dlcr.evaluation.rerank_refine import concat_pairs, refined_pairs, variant_rerankers
from dlcr.types import EvalProtocol

__all__ = ["ORDERS", "SUFFIXES", "evaluate_reranked", "rerank_orders"]

#: The two orders of re-ranking and refinement.
ORDERS = ("rerank_refine", "refine_rerank")
#: Result name suffixes: plain re-ranking and each order.
SUFFIXES = {"rerank": "_reranked", "rerank_refine": "_reranked_refined", "refine_rerank": "_refined_reranked"}


def rerank_orders(order: str | Sequence[str]) -> tuple[str, ...]:
    """``order`` (``"rerank_refine"``, ``"refine_rerank"``, ``"both"`` or a sequence of the first
    two; ``-`` for ``_`` accepted) as a tuple in :data:`ORDERS` order (InputError otherwise)."""
    items = [order] if isinstance(order, str) else list(order)
    names = set()
    for o in items:
        key = str(o).replace("-", "_")
        if key == "both":
            names.update(ORDERS)
        elif key in ORDERS:
            names.add(key)
        else:
            raise InputError(f"unknown re-ranking order {o!r}; expected rerank-refine, refine-rerank or both")
    if not names:
        raise InputError("no re-ranking order given")
    return tuple(o for o in ORDERS if o in names)


def _bytes_per_row(n_gallery: int, n_variants: int) -> int:
    """One query row of a block: its re-ranked distances (float64 at most), and with variants the
    (1 + l) similarities, the refined similarities and their negation (float32), plus one row of the
    ranking's temporaries."""
    floats = 2 + 1 + ((1 + n_variants) + 2 if n_variants else 0)
    return int(n_gallery) * 4 * floats


class _Scores:
    """The rank accumulators (and refined-prediction hits) of one result name per protocol."""

    def __init__(self, protocols: Sequence[EvalProtocol], suffix: str, hits: bool) -> None:
        self.suffix = suffix
        self.acc = {p.name: RankAccumulator(normalise_mode(p.mode)) for p in protocols}
        self.hits = {p.name: [0, 0] for p in protocols} if hits else None

    def add(self, name: str, dist: Any, ql: tuple[Any, Any, Any], gl: tuple[Any, Any, Any]) -> None:
        self.acc[name].add(dist, ql[0], gl[0], ql[1], gl[1], ql[2], gl[2])

    def hit(self, name: str, pred: np.ndarray, qp: np.ndarray, has_good: np.ndarray) -> None:
        assert self.hits is not None
        self.hits[name][0] += int(np.count_nonzero(pred[has_good] == qp[has_good]))
        self.hits[name][1] += int(np.count_nonzero(has_good))

    def result(self, name: str) -> dict[str, Any]:
        out: dict[str, Any] = self.acc[name].result().as_dict(RANKS)
        if self.hits is not None:
            out["pred_top1"] = self.hits[name][0] / self.hits[name][1]
        return out


def _labels(f: Features, r0: int = 0, r1: int | None = None) -> tuple[Any, Any, Any]:
    return np.asarray(f.pids)[r0:r1], np.asarray(f.camids)[r0:r1], np.asarray(f.clothes_ids)[r0:r1]


class _Pair:
    """One query/gallery pair: its labels, block grid, refinement's m per protocol, buffers."""

    def __init__(self, q: Features, g: Features, protocols: Sequence[EvalProtocol], variants: torch.Tensor | None,
                 *, m: int, exclude_junk: bool, max_memory_gb: float | None, rr_kw: dict[str, Any]) -> None:
        self.q, self.g, self.protocols, self.variants = q, g, list(protocols), variants
        self.nq, self.ng = len(q), len(g)
        if self.nq == 0 or self.ng == 0:
            raise InputError(f"empty {'query' if self.nq == 0 else 'gallery'} split")
        self.n_var = 0 if variants is None else int(variants.shape[0])
        self.rows = query_rows_per_block(self.nq, self.ng, self.n_var, max_memory_gb, per_row=_bytes_per_row)
        self.modes = {p.name: normalise_mode(p.mode) for p in self.protocols}
        self.exclude_junk, self.rr_kw = exclude_junk, rr_kw
        self.gl = _labels(g)
        self.m_eff: dict[str, int] = {}
        if variants is not None:  # as the evaluator: m is capped by the query with the fewest selectable items
            qp, qc, ql = _labels(q)
            for p in self.protocols:
                junk = junk_counts(qp, self.gl[0], qc, self.gl[1], ql, self.gl[2], mode=self.modes[p.name])
                free = self.ng - (int(junk.max()) if exclude_junk else 0)
                if free < 1:
                    raise InputError("a query has every gallery item excluded; nothing to refine with")
                self.m_eff[p.name] = min(int(m), free)
        self.dist = torch.empty(self.rows, self.ng, dtype=rr_kw["dtype"])

    def blocks(self) -> Iterable[tuple[int, int]]:
        for r0 in range(0, self.nq, self.rows):
            yield r0, min(self.nq, r0 + self.rows)

    def exclude(self, name: str, r0: int, r1: int) -> tuple[np.ndarray, Any]:
        """(has_good, the refinement's exclusions) of one protocol's query rows r0:r1."""
        qp, qc, ql = _labels(self.q, r0, r1)
        has_good, jr, jc = same_person_matches(qp, self.gl[0], qc, self.gl[1], ql, self.gl[2],
                                               mode=self.modes[name])
        return has_good, ((jr, jc) if self.exclude_junk else None)

    def score_distances(self, rr: Reranker, scores: _Scores, names: Sequence[str]) -> None:
        """Rank the re-ranked distances of ``rr`` under the protocols ``names``."""
        for r0, r1 in self.blocks():
            d = rr.distances(r0, r1, out=self.dist[:r1 - r0])
            for name in names:
                scores.add(name, d, _labels(self.q, r0, r1), self.gl)


def _rerank_refine(pair: _Pair, variant: str, plain: _Scores, refined: _Scores) -> None:
    """Plain re-ranking and re-rank-then-refine of a pair, sharing the queries' re-ranker."""
    assert pair.variants is not None
    rrs = variant_rerankers(pair.q.feats, pair.variants, pair.g.feats, **pair.rr_kw)
    stack = torch.empty(len(rrs), pair.rows, pair.ng, dtype=pair.rr_kw["dtype"])
    ref_buf = np.empty((pair.rows, pair.ng), dtype=np.float32)
    for r0, r1 in pair.blocks():
        c = r1 - r0
        ql = _labels(pair.q, r0, r1)
        d = rrs[0].distances(r0, r1, out=pair.dist[:c])
        stack[0, :c].copy_(d).neg_().add_(1.0)  # Reranker.similarities' arithmetic
        for k in range(1, len(rrs)):
            rrs[k].similarities(r0, r1, out=stack[k, :c])
        for p in pair.protocols:
            plain.add(p.name, d, ql, pair.gl)
            has_good, excl = pair.exclude(p.name, r0, r1)
            r = refine(stack[:, :c], pair.gl[0], m=pair.m_eff[p.name], variant=variant, exclude=excl,
                       out=ref_buf[:c])
            refined.add(p.name, np.negative(r.sims), ql, pair.gl)
            refined.hit(p.name, r.pred_pids, ql[0], has_good)


def _refine_rerank(pair: _Pair, variant: str, scores: _Scores) -> None:
    """Refine-then-rerank of a pair: refinement on the cosine similarities of each block, then one
    re-ranking per distinct refinement (per protocol; one for all without the junk exclusion)."""
    assert pair.variants is not None
    groups = [[p.name for p in pair.protocols]] if not pair.exclude_junk else [[p.name] for p in pair.protocols]
    parts: list[list[Any]] = [[] for _ in groups]
    stack = torch.empty(1 + pair.n_var, pair.rows, pair.ng)
    for r0, r1 in pair.blocks():
        c = r1 - r0
        cosine_similarity(pair.q.feats[r0:r1], pair.g.feats, out=stack[0, :c])
        for k in range(pair.n_var):
            cosine_similarity(pair.variants[k, r0:r1], pair.g.feats, out=stack[1 + k, :c])
        for gi, names in enumerate(groups):
            _, excl = pair.exclude(names[0], r0, r1)
            m = min(pair.m_eff[n] for n in names)
            r = refine(stack[:, :c], pair.gl[0], m=m, variant=variant, exclude=excl)
            parts[gi].append(refined_pairs(r, variant, row_offset=r0))
    del stack
    for gi, names in enumerate(groups):
        rr = Reranker(pair.q.feats, pair.g.feats, qg_dist=concat_pairs(parts[gi]), **pair.rr_kw)
        parts[gi] = []
        pair.score_distances(rr, scores, names)


def evaluate_reranked(qg_features: Mapping[str, Features], protocols: Iterable[EvalProtocol], *,
                      k1: int = DEFAULT_K1, k2: int = DEFAULT_K2, lambda_value: float = DEFAULT_LAMBDA,
                      refine_variants: Mapping[str, torch.Tensor] | None = None,
                      order: str | Sequence[str] = "rerank_refine", m: int = 5, variant: str = "paper",
                      exclude_junk: bool = True, max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB,
                      dtype: torch.dtype = torch.float32,
                      chunk_elements: int = DEFAULT_CHUNK_ELEMENTS) -> dict[str, dict[str, Any]]:
    """Re-ranked metrics of every protocol (the names: see the module docstring), each a dict like
    :func:`~dlcr.evaluation.evaluator.evaluate_protocols`'s, in the protocols' order.

    ``k1``, ``k2``, ``lambda_value``: re-ranking's parameters (ConfigError when invalid).
    ``refine_variants``, ``m``, ``variant``, ``exclude_junk``, ``max_memory_gb``: as the evaluator
    takes them; ``order``: see :func:`rerank_orders`. ``dtype``, ``chunk_elements``: of the
    re-ranking (:class:`~dlcr.evaluation.rerank.Reranker`).
    """
    k1, k2, lambda_value = check_rerank_params(k1, k2, lambda_value)
    orders = rerank_orders(order)
    if variant not in VARIANTS:
        raise InputError(f"unknown refinement variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    rr_kw = {"k1": k1, "k2": k2, "lambda_value": lambda_value, "dtype": dtype, "chunk_elements": chunk_elements}
    protocols = list(protocols)
    groups: dict[tuple[str, str], list[EvalProtocol]] = {}
    for p in protocols:
        groups.setdefault((p.query, p.gallery), []).append(p)
    scored: dict[str, dict[str, Any]] = {}
    for (qname, gname), group in groups.items():
        for name in (qname, gname):
            if name not in qg_features:
                raise InputError(f"no features for split {name!r} (have: {', '.join(sorted(qg_features)) or 'none'})")
        q, g = qg_features[qname], qg_features[gname]
        v = refine_variants.get(qname) if refine_variants is not None else None
        pair = _Pair(q, g, group, None if v is None else check_variants(v, q), m=m, exclude_junk=exclude_junk,
                     max_memory_gb=max_memory_gb, rr_kw=rr_kw)
        results = [_Scores(group, SUFFIXES["rerank"], hits=False)]
        if pair.variants is not None and "rerank_refine" in orders:
            results.append(_Scores(group, SUFFIXES["rerank_refine"], hits=True))
            _rerank_refine(pair, variant, results[0], results[1])
        else:
            pair.score_distances(Reranker(q.feats, g.feats, **rr_kw), results[0], [p.name for p in group])
        if pair.variants is not None and "refine_rerank" in orders:
            results.append(_Scores(group, SUFFIXES["refine_rerank"], hits=False))
            _refine_rerank(pair, variant, results[-1])
        for s in results:
            scored.update({f"{p.name}{s.suffix}": s.result(p.name) for p in group})
    out: dict[str, dict[str, Any]] = {}
    for p in protocols:  # in the protocols' order, each one's entries in SUFFIXES order
        for suffix in SUFFIXES.values():
            if f"{p.name}{suffix}" in scored:
                out[f"{p.name}{suffix}"] = scored[f"{p.name}{suffix}"]
    return out
