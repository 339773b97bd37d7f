"""k-reciprocal re-ranking combined with DLCR prediction refinement, in either order.

Refinement (:mod:`dlcr.evaluation.refinement`) ensembles the top-m gallery items of a query and of
its l clothes-changed variants from a (1 + l, q, g) similarity stack. Re-ranking
(:mod:`dlcr.evaluation.rerank`) replaces a query's distances by k-reciprocal ones. The two orders:

**Rerank, then refine.** Each of the 1 + l query sets (the queries; the k-th variant of every
query) is re-ranked against the gallery in a pool of its own, that set plus the gallery: a variant
set takes the place of the query set and is treated exactly as the queries are. The sets are not
pooled together, so the queries' re-ranked distances are plain re-ranking's, and a query's near
copies do not crowd the gallery's neighbour lists. Refinement then runs on the re-ranked
similarities ``1 - distance`` (in [0, 1], so the paper variant's positive top-1 holds and the
official variant's ``1 + s`` stays positive) in place of cosine similarities. Cost: 1 + l
re-rankings. Wiring: :func:`variant_rerankers` once per query/gallery pair, then per block of
queries ``refine(reranked_similarity_stack(rerankers, r0, r1), g_pids, ...)``, ranked by its
``-sims`` as plain refinement is.

**Refine, then rerank.** Refinement runs on the cosine similarities as usual. The refined
similarity ``s`` of each query's original top-m items then becomes their initial distance,
``2 - 2 s`` (the squared euclidean distance of unit features with cosine ``s``; for the official
variant, whose ``.sims`` are ``1 + cos``, ``s`` is ``.sims - 1``), for the query-gallery pair and
its mirror, and the queries are re-ranked with it: items the ensemble raised enter the
neighbourhoods, the weights and the final ``lambda`` term as nearer than before. Every other pair
keeps the features' own distance, which refinement left alone (for L2-normalised features the
same ``2 - 2 cos``). A paper-variant score can exceed 1, giving a negative distance: nearer than any
unrefined pair, as ranking by the refined similarity has it. Refinement's exclusions (the junk of
a protocol) shape its top-m, so this is one re-ranking per protocol. Wiring: per block of queries
``refined_pairs(refine(stack, ...), variant, row_offset=r0)``, :func:`concat_pairs` of all blocks
(q * m entries), then ``Reranker(query, gallery, qg_dist=pairs).distances(r0, r1)`` per block.

:func:`rerank_then_refine` and :func:`refine_then_rerank` do either for whole matrices (small
sizes, tests); :mod:`dlcr.testing.rerank_reference` holds their plain references.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from dlcr.errors import InputError
from dlcr.evaluation.refinement import VARIANTS, Refinement, refine
from dlcr.evaluation.rerank import Pairs, Reranker

__all__ = ["concat_pairs", "refine_then_rerank", "refined_pairs", "rerank_then_refine",
           "reranked_similarity_stack", "variant_rerankers"]


def _variant_sets(variants: Any, n_query: int) -> list[Any]:
    v = variants if isinstance(variants, torch.Tensor) else torch.as_tensor(np.asarray(variants))
    if v.ndim != 3 or v.shape[1] != n_query:
        raise InputError(f"variant features must have shape (l, {n_query}, D), got {tuple(v.shape)}")
    return list(v)


def variant_rerankers(query: Any, variants: Any, gallery: Any, **kw: Any) -> list[Reranker]:
    """One :class:`Reranker` for the queries and one per variant set (``variants``: (l, q, D)),
    each against the gallery in its own pool. ``kw``: see :class:`Reranker` (not ``qg_dist``)."""
    first = Reranker(query, gallery, **kw)
    return [first] + [Reranker(v, gallery, **kw) for v in _variant_sets(variants, first.n_query)]


def reranked_similarity_stack(rerankers: Sequence[Reranker], r0: int = 0, r1: int | None = None,
                              out: torch.Tensor | None = None) -> torch.Tensor:
    """The (1 + l, r1 - r0, g) re-ranked similarities of queries r0:r1 and their variants: the stack
    :func:`~dlcr.evaluation.refinement.refine` takes (``out``: a tensor of that shape to fill)."""
    if not rerankers:
        raise InputError("no re-rankers given")
    first = rerankers[0]
    r1 = first.n_query if r1 is None else int(r1)
    shape = (len(rerankers), r1 - int(r0), first.n_gallery)
    if out is None:
        out = torch.empty(shape, dtype=first.dtype)
    elif tuple(out.shape) != shape:
        raise InputError(f"out must have shape {shape}, got {tuple(out.shape)}")
    for k, rr in enumerate(rerankers):
        if (rr.n_query, rr.n_gallery) != (first.n_query, first.n_gallery):
            raise InputError("the re-rankers of a stack must share the query count and the gallery")
        rr.similarities(r0, r1, out=out[k])
    return out


def refined_pairs(refinement: Refinement, variant: str, row_offset: int = 0) -> Pairs:
    """``(rows, cols, distances)`` of the top-m entries of a refinement of queries
    ``row_offset:row_offset + len``: the initial distances of refine-then-rerank."""
    if variant not in VARIANTS:
        raise InputError(f"unknown refinement variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    topm = refinement.topm
    local = np.arange(topm.shape[0])
    s = refinement.sims[local[:, None], topm].astype(np.float64).reshape(-1)
    if variant == "official":
        s = s - 1.0
    return np.repeat(local + int(row_offset), topm.shape[1]), topm.reshape(-1).astype(np.int64), 2.0 - 2.0 * s


def concat_pairs(parts: Iterable[Pairs]) -> Pairs:
    """The pairs of several query blocks as one ``(rows, cols, distances)``."""
    parts = list(parts)
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0)
    return tuple(np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(3))  # type: ignore[return-value]


def rerank_then_refine(query: Any, variants: Any, gallery: Any, g_pids: Any, *, m: int = 5,
                       variant: str = "paper", exclude: Any = None, **kw: Any) -> Refinement:
    """Refinement (``m``, ``variant``, ``exclude`` as :func:`refine` takes them) of the re-ranked
    similarities of the queries and their variants, whole matrices at once. ``kw``: :class:`Reranker`."""
    stack = reranked_similarity_stack(variant_rerankers(query, variants, gallery, **kw))
    return refine(stack, g_pids, m=m, variant=variant, exclude=exclude)


def refine_then_rerank(query: Any, variants: Any, gallery: Any, g_pids: Any, *, m: int = 5,
                       variant: str = "paper", exclude: Any = None,
                       **kw: Any) -> tuple[torch.Tensor, Refinement]:
    """Re-ranked distances (q, g) on the refined similarities, and the refinement, whole matrices at
    once. The features must be L2-normalised (refinement takes their dot products as cosines)."""
    dtype = kw.get("dtype", torch.float32)
    q = torch.as_tensor(query).to(dtype)
    g = torch.as_tensor(gallery).to(dtype)
    sims = torch.stack([q @ g.T] + [torch.as_tensor(v).to(dtype) @ g.T for v in _variant_sets(variants, len(q))])
    r = refine(sims, g_pids, m=m, variant=variant, exclude=exclude)
    return Reranker(q, g, qg_dist=refined_pairs(r, variant), **kw).distances(), r
