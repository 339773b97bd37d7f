"""Run a benchmark's evaluation protocols on extracted features, with optional refinement.

Independent of models and datasets: it takes :class:`~dlcr.evaluation.features.Features` per split
name and :class:`~dlcr.types.EvalProtocol` records, so it can be tested with plain tensors.

Refinement and junk. With ``exclude_junk=True`` (default) the gallery items that are junk for a
query under the protocol's rule (same person, same camera; for CC also same clothes; for SC also
other clothes) cannot enter any top-m during refinement, just as they are removed from the ranking
when scoring. Otherwise an SC/CC protocol would let the refinement vote with exactly the gallery
images the protocol forbids. ``exclude_junk=False`` refines over the whole gallery, as code that
refines before evaluating does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.features import Features, cosine_distance, cosine_similarity
from dlcr.evaluation.metrics import evaluate, match_masks, normalise_mode
from dlcr.evaluation.refinement import refine
from dlcr.types import EvalProtocol

__all__ = ["evaluate_features", "evaluate_protocols", "evaluate_refined", "similarity_stack"]

#: Ranks reported in every result dict.
RANKS = (1, 5, 10, 20)


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
    v = torch.as_tensor(variants).float().cpu()
    nq, dim = query.feats.shape
    if v.ndim != 3 or v.shape[1] != nq or v.shape[2] != dim:
        raise InputError(f"variant features must have shape (l, {nq}, {dim}), got {tuple(v.shape)}")
    sims = torch.empty(1 + v.shape[0], nq, len(gallery))
    sims[0] = cosine_similarity(query.feats, gallery.feats)
    for k in range(v.shape[0]):
        sims[1 + k] = cosine_similarity(v[k], gallery.feats)
    return sims


def evaluate_refined(query: Features, variants: torch.Tensor, gallery: Features,
                     protocol: EvalProtocol | str = "standard", *, m: int = 5, variant: str = "paper",
                     exclude_junk: bool = True, sims: torch.Tensor | None = None
                     ) -> tuple[dict[str, float | int], np.ndarray]:
    """Evaluate with prediction refinement; returns ``(metrics, refined_sims)``.

    ``variants``: features of the l clothes-changed variants of every query, shape (l, n_query, D),
    L2-normalised like ``query.feats``. ``protocol``: an :class:`EvalProtocol` or a mode name.
    Builds the (1 + l, n_query, n_gallery) cosine similarities, refines them
    (:func:`~dlcr.evaluation.refinement.refine`) and ranks by the refined similarity (distance
    ``-sims``, which keeps ties exactly). ``metrics`` has the keys of :func:`evaluate_features` plus
    ``pred_top1``: the fraction of evaluated queries (those with a good match) whose refined
    prediction is their person. ``refined_sims`` is the (n_query, n_gallery) float32 refined
    similarity (on the 1 + cos scale for the official variant). ``sims``: the
    :func:`similarity_stack` of these features when the caller already has it.
    """
    mode = normalise_mode(protocol.mode if isinstance(protocol, EvalProtocol) else protocol)
    if sims is None:
        sims = similarity_stack(query, variants, gallery)
    good, junk = match_masks(query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                             gallery.clothes_ids, mode=mode)
    r = refine(sims, gallery.pids, m=m, variant=variant, exclude=junk if exclude_junk else None)
    metrics = evaluate(-r.sims, query.pids, gallery.pids, query.camids, gallery.camids, query.clothes_ids,
                       gallery.clothes_ids, mode=mode)
    out = metrics.as_dict(RANKS)
    valid = good.any(1)
    out["pred_top1"] = float(np.mean(r.pred_pids[valid] == np.asarray(query.pids)[valid]))
    return out, r.sims


def evaluate_protocols(qg_features: Mapping[str, Features], protocols: Iterable[EvalProtocol], *,
                       refine_sims: Mapping[str, torch.Tensor] | None = None, m: int = 5,
                       variant: str = "paper", exclude_junk: bool = True,
                       refined_out: dict[str, np.ndarray] | None = None) -> dict[str, dict[str, Any]]:
    """Metrics of every protocol: ``{protocol.name: {"top1", "top5", "top10", "top20", "mAP", "mINP",
    "num_queries", "num_skipped"}}`` (fractions in [0, 1]).

    ``refine_sims`` maps a query split name to the features of its queries' clothes-changed
    variants, shape (l, n_query, D). For every protocol whose query split has an entry, a second
    result ``"<name>_refined"`` is added, computed by :func:`evaluate_refined` (it also holds
    ``pred_top1``). ``refined_out``, when given, receives each refined similarity matrix as
    ``"<name>_refined_sims"``.

    Protocols on the same query/gallery pair (standard, SC and CC usually are) share one distance
    matrix and one similarity stack; only the most recent pair is kept, so memory stays that of one.
    """
    results: dict[str, dict[str, Any]] = {}
    pair, dist, stack = None, None, None
    for p in protocols:
        q, g = _split(qg_features, p.query), _split(qg_features, p.gallery)
        if pair != (p.query, p.gallery):
            pair, stack = (p.query, p.gallery), None
            dist = cosine_distance(q.feats, g.feats)
        results[p.name] = evaluate_features(q, g, p.mode, dist=dist)
        if refine_sims is not None and p.query in refine_sims:
            if stack is None:
                stack = similarity_stack(q, refine_sims[p.query], g)
            results[f"{p.name}_refined"], refined = evaluate_refined(
                q, refine_sims[p.query], g, p, m=m, variant=variant, exclude_junk=exclude_junk, sims=stack)
            if refined_out is not None:
                refined_out[f"{p.name}_refined_sims"] = refined
    return results
