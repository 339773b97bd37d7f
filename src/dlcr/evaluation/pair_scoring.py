"""The evaluator's scoring of one query/gallery pair: every protocol's metrics, plain and refined.

Exactly the results of :func:`~dlcr.evaluation.pair_reference.score_pair_reference` (the same
similarities, ranks, tie order and float operations), with far less work. The queries are scored
:data:`~dlcr.evaluation.features.SIM_BLOCK` rows at a time (:mod:`dlcr.evaluation.unit_scoring`):

* the queries' similarity product, as before (the same row blocks, so the same bits);
* bucket histograms of those similarities: every count of "entries ranked before this one", for
  the plain distance ``1 - s`` and the refined ``-s`` / ``-(1 + s)``, becomes a count of entries
  above an exact float32 threshold, read from the histograms and a comparison with the few entries
  that share the threshold's bucket (:mod:`dlcr.evaluation.histcount`; no row is sorted); no
  distance matrix, negated copy or refined matrix is built (the refined one only when the caller
  keeps it);
* the same-person entries of each query (good and junk under every mode) from the per-person index
  of the gallery and the integer label arrays, once for all protocols;
* the top-(m + J) of every similarity matrix, J = the query's most junk entries under any protocol
  (:func:`~dlcr.evaluation.candidates.top_k`; for the variants' matrices from bfloat16 products
  and exact float32 values of a few candidates, :mod:`dlcr.evaluation.screening`, so that only
  the queries' own similarities are computed whole in float32), from which each protocol takes its
  top-m without its junk; Algorithm 1's scores come from
  :func:`~dlcr.evaluation.refinement.combine_scores`;
* the refined ranks: refinement changes only the m top entries of a row, so the counts in the
  sorted rows are corrected by those m entries.

Threads. On the CPU the blocks are scored by as many threads as torch has (``torch.get_num_threads()``,
the cores), each running its operations on one core (torch is set to one thread meanwhile and
restored afterwards): small operations on a machine whose cores other processes share then never
wait for each other. The blocks' results are added in query order, so the metrics are those of one
thread; the first block's similarities are computed both ways once to check that the BLAS gives
the same bits on one thread (otherwise one thread scores with torch's threads). At most
``max_memory_gb`` worth of blocks (:func:`~dlcr.evaluation.blocks.query_rows_per_block`) are in work
at once.

Inputs the fast path does not take (empty splits, features that are not finite or whose products
could overflow) go to the reference, which also raises its errors for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.blocks import RANKS, query_rows_per_block
from dlcr.evaluation.features import SIM_BLOCK, Features, cosine_similarity
from dlcr.evaluation.metrics import RankAccumulator, normalise_mode
from dlcr.evaluation.pair_reference import score_pair_reference
from dlcr.evaluation.refinement import VARIANTS
from dlcr.evaluation.screening import VariantTops
from dlcr.evaluation.unit_scoring import Same, UnitResult, Units, labels
from dlcr.types import EvalProtocol

__all__ = ["score_pair"]

#: Feature norms whose products stay below this give finite similarities and distances.
_SAFE_PRODUCT = 1e18


def _largest_norm(x: torch.Tensor) -> float:
    """The largest row norm of ``x`` (NaN or inf when an entry is not finite)."""
    if x.numel() == 0:
        return 0.0
    return float(torch.linalg.vector_norm(x.float(), dim=-1).max())


def _fast_path_applies(q: Features, g: Features, variants: torch.Tensor | None) -> bool:
    if len(q) == 0 or len(g) == 0:
        return False
    qn = max(_largest_norm(q.feats), _largest_norm(variants) if variants is not None else 0.0)
    return bool(qn * _largest_norm(g.feats) < _SAFE_PRODUCT)  # False for NaN / inf


def _refined_m(units: Units, m: int, variant: str) -> dict[str, int]:
    """Refinement's m per protocol, capped by the query with the fewest selectable gallery items;
    the reference's errors for a bad m or variant."""
    nq, ng = len(units.lab.qp), len(units.lab.gp)
    whole = Same(units.lab, 0, nq)
    m_eff = {}
    for p in units.protocols:
        junk = int(whole.junk_counts(units.modes[p.name]).max()) if units.exclude_junk else 0
        if ng - junk < 1:
            raise InputError("a query has every gallery item excluded; nothing to refine with")
        m_eff[p.name] = min(int(m), ng - junk)
    if variant not in VARIANTS:
        raise InputError(f"unknown refinement variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    if min(m_eff.values()) < 1:
        raise InputError(f"m must be >= 1, got {min(m_eff.values())}")
    return m_eff


@contextmanager
def _torch_threads(n: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` (None: unchanged) inside the block."""
    old = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(old)


def _workers(q: Features, g: Features, rows: int) -> int:
    """Threads to score blocks with: torch's threads on the CPU, within the memory budget's rows,
    if the similarity product gives the same bits on one thread (checked on the first block)."""
    n = min(torch.get_num_threads(), max(1, rows // SIM_BLOCK), -(-len(q) // SIM_BLOCK))
    if n < 2 or q.feats.device.type != "cpu" or g.feats.device.type != "cpu":
        return 1
    first = q.feats[:SIM_BLOCK]
    many = cosine_similarity(first, g.feats)
    with _torch_threads(1):
        one = cosine_similarity(first, g.feats)
    return n if torch.equal(many, one) else 1


def _finish(units: Units, plain: dict[str, RankAccumulator], refined: dict[str, RankAccumulator],
            hits: dict[str, list[int]]) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for p in units.protocols:
        results[p.name] = plain[p.name].result().as_dict(RANKS)
        if p.name in refined:
            out = refined[p.name].result().as_dict(RANKS)
            out["pred_top1"] = hits[p.name][0] / hits[p.name][1]
            results[f"{p.name}_refined"] = out
    return results


def score_pair(q: Features, g: Features, protocols: list[EvalProtocol], variants: torch.Tensor | None, *,
               m: int, variant: str, exclude_junk: bool, keep_refined: bool,
               max_memory_gb: float | None) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Metrics (and, with variants, refined metrics) of every protocol on one query/gallery pair.
    Returns ``(results, refined similarity matrices)``, as
    :func:`~dlcr.evaluation.pair_reference.score_pair_reference` does."""
    if not _fast_path_applies(q, g, variants):
        return score_pair_reference(q, g, protocols, variants, m=m, variant=variant, exclude_junk=exclude_junk,
                                    keep_refined=keep_refined, max_memory_gb=max_memory_gb)
    nq, ng = len(q), len(g)
    rows = query_rows_per_block(nq, ng, 0 if variants is None else int(variants.shape[0]), max_memory_gb)
    units = Units(q, g, labels(q, g), protocols, {p.name: normalise_mode(p.mode) for p in protocols})
    plain = {p.name: RankAccumulator(units.modes[p.name]) for p in protocols}
    refined: dict[str, RankAccumulator] = {}
    hits = {p.name: [0, 0] for p in protocols}
    if variants is not None:
        units.variants, units.variant, units.exclude_junk = variants, variant, exclude_junk
        units.m = _refined_m(units, m, variant)
        units.kept = {p.name: np.empty((nq, ng), dtype=np.float32) for p in protocols} if keep_refined else {}
        units.screen = VariantTops(g.feats)
        refined = {p.name: RankAccumulator(units.modes[p.name]) for p in protocols}
    workers = _workers(q, g, rows)
    spans = [(a, min(nq, a + SIM_BLOCK)) for a in range(0, nq, SIM_BLOCK)]
    with _torch_threads(1 if workers > 1 else None):
        if units.screen is not None and variants is not None and nq >= SIM_BLOCK:
            first = Same(units.lab, 0, SIM_BLOCK)
            k_rows = units.k_rows(first)
            units.screen.check(variants[0, :SIM_BLOCK], k_rows, int(k_rows.max()))
        with ThreadPoolExecutor(workers) as pool:
            for res in pool.map(lambda span: units.score(*span), spans):
                _add(res, plain, refined, hits, ng)
    return _finish(units, plain, refined, hits), units.kept


def _add(res: UnitResult, plain: dict[str, RankAccumulator], refined: dict[str, RankAccumulator],
         hits: dict[str, list[int]], ng: int) -> None:
    for name, (good, before) in res.plain.items():
        plain[name].add_ranks(good, before, res.rows, ng)
    for name, (good, before) in res.refined.items():
        refined[name].add_ranks(good, before, res.rows, ng)
        hits[name][0] += res.hits[name][0]
        hits[name][1] += res.hits[name][1]
