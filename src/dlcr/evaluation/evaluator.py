"""Run a benchmark's evaluation protocols on extracted features, with optional refinement.

Independent of models and datasets: it takes :class:`~dlcr.evaluation.features.Features` per split
name and :class:`~dlcr.types.EvalProtocol` records, so it can be tested with plain tensors.

Refinement and junk. With ``exclude_junk=True`` (default) the gallery items that are junk for a
query under the protocol's rule (same person, same camera; for CC also same clothes; for SC also
other clothes) cannot enter any top-m during refinement, just as they are removed from the ranking
when scoring. Otherwise an SC/CC protocol would let the refinement vote with exactly the gallery
images the protocol forbids. ``exclude_junk=False`` refines over the whole gallery, as code that
refines before evaluating does.

Memory. A query/gallery pair is scored a block of query rows at a time
(:data:`~dlcr.evaluation.features.SIM_BLOCK` rows per thread), as many blocks at once as fit the
budget ``max_memory_gb`` (:func:`~dlcr.evaluation.blocks.query_rows_per_block`): the similarities
of the pair never exist whole. Every query is scored on its own, and the similarity products are
taken on the same row blocks whatever the budget, so the result is bit-identical to scoring the
whole matrix at once.

Speed. The scoring (:mod:`dlcr.evaluation.pair_scoring`) never builds a distance or refined matrix
nor sorts a row, takes the variants' top-k from bfloat16 products (with exact float32 values) and
uses one thread per core; :func:`evaluate_protocols_reference` runs the plain computation it
replaced (:mod:`dlcr.evaluation.pair_reference`), with exactly the same results, for tests and
benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.blocks import DEFAULT_MAX_MEMORY_GB, RANKS, bytes_per_query_row, query_rows_per_block
from dlcr.evaluation.features import Features, cosine_distance, cosine_similarity
from dlcr.evaluation.metrics import evaluate
from dlcr.evaluation.pair_reference import score_pair_reference
from dlcr.evaluation.pair_scoring import score_pair
from dlcr.types import EvalProtocol

__all__ = ["DEFAULT_MAX_MEMORY_GB", "RANKS", "bytes_per_query_row", "evaluate_features", "evaluate_protocols",
           "evaluate_protocols_reference", "evaluate_refined", "query_rows_per_block", "similarity_stack"]


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
    v = check_variants(variants, query)
    sims = torch.empty(1 + v.shape[0], len(query), len(gallery))
    sims[0] = cosine_similarity(query.feats, gallery.feats)
    for k in range(v.shape[0]):
        sims[1 + k] = cosine_similarity(v[k], gallery.feats)
    return sims


def check_variants(variants: Any, query: Features) -> torch.Tensor:
    """``variants`` as a float tensor of shape (l, n_query, dim), or one InputError line."""
    v = torch.as_tensor(variants).float()
    nq, dim = query.feats.shape
    if v.ndim != 3 or v.shape[1] != nq or v.shape[2] != dim:
        raise InputError(f"variant features must have shape (l, {nq}, {dim}), got {tuple(v.shape)}")
    return v


def evaluate_refined(query: Features, variants: torch.Tensor, gallery: Features,
                     protocol: EvalProtocol | str = "standard", *, m: int = 5, variant: str = "paper",
                     exclude_junk: bool = True, max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB
                     ) -> tuple[dict[str, float | int], np.ndarray]:
    """Evaluate with prediction refinement; returns ``(metrics, refined_sims)``.

    ``variants``: features of the l clothes-changed variants of every query, shape (l, n_query, D),
    L2-normalised like ``query.feats``. ``protocol``: an :class:`EvalProtocol` or a mode name.
    The (1 + l) cosine similarities of each block of queries are refined (Algorithm 1, as
    :func:`~dlcr.evaluation.refinement.refine` computes it) and ranked by the refined similarity
    (distance ``-sims``, which keeps ties exactly). ``metrics`` has the keys of :func:`evaluate_features` plus
    ``pred_top1``: the fraction of evaluated queries (those with a good match) whose refined
    prediction is their person. ``refined_sims`` is the (n_query, n_gallery) float32 refined
    similarity (on the 1 + cos scale for the official variant).
    """
    p = protocol if isinstance(protocol, EvalProtocol) else EvalProtocol("p", "query", "gallery", protocol)
    results, kept = score_pair(query, gallery, [p], check_variants(variants, query), m=m, variant=variant,
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
    similarities, sort and top-k candidates; ``max_memory_gb`` bounds the blocks (None: one block
    per pair).
    """
    return _evaluate(score_pair, qg_features, protocols, refine_variants=refine_variants, m=m, variant=variant,
                     exclude_junk=exclude_junk, refined_out=refined_out, max_memory_gb=max_memory_gb)


def evaluate_protocols_reference(qg_features: Mapping[str, Features], protocols: Iterable[EvalProtocol], *,
                                 refine_variants: Mapping[str, torch.Tensor] | None = None, m: int = 5,
                                 variant: str = "paper", exclude_junk: bool = True,
                                 refined_out: dict[str, np.ndarray] | None = None,
                                 max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB) -> dict[str, dict[str, Any]]:
    """:func:`evaluate_protocols` computed the plain way (distance matrices, a refinement per protocol,
    full ranking passes: :mod:`dlcr.evaluation.pair_reference`): the reference its results equal
    bit for bit. Slower; for tests and benchmarks."""
    return _evaluate(score_pair_reference, qg_features, protocols, refine_variants=refine_variants, m=m,
                     variant=variant, exclude_junk=exclude_junk, refined_out=refined_out,
                     max_memory_gb=max_memory_gb)


def _evaluate(scorer: Callable[..., tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]],
              qg_features: Mapping[str, Features], protocols: Iterable[EvalProtocol], *,
              refine_variants: Mapping[str, torch.Tensor] | None, m: int, variant: str, exclude_junk: bool,
              refined_out: dict[str, np.ndarray] | None, max_memory_gb: float | None) -> dict[str, dict[str, Any]]:
    protocols = list(protocols)
    pairs: dict[tuple[str, str], list[EvalProtocol]] = {}
    for p in protocols:
        pairs.setdefault((p.query, p.gallery), []).append(p)
    scored: dict[str, dict[str, Any]] = {}
    for (qname, gname), group in pairs.items():
        q, g = _split(qg_features, qname), _split(qg_features, gname)
        v = refine_variants.get(qname) if refine_variants is not None else None
        res, kept = scorer(q, g, group, None if v is None else check_variants(v, q), m=m, variant=variant,
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
