"""Prediction refinement: hand-computed cases for every rule, exact agreement with the loop reference,
and refined evaluation through the evaluator."""

import numpy as np
import pytest
import torch

from dlcr.errors import InputError
from dlcr.evaluation import (
    Features,
    cosine_similarity,
    evaluate,
    evaluate_refined,
    refine,
    refine_reference,
)
from dlcr.types import EvalProtocol

BOTH = pytest.mark.parametrize("fn", [refine, refine_reference], ids=["vectorised", "reference"])

# Gallery of six images of persons 1, 2, 1, 3, 2, 4; one query with one variant; m = 3.
#   original top-3: idx 0 (0.9, p1), idx 1 (0.8, p2), idx 3 (0.7, p3)   -> S = {1, 2, 3}
#   variant  top-3: idx 5 (0.9, p4: not in S), idx 1 (0.6, p2), idx 4 (0.5, p2)
G = np.array([1, 2, 1, 3, 2, 4])
ORIG = [0.9, 0.8, 0.5, 0.7, 0.1, 0.2]
VAR = [0.1, 0.6, 0.2, 0.3, 0.5, 0.9]


def sims(orig=ORIG, var=VAR, dtype=np.float64):
    return np.array([[orig], [var]], dtype=dtype)  # (1 + l, n_query, n_gallery)


@BOTH
def test_paper_rule_by_hand(fn):
    r = fn(sims(), G, m=3, variant="paper")
    # normalised by each top-3 maximum (0.9 for both; the variant's max belongs to the ignored p4)
    s1, s2, s3 = 0.9 / 0.9, 0.8 / 0.9 + (0.6 + 0.5) / 0.9, 0.7 / 0.9  # p2: sum over its two entries
    assert list(r.topm[0]) == [0, 1, 3]
    np.testing.assert_allclose(r.scores[0], [s1, s2, s3], rtol=1e-12)
    assert r.pred_pids[0] == 2  # the refinement overturns the original top-1 (person 1)
    # original top-3 entries raised to max(score, cos); idx 2 (person 1, not in the top-3) keeps 0.5
    np.testing.assert_allclose(r.sims[0], [s1, s2, 0.5, s3, 0.1, 0.2], rtol=1e-6)
    assert r.sims.dtype == np.float32 and r.sims.shape == (1, 6)


@BOTH
def test_official_rule_by_hand(fn):
    r = fn(sims(), G, m=3, variant="official")
    # 1 + cos; per subject the maximum within a top-m; gains x^2 / max for the original and the variant
    m0, m1 = 1.9, 1.9
    s1 = 1.9 + 1.9**2 / m0
    s2 = 1.8 + 1.8**2 / m0 + 1.6**2 / m1  # variant: max(1.6, 1.5) = 1.6, not the sum
    s3 = 1.7 + 1.7**2 / m0
    np.testing.assert_allclose(r.scores[0], [s1, s2, s3], rtol=1e-12)
    assert r.pred_pids[0] == 2
    np.testing.assert_allclose(r.sims[0], [s1, s2, 1.5, s3, 1.1, 1.2], rtol=1e-6)  # 1 + cos elsewhere


@BOTH
def test_sum_versus_max_per_subject(fn):
    var = list(VAR)
    var[4] = 0.55  # p2's second variant entry rises but stays below its first
    paper = fn(sims(var=var), G, m=3, variant="paper")
    official = fn(sims(var=var), G, m=3, variant="official")
    assert paper.scores[0, 1] == pytest.approx(0.8 / 0.9 + (0.6 + 0.55) / 0.9)
    assert official.scores[0, 1] == fn(sims(), G, m=3, variant="official").scores[0, 1]


@BOTH
def test_subjects_outside_the_original_top_m_are_ignored(fn):
    # a variant finds person 4 with top similarity: it can never be predicted, only normalises
    var = [0.05, 0.3, 0.0, 0.0, 0.0, 0.99]  # variant top-3: idx 5 (p4), idx 1 (p2), idx 0 (p1)
    r = fn(sims(var=var), G, m=3, variant="paper")
    expected = [1.0 + 0.05 / 0.99, 0.8 / 0.9 + 0.3 / 0.99, 0.7 / 0.9]  # p4's 0.99 only normalises
    np.testing.assert_allclose(r.scores[0], expected, rtol=1e-12)
    assert r.pred_pids[0] == 2


@BOTH
def test_tie_rules(fn):
    # top-m: equal similarities -> lower gallery index first (idx 0 beats 2 and 3)
    s = np.array([[[0.5, 0.9, 0.5, 0.5]]], dtype=np.float32)
    assert list(fn(s, [1, 2, 3, 4], m=2).topm[0]) == [1, 0]
    # argmax: equal scores -> the subject appearing first in the original ranking
    s = np.array([[[0.5, 0.25, 0.25]]], dtype=np.float32)  # scores 1.0 and 0.5 + 0.5, exactly
    assert fn(s, [5, 6, 6], m=3).pred_pids[0] == 5
    assert fn(s, [6, 5, 5], m=3).pred_pids[0] == 6
    s = np.array([[[0.25, 0.5, 0.25]]], dtype=np.float32)
    assert fn(s, [5, 6, 5], m=3).pred_pids[0] == 6


@BOTH
def test_m_larger_than_gallery_and_no_variants(fn):
    r = fn(np.array([[[0.2, 0.4]]]), [3, 4], m=5)
    assert r.topm.shape == (1, 2) and r.pred_pids[0] == 4
    np.testing.assert_allclose(r.scores[0], [1.0, 0.5])


@BOTH
def test_exclude_keeps_items_out_of_every_top_m(fn):
    excl = np.array([[True, False, False, False, False, False]])  # idx 0 (person 1) is junk
    r = fn(sims(), G, m=3, exclude=excl)
    assert list(r.topm[0]) == [1, 3, 2]
    assert r.sims[0, 0] == np.float32(0.9)  # excluded entries keep their value
    # original max is now 0.8; person 1 enters through idx 2 (0.5)
    np.testing.assert_allclose(r.scores[0], [0.8 / 0.8 + 1.1 / 0.9, 0.7 / 0.8, 0.5 / 0.8], rtol=1e-12)


def _random(rng, ties: bool):
    n_mat, nq, ng = int(rng.integers(1, 6)), int(rng.integers(1, 15)), int(rng.integers(1, 40))
    if ties:
        s = rng.integers(1, 6, (n_mat, nq, ng)).astype(np.float32) / 5
    else:
        s = rng.uniform(0.05, 1.0, (n_mat, nq, ng)).astype(np.float32)
    return s, rng.integers(0, int(rng.integers(1, 8)), ng), int(rng.integers(1, 8))


@pytest.mark.parametrize("variant", ["paper", "official"])
@pytest.mark.parametrize("ties", [False, True], ids=["no-ties", "ties"])
def test_equals_reference_exactly(variant, ties):
    rng = np.random.default_rng(7 if ties else 8)
    for trial in range(60):
        s, gp, m = _random(rng, ties)
        excl = rng.random(s.shape[1:]) < 0.3 if trial % 3 == 0 else None
        if excl is not None and excl.all(1).any():
            excl[:, 0] = False
        if trial % 4 == 1:
            s = s.astype(np.float64)
        a = refine_reference(s, gp, m, variant, exclude=excl)
        b = refine(torch.from_numpy(s) if trial % 2 else s, gp, m, variant, exclude=excl)
        for field in ("pred_pids", "sims", "topm", "scores"):
            x, y = getattr(a, field), getattr(b, field)
            assert x.dtype == y.dtype and np.array_equal(x, y), (trial, field)


def test_equals_reference_on_a_larger_problem():
    rng = np.random.default_rng(0)
    s = np.round(rng.uniform(0.0, 1.0, (7, 60, 800)), 2).astype(np.float32)  # many ties at the top-m
    gp = rng.integers(0, 40, 800)
    for variant in ("paper", "official"):
        a, b = refine_reference(s, gp, 5, variant), refine(s, gp, 5, variant)
        assert np.array_equal(a.sims, b.sims) and np.array_equal(a.pred_pids, b.pred_pids)
        assert np.array_equal(a.scores, b.scores) and np.array_equal(a.topm, b.topm)


@BOTH
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(variant="fancy"), "unknown refinement variant"),
        (dict(sims=np.ones((2, 6))), "shape"),
        (dict(sims=np.ones((2, 1, 0))), "empty"),
        (dict(g_pids=G[:4]), "g_pids has 4"),
        (dict(m=0), "m must be"),
        (dict(sims=sims(var=[np.nan, 0, 0, 0, 0, 0])), "NaN"),  # outside every top-m: still refused
        (dict(sims=sims(orig=[np.inf, 0, 0, 0, 0, 0])), "NaN"),
        (dict(sims=-np.abs(sims())), "positive top-1"),
        (dict(exclude=np.ones((2, 6), bool)), "exclude must have shape"),
        (dict(exclude=np.ones((1, 6), bool)), "every gallery item excluded"),
    ],
)
def test_input_errors(fn, kwargs, pattern):
    args = dict(sims=sims(), g_pids=G, m=3, variant="paper")
    args.update(kwargs)
    with pytest.raises(InputError, match=pattern):
        fn(**args)


# --------------------------------------------------------------------------------------------
# refined evaluation


def feats(rows, pids, cams, clothes=None):
    f = torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=1)
    n = len(pids)
    return Features(f, np.array(pids), np.array(cams), np.array([0] * n if clothes is None else clothes))


# query (person 1, camera 0) along (1, 0); gallery: an identical image of person 1 from the same
# camera (junk), person 2 at cos 0.8, person 1 from camera 1 at cos 0.6 (the only good match)
QUERY = feats([[1.0, 0.0]], [1], [0])
GALLERY = feats([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8]], [1, 2, 1], [0, 1, 1])


def test_refined_evaluation_excludes_junk_by_default():
    no_variants = torch.zeros(0, 1, 2)
    r, refined = evaluate_refined(QUERY, no_variants, GALLERY, "standard", m=2)
    np.testing.assert_allclose(refined, [[1.0, 1.0, 0.75]], rtol=1e-6)  # junk idx 0 keeps its cosine
    # top-2 without the junk image: person 2 (score 1.0) beats person 1 (0.6 / 0.8) -> wrong
    assert r["pred_top1"] == 0.0
    # ranking by refined similarity: person 2 raised to 1.0, person 1's image to max(0.75, 0.6)
    assert r["top1"] == 0.0 and r["top5"] == 1.0 and r["mAP"] == pytest.approx(0.5)
    # refining over the whole gallery lets the junk image vote for person 1
    r, _ = evaluate_refined(QUERY, no_variants, GALLERY, EvalProtocol("s", "q", "g", "standard"), m=2,
                            exclude_junk=False)
    assert r["pred_top1"] == 1.0


def test_refined_evaluation_with_variants_matches_manual_pipeline():
    rng = np.random.default_rng(1)
    q = feats(rng.normal(size=(12, 8)), rng.integers(0, 4, 12), rng.integers(0, 2, 12),
              rng.integers(0, 3, 12))
    g = feats(rng.normal(size=(30, 8)), rng.integers(0, 4, 30), rng.integers(0, 3, 30),
              rng.integers(0, 3, 30))
    var = torch.nn.functional.normalize(q.feats[None] + 0.3 * torch.randn(3, 12, 8), dim=-1)
    out, refined = evaluate_refined(q, var, g, "CC", m=4, variant="official", exclude_junk=False)
    sims = torch.stack([cosine_similarity(x, g.feats) for x in [q.feats, *var]])
    r = refine(sims, g.pids, 4, "official")
    m = evaluate(-r.sims, q.pids, g.pids, q.camids, g.camids, q.clothes_ids, g.clothes_ids, mode="CC")
    assert out["mAP"] == m.mAP and out["top1"] == m.top(1) and out["num_queries"] == m.num_valid
    assert np.array_equal(refined, r.sims)
    with pytest.raises(InputError, match="variant features"):
        evaluate_refined(q, var[:, :5], g, "CC")


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_sparse_exclusions_and_an_output_buffer_give_the_reference_result(variant):
    """Exclusions given as (rows, cols) equal the dense mask; many exclusions per row (more than m)
    and heavy ties at the top-m boundary are where dropping excluded topk candidates could go wrong."""
    rng = np.random.default_rng(11)
    for trial in range(40):
        n_mat, nq, ng = int(rng.integers(1, 5)), int(rng.integers(1, 12)), int(rng.integers(8, 60))
        s = (rng.integers(1, 4, (n_mat, nq, ng)) / 3).astype(np.float32)  # three values: ties everywhere
        gp, m = rng.integers(0, 6, ng), int(rng.integers(1, 6))
        excl = rng.random((nq, ng)) < rng.uniform(0.0, 0.8)
        excl[:, :2] = False  # at least two selectable items per query
        a = refine_reference(s, gp, m, variant, exclude=excl)
        rows, cols = np.nonzero(excl)
        buf = np.full((nq, ng), np.nan, dtype=np.float32)
        b = refine(s, gp, m, variant, exclude=(rows, cols), out=buf)
        assert b.sims is buf
        for field in ("pred_pids", "sims", "topm", "scores"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (trial, field)


def test_sparse_exclusions_are_validated():
    s = np.ones((1, 2, 3), dtype=np.float32)
    with pytest.raises(InputError, match="within"):
        refine(s, [0, 1, 2], 1, exclude=(np.array([0]), np.array([3])))
    with pytest.raises(InputError, match="differ in length"):
        refine(s, [0, 1, 2], 1, exclude=(np.array([0, 1]), np.array([1])))
    with pytest.raises(InputError, match="out must be a float32"):
        refine(s, [0, 1, 2], 1, out=np.zeros((2, 3)))
