"""Evaluation and refinement streamed over blocks of queries give exactly the whole-matrix result.

The reference here is the computation as it was before streaming: the whole (1 + l, n_query,
n_gallery) similarity stack, the whole junk mask, one refinement, one ranking.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcr.errors import InputError
from dlcr.evaluation import Features, evaluate_protocols, evaluate_refined
from dlcr.evaluation.evaluator import RANKS, bytes_per_query_row, query_rows_per_block, similarity_stack
from dlcr.evaluation.features import SIM_BLOCK, cosine_distance
from dlcr.evaluation.metrics import evaluate, evaluate_reference, junk_counts, match_masks
from dlcr.evaluation.refinement import refine
from dlcr.types import EvalProtocol

TINY_BUDGET = 1e-6  # GiB: forces one SIM_BLOCK of queries per block


def _feats(rng: np.random.Generator, n: int, pids: int, dim: int = 16) -> Features:
    pid = rng.integers(0, pids, n)
    f = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(n, dim))).float() + 0.8 *
                                      torch.from_numpy(rng.normal(size=(pids, dim))).float()[pid], dim=1)
    return Features(feats=f, pids=pid, camids=rng.integers(0, 3, n), clothes_ids=rng.integers(0, 4, n))


def _variants(rng: np.random.Generator, q: Features, l: int) -> torch.Tensor:  # noqa: E741
    noise = torch.from_numpy(rng.normal(size=(l, len(q), q.feats.shape[1]))).float()
    return torch.nn.functional.normalize(q.feats[None] + 0.3 * noise, dim=-1)


def _whole(q: Features, v: torch.Tensor, g: Features, p: EvalProtocol, m: int, variant: str):
    """The pre-streaming computation: everything of the pair at once."""
    dist = cosine_distance(q.feats, g.feats)
    plain = evaluate(dist, q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, mode=p.mode)
    sims = similarity_stack(q, v, g)
    good, junk = match_masks(q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, mode=p.mode)
    r = refine(sims, g.pids, m=m, variant=variant, exclude=junk)
    ref = evaluate(-r.sims, q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, mode=p.mode)
    out = ref.as_dict(RANKS)
    valid = good.any(1)
    out["pred_top1"] = float(np.mean(r.pred_pids[valid] == q.pids[valid]))
    return plain.as_dict(RANKS), out, r.sims


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_streamed_blocks_equal_the_whole_matrix_bit_for_bit(variant):
    rng = np.random.default_rng(0)
    q, g, q2 = _feats(rng, 2 * SIM_BLOCK + 77, 60), _feats(rng, 900, 60), _feats(rng, 40, 60)
    split = {"query": q, "gallery": g, "query2": q2}
    protocols = [EvalProtocol("standard", "query", "gallery", "standard"),
                 EvalProtocol("sc", "query", "gallery", "SC"),
                 EvalProtocol("cc", "query", "gallery", "CC"),
                 EvalProtocol("other", "query2", "gallery", "CC")]
    variants = {"query": _variants(rng, q, 3), "query2": _variants(rng, q2, 3)}
    assert query_rows_per_block(len(q), len(g), 3, TINY_BUDGET) == SIM_BLOCK  # three blocks, the last partial
    runs = {}
    for budget in (TINY_BUDGET, None, 4.0):
        kept: dict = {}
        runs[budget] = (evaluate_protocols(split, protocols, refine_variants=variants, m=5, variant=variant,
                                           refined_out=kept, max_memory_gb=budget), kept)
    streamed, kept = runs[TINY_BUDGET]
    assert list(streamed) == ["standard", "standard_refined", "sc", "sc_refined", "cc", "cc_refined",
                              "other", "other_refined"]
    for p in protocols:
        plain, refined, sims = _whole(split[p.query], variants[p.query], g, p, 5, variant)
        assert streamed[p.name] == plain
        assert streamed[f"{p.name}_refined"] == refined
        np.testing.assert_array_equal(kept[f"{p.name}_refined_sims"], sims)
    for budget in (None, 4.0):
        assert runs[budget][0] == streamed
    # and the per-query loop oracle agrees on the plain ranking
    ref = evaluate_reference(cosine_distance(q.feats, g.feats), q.pids, g.pids, q.camids, g.camids,
                             q.clothes_ids, g.clothes_ids, mode="CC")
    assert streamed["cc"]["mAP"] == ref.mAP and streamed["cc"]["top1"] == ref.top(1)


def test_m_is_capped_by_the_query_with_the_fewest_selectable_items_in_any_block():
    """One query (in the last block) has only 2 non-junk gallery items: the whole-matrix refinement
    caps m at 2 for every query, so every block must use the same cap."""
    rng = np.random.default_rng(3)
    nq = SIM_BLOCK + 10
    q = _feats(rng, nq, 5)
    q.pids[:-1] = rng.integers(1, 5, nq - 1)
    q.pids[-1], q.camids[-1] = 0, 0
    g_pids = np.r_[np.zeros(40, dtype=np.int64), 1, 2]  # person 0 seen 40 times by camera 0: junk
    gf = torch.from_numpy(rng.normal(size=(42, 16))).float()
    g = Features(feats=torch.nn.functional.normalize(gf, dim=1), pids=g_pids,
                 camids=np.r_[np.zeros(40, dtype=np.int64), 1, 1], clothes_ids=np.zeros(42, dtype=np.int64))
    assert junk_counts(q.pids, g.pids, q.camids, g.camids).max() == 40
    v = _variants(rng, q, 2)
    p = EvalProtocol("standard", "query", "gallery", "standard")
    # the official arithmetic (1 + cos) needs no positive top-1 on random features
    whole_plain, whole_ref, whole_sims = _whole(q, v, g, p, 5, "official")
    got, sims = evaluate_refined(q, v, g, p, m=5, variant="official", max_memory_gb=TINY_BUDGET)
    assert got == whole_ref
    np.testing.assert_array_equal(sims, whole_sims)


@pytest.mark.parametrize("mode", ["standard", "CC", "SC"])
def test_junk_counts_are_the_row_sums_of_the_junk_mask(mode):
    rng = np.random.default_rng(5)
    q, g = _feats(rng, 50, 8), _feats(rng, 120, 8)
    q.pids[0] = 99  # a person the gallery does not hold
    _, junk = match_masks(q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, mode=mode)
    np.testing.assert_array_equal(junk_counts(q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids,
                                              mode=mode), junk.sum(1))


def test_block_size_follows_the_budget_in_whole_similarity_blocks():
    ng, l = 125_000, 6  # noqa: E741 - LaST's gallery, the paper's l
    per_row = bytes_per_query_row(ng, l)
    rows = query_rows_per_block(10_000, ng, l, 4.0)
    assert rows % SIM_BLOCK == 0 and rows * per_row <= 4.0 * 2**30 < (rows + SIM_BLOCK) * per_row
    assert query_rows_per_block(100, ng, l, 4.0) == 100  # everything fits: one block
    assert query_rows_per_block(10_000, ng, l, None) == 10_000
    with pytest.raises(InputError, match="max_memory_gb must be > 0"):
        query_rows_per_block(10, 10, 0, 0.0)
    with pytest.raises(InputError, match="max_memory_gb must be > 0"):
        query_rows_per_block(10, 10, 0, float("nan"))
