"""The protocols scored on re-ranked distances (dlcr.evaluation.rerank_eval) against plain references:
the dense re-ranking reference scored query by query, lambda = 1 (the plain ranking), the memory
budget, the junk rules, both orders with refinement, and the parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcr.errors import ConfigError, InputError
from dlcr.evaluation import Features, evaluate_protocols_reference
from dlcr.evaluation.metrics import evaluate_reference, match_masks
from dlcr.evaluation.rerank import Reranker
from dlcr.evaluation.rerank_eval import evaluate_reranked, rerank_orders
from dlcr.testing.rerank_reference import (
    refine_then_rerank_reference,
    rerank_reference,
    rerank_then_refine_reference,
)
from dlcr.types import EvalProtocol

PROTOCOLS = [EvalProtocol("standard", "query", "gallery", "standard"), EvalProtocol("sc", "query", "gallery", "SC"),
             EvalProtocol("cc", "query", "gallery", "CC")]
RANKS = (1, 5, 10, 20)


def _unit(a):
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _world(seed: int, nq: int, ng: int, dim: int = 8, ids: int = 6, n_var: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))

    def split(n):
        pids = rng.integers(0, ids, n)
        x = _unit(centres[pids] + 0.9 * rng.normal(size=(n, dim)))
        return Features(torch.from_numpy(x).float(), pids, rng.integers(0, 3, n), rng.integers(0, 2, n))

    feats = {"query": split(nq), "gallery": split(ng)}
    if not n_var:
        return feats, None
    q = feats["query"].feats.numpy()
    v = _unit(q[None] + 0.3 * rng.normal(size=(n_var, nq, dim)))
    return feats, {"query": torch.from_numpy(v).float()}


def _labels(f: Features):
    return f.pids, f.camids, f.clothes_ids


def _score(dist, q: Features, g: Features, mode: str) -> dict:
    """The per-query reference ranking of ``dist`` under ``mode`` (stable argsort, junk dropped)."""
    qp, qc, ql = _labels(q)
    gp, gc, gl = _labels(g)
    return evaluate_reference(np.asarray(dist), qp, gp, qc, gc, ql, gl, mode=mode).as_dict(RANKS)


def _with_pred(res: dict, r, q: Features, g: Features, mode: str) -> dict:
    good, _ = match_masks(q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, mode)
    has = good.any(1)
    return {**res, "pred_top1": float(np.mean(r.pred_pids[has] == np.asarray(q.pids)[has]))}


def test_plain_reranking_equals_the_dense_reference_scored_query_by_query():
    feats, _ = _world(0, 20, 60)
    q, g = feats["query"], feats["gallery"]
    got = evaluate_reranked(feats, PROTOCOLS, k1=8, k2=3, lambda_value=0.3, dtype=torch.float64)
    assert list(got) == ["standard_reranked", "sc_reranked", "cc_reranked"]
    dist = rerank_reference(q.feats.double(), g.feats.double(), k1=8, k2=3, lambda_value=0.3)
    for p in PROTOCOLS:
        assert got[f"{p.name}_reranked"] == _score(dist, q, g, p.mode), p.name
    # re-ranking changes the ranking here, so the comparison is not of the plain metrics
    plain = evaluate_protocols_reference(feats, PROTOCOLS)
    assert any(got[f"{p.name}_reranked"]["mAP"] != plain[p.name]["mAP"] for p in PROTOCOLS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lambda_one_gives_the_plain_metrics(dtype):
    feats, _ = _world(1, 30, 80)
    got = evaluate_reranked(feats, PROTOCOLS, k1=10, k2=4, lambda_value=1.0, dtype=dtype)
    plain = evaluate_protocols_reference(feats, PROTOCOLS)
    for p in PROTOCOLS:
        assert got[f"{p.name}_reranked"] == plain[p.name], p.name


def test_memory_budget_does_not_change_any_result():
    feats, var = _world(2, 600, 150, ids=20, n_var=2)
    kw = {"k1": 6, "k2": 3, "lambda_value": 0.3, "refine_variants": var, "order": "both", "m": 3}
    whole = evaluate_reranked(feats, PROTOCOLS, max_memory_gb=None, **kw)
    blocked = evaluate_reranked(feats, PROTOCOLS, max_memory_gb=1e-6, **kw)  # 256-row blocks: three of them
    assert whole == blocked
    assert len(whole) == 9


def test_a_junk_gallery_item_never_counts():
    """Every query has a copy of itself in the gallery, same camera and clothes: junk under every
    rule. The copies are every query's nearest re-ranked item, yet they never make a hit."""
    feats, _ = _world(3, 15, 45)
    q, g = feats["query"], feats["gallery"]
    gal = Features(torch.cat([g.feats, q.feats]), np.concatenate([g.pids, q.pids]),
                   np.concatenate([g.camids, q.camids]), np.concatenate([g.clothes_ids, q.clothes_ids]))
    both = {"query": q, "gallery": gal}
    dist = Reranker(q.feats, gal.feats, k1=6, k2=3).distances().numpy()
    assert (dist.argmin(1) == len(g) + np.arange(len(q))).all()
    got = evaluate_reranked(both, PROTOCOLS, k1=6, k2=3)
    for p in PROTOCOLS:
        r = got[f"{p.name}_reranked"]
        assert r == _score(dist, q, gal, p.mode), p.name
        assert r["top1"] < 1.0
    # counted as hits, the copies would give every query a top-1 match
    assert _score(dist, q, Features(gal.feats, gal.pids, gal.camids + 100, gal.clothes_ids), "standard")["top1"] == 1.0


def test_rerank_then_refine_equals_the_reference():
    feats, var = _world(4, 20, 60, n_var=2)
    q, g = feats["query"], feats["gallery"]
    kw = {"k1": 8, "k2": 3, "lambda_value": 0.3}
    got = evaluate_reranked(feats, PROTOCOLS, refine_variants=var, order="rerank_refine", m=3, dtype=torch.float64,
                            **kw)
    assert list(got) == [f"{p}{s}" for p in ("standard", "sc", "cc") for s in ("_reranked", "_reranked_refined")]
    for p in PROTOCOLS:
        _, junk = match_masks(q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, p.mode)
        r = rerank_then_refine_reference(q.feats.double(), var["query"].double(), g.feats.double(), g.pids, m=3,
                                         exclude=junk, **kw)
        want = _with_pred(_score(-r.sims, q, g, p.mode), r, q, g, p.mode)
        assert got[f"{p.name}_reranked_refined"] == pytest.approx(want, abs=1e-12), p.name


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_refine_then_rerank_equals_the_reference(variant):
    feats, var = _world(5, 20, 60, n_var=3)
    q, g = feats["query"], feats["gallery"]
    kw = {"k1": 8, "k2": 3, "lambda_value": 0.3}
    got = evaluate_reranked(feats, PROTOCOLS, refine_variants=var, order="refine-rerank", m=3, variant=variant,
                            dtype=torch.float64, **kw)
    assert list(got) == [f"{p}{s}" for p in ("standard", "sc", "cc") for s in ("_reranked", "_refined_reranked")]
    for p in PROTOCOLS:
        _, junk = match_masks(q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, p.mode)
        dist, _ = refine_then_rerank_reference(q.feats, var["query"], g.feats, g.pids, m=3, variant=variant,
                                               exclude=junk, **kw)
        assert got[f"{p.name}_refined_reranked"] == _score(dist, q, g, p.mode), p.name
    # without the junk exclusion one re-ranking serves every protocol: the same as refining whole
    loose = evaluate_reranked(feats, PROTOCOLS, refine_variants=var, order="refine_rerank", m=3, variant=variant,
                              exclude_junk=False, dtype=torch.float64, **kw)
    dist, _ = refine_then_rerank_reference(q.feats, var["query"], g.feats, g.pids, m=3, variant=variant, **kw)
    for p in PROTOCOLS:
        assert loose[f"{p.name}_refined_reranked"] == _score(dist, q, g, p.mode), p.name


def test_orders_and_bad_parameters():
    assert rerank_orders("both") == ("rerank_refine", "refine_rerank")
    assert rerank_orders(["refine-rerank", "rerank_refine"]) == ("rerank_refine", "refine_rerank")
    with pytest.raises(InputError, match="order"):
        rerank_orders("sideways")
    feats, var = _world(6, 5, 20)
    for bad in ({"k1": 0}, {"k2": 1.5}, {"lambda_value": 1.2}, {"lambda_value": True}):
        with pytest.raises(ConfigError):
            evaluate_reranked(feats, PROTOCOLS, **bad)
    with pytest.raises(InputError, match="no features for split"):
        evaluate_reranked({"query": feats["query"]}, PROTOCOLS)
    with pytest.raises(InputError, match="variant"):
        evaluate_reranked(feats, PROTOCOLS, variant="other")
    # queries without variants get the re-ranked entries only
    assert list(evaluate_reranked(feats, PROTOCOLS[:1], refine_variants={}, order="both")) == ["standard_reranked"]
