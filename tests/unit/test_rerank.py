"""k-reciprocal re-ranking (dlcr.evaluation.rerank) against the plain whole-matrix reference, its
memory-bounded chunking, its parameter checks, and its two combinations with refinement."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch

import dlcr.evaluation.rerank as rr_mod
import dlcr.evaluation.rerank_sets as sets_mod
from dlcr.errors import ConfigError, InputError
from dlcr.evaluation.refinement import refine
from dlcr.evaluation.rerank import Reranker, rerank
from dlcr.evaluation.rerank_refine import (
    concat_pairs,
    refine_then_rerank,
    refined_pairs,
    rerank_then_refine,
    reranked_similarity_stack,
    variant_rerankers,
)
from dlcr.testing.rerank_reference import (
    refine_then_rerank_reference,
    rerank_reference,
    rerank_then_refine_reference,
)

#: float64 fast vs float64 reference: they differ only in summation order
TOL = 1e-12


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def _people(rng, ids, n, dim, noise=0.8):
    centres = rng.normal(size=(ids, dim))
    pids = rng.integers(0, ids, n)
    return _unit(centres[pids] + noise * rng.normal(size=(n, dim))), pids


def _ranking(d: np.ndarray) -> np.ndarray:
    """Gallery order of each row, values equal to 1e-9 counting as ties (broken by lower index)."""
    return np.argsort(np.round(d, 9), axis=1, kind="stable")


def _fast(q, g, **kw):
    kw.setdefault("dtype", torch.float64)
    return rerank(torch.from_numpy(q), torch.from_numpy(g), **kw).numpy()


@pytest.mark.parametrize("seed,nq,ng,dim,k1,k2,lam", [
    (0, 10, 50, 8, 20, 6, 0.3),   # the defaults; k1 + 1 > most identity groups
    (1, 25, 60, 4, 5, 2, 0.3),
    (2, 3, 30, 16, 7, 1, 0.5),    # k2 = 1: no query expansion
    (3, 20, 20, 5, 4, 9, 0.0),    # k2 > k1 + 1; pure Jaccard
    (4, 8, 12, 3, 30, 25, 1.0),   # k1, k2 beyond the pool; pure initial distance
    (5, 40, 90, 6, 1, 1, 0.3),    # the smallest neighbourhoods
])
def test_matches_reference_on_random_features(seed, nq, ng, dim, k1, k2, lam):
    rng = np.random.default_rng(seed)
    q, g = rng.normal(size=(nq, dim)), rng.normal(size=(ng, dim))
    ref = rerank_reference(q, g, k1, k2, lam)
    fast = _fast(q, g, k1=k1, k2=k2, lambda_value=lam)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL)
    assert np.array_equal(np.argsort(fast, 1, kind="stable"), np.argsort(ref, 1, kind="stable"))


@pytest.mark.parametrize("seed,k1,k2", [(0, 20, 6), (1, 4, 3), (2, 9, 2), (3, 2, 6)])
def test_matches_reference_with_ties_and_small_identity_groups(seed, k1, k2):
    # small integer features: exact arithmetic, many equal distances and duplicated items; groups of
    # 2 or 3 images per person, far fewer than k1 + 1
    rng = np.random.default_rng(seed)
    centres = rng.integers(-3, 4, (14, 5))
    pids = np.repeat(np.arange(14), rng.integers(2, 4, 14))
    x = (centres[pids] + rng.integers(-1, 2, (len(pids), 5)) * (rng.random((len(pids), 1)) < 0.5)).astype(float)
    x = x[rng.permutation(len(x))]
    q, g = x[:9], x[9:]
    ref = rerank_reference(q, g, k1, k2)
    fast = _fast(q, g, k1=k1, k2=k2)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL)
    assert np.array_equal(_ranking(fast), _ranking(ref))
    assert (np.diff(np.sort(ref, 1), axis=1) == 0).any(), "the case should hold tied distances"


def test_query_sharing_no_neighbour_with_the_gallery():
    # two queries far from everything and from each other are nobody's k-reciprocal neighbour and,
    # without query expansion, share no V support with any gallery item: their Jaccard distance is 1
    # everywhere (small chunks give them query blocks of their own, with no pair to sum)
    rng = np.random.default_rng(4)
    q = np.concatenate([rng.normal(size=(3, 2)), [[60.0, 60.0], [-60.0, 60.0]]])
    g = rng.normal(size=(15, 2))
    ref = rerank_reference(q, g, 3, 1)
    fast = _fast(q, g, k1=3, k2=1, chunk_elements=30)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL)
    x = np.concatenate([q, g])
    d = ((x[3:5, None] - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(fast[3:], 0.7 + 0.3 * d[:, 5:] / d.max(1, keepdims=True), rtol=0, atol=1e-12)


def test_known_answer_when_every_item_is_a_neighbour():
    # k1 >= the pool: every item is k-reciprocal to every other, so V(i) = softmax(-dn(i, .)) over
    # the whole pool (k2 = 1), computed here directly
    rng = np.random.default_rng(7)
    q, g = rng.normal(size=(4, 3)), rng.normal(size=(9, 3))
    x = np.concatenate([q, g])
    d = ((x[:, None] - x[None]) ** 2).sum(-1)
    dn = d / d.max(1, keepdims=True)
    v = np.exp(-dn) / np.exp(-dn).sum(1, keepdims=True)
    s = np.minimum(v[:4, None, :], v[None, 4:, :]).sum(-1)
    want = 0.7 * (1 - s / (2 - s)) + 0.3 * dn[:4, 4:]
    np.testing.assert_allclose(_fast(q, g, k1=20, k2=1), want, rtol=0, atol=1e-12)


def test_float32_default_is_close_to_the_reference():
    rng = np.random.default_rng(3)
    q, _ = _people(rng, 12, 40, 32)
    g, _ = _people(rng, 12, 150, 32)
    ref = rerank_reference(q, g)
    fast = rerank(torch.from_numpy(q).float(), torch.from_numpy(g).float())
    assert fast.dtype == torch.float32
    np.testing.assert_allclose(fast.numpy(), ref, rtol=0, atol=1e-5)
    assert np.array_equal(fast.numpy().argmin(1), ref.argmin(1))


@pytest.mark.parametrize("integer", [False, True])
def test_chunk_size_and_query_blocks_do_not_change_the_result(integer, monkeypatch):
    monkeypatch.setattr(rr_mod, "ROW_GRID", 7)  # the query blocks below lie on this grid
    rng = np.random.default_rng(11)
    if integer:
        q, g = rng.integers(-2, 3, (30, 6)).astype(float), rng.integers(-2, 3, (70, 6)).astype(float)
    else:
        q, g = rng.normal(size=(30, 6)), rng.normal(size=(70, 6))
    whole = _fast(q, g, k1=8, k2=4, chunk_elements=1 << 30)
    for chunk in (16, 100, 999):
        rr = Reranker(torch.from_numpy(q), torch.from_numpy(g), k1=8, k2=4, dtype=torch.float64,
                      chunk_elements=chunk)
        blocks = torch.cat([rr.distances(r0, min(30, r0 + 7)) for r0 in range(0, 30, 7)]).numpy()
        assert torch.equal(torch.cat([rr.distances(0, 21), rr.distances(21, 30)]), rr.distances())
        if integer:  # exact arithmetic: bit for bit, whatever the tiles
            assert np.array_equal(blocks, whole)
        else:  # other tiles round the distances differently
            np.testing.assert_allclose(blocks, whole, rtol=0, atol=TOL)
        assert np.array_equal(_ranking(blocks), _ranking(whole))


def test_working_memory_is_bounded_by_the_chunk(monkeypatch):
    rng = np.random.default_rng(5)
    nq, ng = 600, 2400
    q, _ = _people(rng, 100, nq, 16)
    g, _ = _people(rng, 100, ng, 16)
    n, chunk = nq + ng, 1 << 16
    sizes = []
    real = sets_mod.distance_block

    def spy(*args):
        d = real(*args)
        sizes.append(d.numel())
        return d

    monkeypatch.setattr(sets_mod, "distance_block", spy)  # the tiles
    monkeypatch.setattr(rr_mod, "distance_block", spy)  # the query-gallery blocks
    qt, gt = torch.from_numpy(q).float(), torch.from_numpy(g).float()
    tracemalloc.start()
    try:
        rr = Reranker(qt, gt, chunk_elements=chunk)
        out = [rr.distances(r0, r0 + 5) for r0 in range(0, nq, 5)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(sizes) > 10 and max(sizes) <= chunk  # many distance blocks, none above the chunk
    assert sum(sizes) < 0.8 * n * n + nq * ng  # only tiles on and above the diagonal, then q x g once
    # the state (neighbour lists, sparse V) is O(n (k1 + 1) k2) and stays far below one dense matrix
    assert peak < n * n * 8 / 4, f"numpy peak {peak / 2**20:.1f} MiB against a dense {n * n * 8 / 2**20:.0f} MiB"
    monkeypatch.undo()
    np.testing.assert_allclose(torch.cat(out).numpy(), rerank(qt, gt).numpy(), rtol=0, atol=1e-6)


def test_similarities_and_out():
    rng = np.random.default_rng(2)
    q, g = rng.normal(size=(6, 4)), rng.normal(size=(20, 4))
    rr = Reranker(torch.from_numpy(q), torch.from_numpy(g), k1=5, dtype=torch.float64)
    buf = torch.empty(3, 20, dtype=torch.float64)
    assert rr.distances(2, 5, out=buf) is buf
    np.testing.assert_array_equal(rr.similarities(2, 5).numpy(), 1.0 - buf.numpy())
    with pytest.raises(InputError, match="out must be"):
        rr.distances(0, 2, out=buf)
    with pytest.raises(InputError, match="out must be"):
        rr.distances(2, 5, out=buf.float())
    with pytest.raises(InputError, match="query rows"):
        rr.distances(4, 9)


@pytest.mark.parametrize("kw,name", [
    ({"k1": 0}, "k1"), ({"k1": 2.5}, "k1"), ({"k1": True}, "k1"), ({"k2": 0}, "k2"), ({"k2": "6"}, "k2"),
    ({"lambda_value": -0.1}, "lambda"), ({"lambda_value": 1.5}, "lambda"), ({"lambda_value": float("nan")}, "lambda"),
    ({"lambda_value": "0.3"}, "lambda"),
])
def test_bad_parameters_are_one_line_config_errors(kw, name):
    x = torch.randn(5, 3)
    with pytest.raises(ConfigError) as e:
        rerank(x, x, **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"re-ranking {name} must be")


def test_bad_inputs_are_input_errors():
    q, g = torch.randn(4, 3), torch.randn(6, 3)
    bad = [
        ((q, torch.randn(6, 2)), {}, "differ in size"),
        ((q.clone().fill_(float("nan")), g), {}, "NaN"),
        ((torch.zeros(0, 3), g), {}, "shape"),
        ((q, g), {"qg_dist": ([0, 0], [1, 1], [0.1, 0.2])}, "twice"),
        ((q, g), {"qg_dist": ([4], [0], [0.1])}, "within"),
        ((q, g), {"qg_dist": ([0], [0])}, "tuple"),
        ((torch.ones(3, 2), torch.ones(4, 2)), {}, "largest distance"),
    ]
    for args, kw, match in bad:
        with pytest.raises(InputError, match=match):
            rerank(*args, **kw)


def test_replaced_distances_match_the_reference():
    rng = np.random.default_rng(9)
    q, g = rng.normal(size=(7, 5)), rng.normal(size=(25, 5))
    rows, cols = np.array([0, 0, 3, 6, 6]), np.array([4, 9, 0, 24, 3])
    vals = np.array([-1.5, 0.2, 3.0, 0.0, -0.25])  # negative ones too, as refined scores give
    sq_q, sq_g = (q * q).sum(1), (g * g).sum(1)
    dense = np.maximum(sq_q[:, None] + sq_g[None] - 2 * q @ g.T, 0)
    dense[rows, cols] = vals
    ref = rerank_reference(q, g, 6, 3, qg_dist=dense)
    fast = _fast(q, g, k1=6, k2=3, qg_dist=(rows, cols, vals), chunk_elements=50)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=TOL)
    assert np.array_equal(np.argsort(fast, 1, kind="stable"), np.argsort(ref, 1, kind="stable"))


def _refine_case(seed):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, 6))
    gp, qp = rng.integers(0, 8, 40), rng.integers(0, 8, 12)
    g = _unit(centres[gp] + 0.8 * rng.normal(size=(40, 6)))
    q = _unit(centres[qp] + 0.8 * rng.normal(size=(12, 6)))
    v = _unit(q[None] + 0.3 * rng.normal(size=(3, 12, 6)))
    return q, v, g, gp, rng.random((12, 40)) < 0.1


PARAMS = {"k1": 6, "k2": 3, "lambda_value": 0.3}


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("use_exclude", [False, True])
def test_rerank_then_refine_matches_reference(variant, use_exclude):
    q, v, g, gp, excl = _refine_case(1)
    ex = excl if use_exclude else None
    got = rerank_then_refine(torch.from_numpy(q), torch.from_numpy(v), torch.from_numpy(g), gp, m=4,
                             variant=variant, exclude=ex, dtype=torch.float64, **PARAMS)
    ref = rerank_then_refine_reference(q, v, g, gp, m=4, variant=variant, exclude=ex, **PARAMS)
    assert np.array_equal(got.pred_pids, ref.pred_pids) and np.array_equal(got.topm, ref.topm)
    np.testing.assert_allclose(got.scores, ref.scores, rtol=0, atol=1e-9)
    np.testing.assert_allclose(got.sims, ref.sims, rtol=0, atol=1e-6)  # float32 output of refine


def test_rerank_then_refine_stack_streams_and_keeps_plain_reranking(monkeypatch):
    monkeypatch.setattr(rr_mod, "ROW_GRID", 5)
    q, v, g, _, _ = _refine_case(2)
    rrs = variant_rerankers(torch.from_numpy(q), torch.from_numpy(v), torch.from_numpy(g), dtype=torch.float64,
                            **PARAMS)
    whole = reranked_similarity_stack(rrs)
    assert whole.shape == (4, 12, 40)
    np.testing.assert_array_equal(whole[0].numpy(), 1.0 - _fast(q, g, **PARAMS))  # variants leave queries alone
    np.testing.assert_allclose(whole[2].numpy(), 1.0 - rerank_reference(v[1], g, **PARAMS), rtol=0, atol=TOL)
    parts = torch.cat([reranked_similarity_stack(rrs, r0, min(12, r0 + 5)) for r0 in range(0, 12, 5)], dim=1)
    assert torch.equal(parts, whole)


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("use_exclude", [False, True])
def test_refine_then_rerank_matches_reference(variant, use_exclude):
    q, v, g, gp, excl = _refine_case(3)
    ex = excl if use_exclude else None
    got, r = refine_then_rerank(torch.from_numpy(q), torch.from_numpy(v), torch.from_numpy(g), gp, m=4,
                                variant=variant, exclude=ex, dtype=torch.float64, **PARAMS)
    ref, r_ref = refine_then_rerank_reference(q, v, g, gp, m=4, variant=variant, exclude=ex, **PARAMS)
    assert np.array_equal(r.topm, r_ref.topm)
    # the reference replaces every query-gallery distance by 2 - 2 s of refine's float32 output
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=1e-6)
    assert np.array_equal(np.argsort(got.numpy(), 1, kind="stable"), np.argsort(ref, 1, kind="stable"))
    plain = _fast(q, g, **PARAMS)
    assert not np.allclose(got.numpy(), plain, atol=1e-3), "the refined distances should change the result"


def test_refine_then_rerank_from_blocks_equals_whole(monkeypatch):
    monkeypatch.setattr(rr_mod, "ROW_GRID", 4)
    q, v, g, gp, _ = _refine_case(4)
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    sims = torch.stack([qt @ gt.T] + [torch.from_numpy(x) @ gt.T for x in v])
    pairs = concat_pairs(refined_pairs(refine(sims[:, r0:r0 + 5], gp, m=4), "paper", row_offset=r0)
                         for r0 in range(0, 12, 5))
    streamed = Reranker(qt, gt, qg_dist=pairs, dtype=torch.float64, **PARAMS)
    whole, _ = refine_then_rerank(qt, torch.from_numpy(v), gt, gp, m=4, dtype=torch.float64, **PARAMS)
    assert torch.equal(torch.cat([streamed.distances(r0, min(12, r0 + 4)) for r0 in range(0, 12, 4)]), whole)
    with pytest.raises(InputError, match="unknown refinement variant"):
        refined_pairs(refine(sims, gp, m=4), "nope")
