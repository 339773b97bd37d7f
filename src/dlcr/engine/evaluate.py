"""Evaluating a trained model on a dataset's protocols, with optional prediction refinement.

Refinement (docs/design.md §7, §8) needs, for every query image, ``l`` generated clothes-changed variants
(``kind == "query"`` rows of a manifest). Their features are stacked into an ``(l, n_query, D)``
tensor; a query with fewer than ``l`` usable variants (e.g. an empty clothes mask) is padded with its
own feature, which is counted and logged.

A model is evaluated at the input size it was trained at: :meth:`EvalSettings.for_checkpoint` takes
``data.height`` / ``data.width`` / ``data.seq_len`` / ``data.interpolation`` from the training config a
checkpoint records
(the normalisation is the fixed ImageNet one of :mod:`dlcr.data.transforms`, so nothing to record),
unless the user set the key explicitly (``--set``), which wins with a warning naming both values.

Re-ranking: with ``rerank`` (:class:`RerankSettings`), :func:`evaluate_model` also scores every
protocol on k-reciprocal re-ranked distances (``<protocol>_reranked``) and, with refinement, in the
orders asked for (``<protocol>_reranked_refined``: re-rank, then refine; ``<protocol>_refined_reranked``:
refine, then re-rank); see :mod:`dlcr.evaluation.rerank_eval`.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlcr.errors import CheckpointError, InputError
from dlcr.io.paths import safe_join
from dlcr.types import EvalProtocol, Sample
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

# keys of the recorded training config that decide what input the model expects (EvalSettings field)
CHECKPOINT_INPUT_KEYS = {"data.height": "height", "data.width": "width", "data.seq_len": "seq_len",
                         "data.interpolation": "interpolation"}


@dataclass(frozen=True)
class RerankSettings:
    """k-reciprocal re-ranking's parameters (Zhong et al.; ``eval.rerank_k1`` / ``_k2`` / ``_lambda``)."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3


@dataclass(frozen=True)
class EvalSettings:
    height: int
    width: int
    batch_size: int = 128
    workers: int = 0
    flip: bool = True
    seq_len: int = 4
    max_memory_gb: float | None = 4.0  # per query/gallery pair's blocks (None: whole matrices)
    interpolation: str = "bilinear"  # the resize of data.interpolation (CAL's video recipe: bicubic)
    half: bool = False  # eval.half: feature extraction under float16 autocast on CUDA (ignored on the CPU)

    def for_checkpoint(self, recorded: Mapping[str, Any] | None, explicit: Collection[str] = (),
                       source: str = "the checkpoint") -> EvalSettings:
        """These settings with the input keys (:data:`CHECKPOINT_INPUT_KEYS`) taken from ``recorded``,
        the training config a checkpoint saved, unless named in ``explicit`` (config keys or sections
        the user set with ``--set``): then the user's value wins and a differing one is warned about.
        ``EvalSettings.for_checkpoint(st, recorded, ...)`` is the same call."""
        st = self
        if not recorded:  # a pickle, or a checkpoint saved without its config: nothing to follow
            return st
        changes: dict[str, Any] = {}
        adopted = []
        for key, attr in CHECKPOINT_INPUT_KEYS.items():
            section, leaf = key.split(".")
            part = recorded.get(section)
            saved = part.get(leaf) if isinstance(part, Mapping) else None
            if saved is None:
                continue
            if attr == "interpolation":
                if saved not in ("bilinear", "bicubic"):
                    raise CheckpointError(f"{source} records {key}={saved!r}, not 'bilinear' or 'bicubic'")
            elif isinstance(saved, bool) or not isinstance(saved, int) or saved < 1:
                raise CheckpointError(f"{source} records {key}={saved!r}, not a positive integer")
            mine = getattr(st, attr)
            if saved == mine:
                continue
            if key in explicit or section in explicit:
                log.warning("%s=%s was set explicitly, but %s was trained with %s=%s; evaluating with %s as asked",
                            key, mine, source, key, saved, mine)
            else:
                changes[attr] = saved
                adopted.append(f"{key}={saved} (config: {mine})")
        if adopted:
            log.info("evaluating with %s's %s", source, ", ".join(adopted))
        return replace(st, **changes) if changes else st


def split_features(model: torch.nn.Module, splits: Mapping[str, Sequence[Sample]], root: str | os.PathLike,
                   names: Sequence[str], st: EvalSettings, *, device: Any = None, video: bool = False) -> dict[str, Any]:
    from dlcr.data.loaders import make_eval_loader
    from dlcr.evaluation import extract_features

    out = {}
    for name in names:
        if name not in splits:
            raise InputError(f"split {name!r} is missing; available: {', '.join(sorted(splits))}")
        loader = make_eval_loader(splits[name], Path(root), height=st.height, width=st.width,
                                  batch_size=st.batch_size, workers=st.workers, video=video, seq_len=st.seq_len,
                                  interpolation=st.interpolation)
        out[name] = extract_features(model, loader, flip=st.flip, device=device, desc=f"features [{name}]",
                                     half=st.half)
    return out


def variant_features(model: torch.nn.Module, queries: Sequence[Sample], rows: Sequence[Mapping[str, Any]],
                     gen_root: str | os.PathLike, l: int, query_feats: torch.Tensor, st: EvalSettings,  # noqa: E741
                     *, device: Any = None) -> tuple[torch.Tensor, int]:
    """Features of the ``l`` variants of each query, shape (l, n_query, D); returns also the pad count."""
    from dlcr.data.loaders import make_eval_loader
    from dlcr.evaluation import extract_features

    index = {s.path: i for i, s in enumerate(queries)}
    chosen: list[list[str]] = [[] for _ in queries]
    for r in sorted(rows, key=lambda r: (r["source"], int(r["variant"]))):
        i = index.get(r["source"])
        if i is not None and r.get("file") and len(chosen[i]) < l:
            # absolute (read below with root "/") and never outside gen_root, whatever the manifest says
            chosen[i].append(str(safe_join(gen_root, r["file"])))
    flat = [(qi, p) for qi, ps in enumerate(chosen) for p in ps]
    out = query_feats.unsqueeze(0).repeat(l, 1, 1).clone()
    padded = sum(l - len(ps) for ps in chosen)
    if padded:
        log.warning("%d query variant slot(s) had no generated image and use the query itself", padded)
    if flat:
        fake = [Sample(path=p, pid=-1, camid=-1, clothes_id=-1, split="variant") for _, p in flat]
        loader = make_eval_loader(fake, Path("/"), height=st.height, width=st.width, batch_size=st.batch_size,
                                  workers=st.workers, interpolation=st.interpolation)
        f = extract_features(model, loader, flip=st.flip, device=device, desc="features [query variants]",
                             half=st.half).feats
        slot = [0] * len(queries)
        for (qi, _), feat in zip(flat, f, strict=True):
            out[slot[qi], qi] = feat.to(out.dtype)
            slot[qi] += 1
    return out, padded


def evaluate_model(model: torch.nn.Module, splits: Mapping[str, Sequence[Sample]], root: str | os.PathLike,
                   protocols: Sequence[EvalProtocol], st: EvalSettings, *, device: Any = None, video: bool = False,
                   refine_rows: Sequence[Mapping[str, Any]] | None = None, refine_root: str | os.PathLike | None = None,
                   l: int = 6, m: int = 5, variant: str = "paper",  # noqa: E741
                   keep_features: bool = False, rerank: RerankSettings | tuple[int, int, float] | None = None,
                   rerank_order: str | Sequence[str] = "both") -> dict[str, Any]:
    """Metrics per protocol (``{name: {top1, top5, top10, top20, mAP, mINP, num_queries}}``).

    With ``refine_rows`` (query-variant manifest rows), each protocol is also evaluated after
    prediction refinement under the name ``<protocol>_refined``. With ``rerank`` (settings or a
    ``(k1, k2, lambda)`` tuple), after re-ranking too: ``<protocol>_reranked`` and, with refinement,
    per ``rerank_order`` (``rerank_refine``, ``refine_rerank`` or ``both``) ``<protocol>_reranked_refined``
    / ``<protocol>_refined_reranked``. The plain and refined entries are the same with or without it.
    """
    from dlcr.evaluation import evaluate_protocols
    from dlcr.evaluation.rerank_eval import SUFFIXES

    names = sorted({p.query for p in protocols} | {p.gallery for p in protocols})
    model.eval()
    feats = split_features(model, splits, root, names, st, device=device, video=video)
    vfeats: dict[str, torch.Tensor] | None = None
    if refine_rows is not None:
        vfeats = {}
        for p in protocols:
            if p.query not in vfeats:
                vfeats[p.query], _ = variant_features(model, splits[p.query], refine_rows, refine_root or root, l,
                                                      feats[p.query].feats, st, device=device)
    extras: dict[str, Any] = {}
    metrics: dict[str, Any] = dict(evaluate_protocols(feats, protocols, refine_variants=vfeats, m=m, variant=variant,
                                                      refined_out=extras if keep_features else None,
                                                      max_memory_gb=st.max_memory_gb))
    if rerank is not None:
        extra = _reranked(feats, protocols, vfeats, rerank, rerank_order, m=m, variant=variant,
                          max_memory_gb=st.max_memory_gb)
        grouped: dict[str, Any] = {}
        for p in protocols:  # each protocol's entries together: plain, refined, then re-ranked
            for key in (p.name, f"{p.name}_refined"):
                if key in metrics:
                    grouped[key] = metrics.pop(key)
            grouped.update({k: extra[k] for k in (f"{p.name}{x}" for x in SUFFIXES.values()) if k in extra})
        metrics = {**grouped, **metrics, **{k: v for k, v in extra.items() if k not in grouped}}
    if keep_features:
        metrics["_features"] = feats
        metrics["_extras"] = extras
    return metrics


def _reranked(feats: Mapping[str, Any], protocols: Sequence[EvalProtocol], vfeats: Mapping[str, Any] | None,
              rerank: RerankSettings | tuple[int, int, float], order: str | Sequence[str], *, m: int, variant: str,
              max_memory_gb: float | None) -> dict[str, Any]:
    from dlcr.evaluation.rerank_eval import evaluate_reranked

    rs = rerank if isinstance(rerank, RerankSettings) else RerankSettings(*rerank)
    return evaluate_reranked(feats, protocols, k1=rs.k1, k2=rs.k2, lambda_value=rs.lambda_value,
                             refine_variants=vfeats, order=order, m=m, variant=variant,
                             max_memory_gb=max_memory_gb)


def save_features(path: str | os.PathLike, query: Any, gallery: Any) -> None:
    """``features.npz`` for the report: q_/g_ feats, pids, camids, clothes."""
    from dlcr.io.atomic import atomic_write

    arrays = {}
    for pre, f in (("q", query), ("g", gallery)):
        arrays[f"{pre}_feats"] = f.feats.cpu().numpy().astype(np.float32)
        arrays[f"{pre}_pids"] = np.asarray(f.pids)
        arrays[f"{pre}_camids"] = np.asarray(f.camids)
        arrays[f"{pre}_clothes"] = np.asarray(f.clothes_ids)
    with atomic_write(path, "wb") as fh:
        np.savez(fh, **arrays)
