"""Ranking metrics: hand-computed cases for every rule, exact agreement with the loop reference."""

import numpy as np
import pytest
import torch

from dlcr.errors import InputError
from dlcr.evaluation import evaluate, evaluate_reference
from dlcr.evaluation.metrics import Metrics

BOTH = pytest.mark.parametrize("fn", [evaluate, evaluate_reference], ids=["vectorised", "reference"])

# One query (pid 1, camera 0, clothes 0) against six gallery items, listed by increasing distance:
#   idx pid cam clothes dist   standard   CC     SC
#   0   1   1   0       0.1    good       junk   good
#   1   1   0   1       0.2    junk       junk   junk
#   2   2   1   5       0.3    -          -      -
#   3   1   1   1       0.4    good       good   junk
#   4   3   2   6       0.5    -          -      -
#   5   1   2   2       0.6    good       good   junk
G_PID = np.array([1, 1, 2, 1, 3, 1])
G_CAM = np.array([1, 0, 1, 1, 2, 2])
G_CL = np.array([0, 1, 5, 1, 6, 2])
DIST = np.array([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]])
Q = dict(q_pids=[1], q_camids=[0], q_clothes=[0])


def run(fn, mode, dist=DIST, **kw):
    args = dict(g_pids=G_PID, g_camids=G_CAM, g_clothes=G_CL, **Q)
    args.update(kw)
    return fn(dist, mode=mode, **args)


@BOTH
def test_standard_rule_by_hand(fn):
    # junk (idx 1) removed: ranking good, neg, good, neg, good -> good ranks 1, 3, 5
    m = run(fn, "standard")
    assert m.mAP == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    assert m.mINP == pytest.approx(3 / 5)
    assert list(m.cmc) == [1.0] * 6  # CMC length = gallery size (< max_rank)
    assert (m.num_valid, m.num_skipped) == (1, 0)


@BOTH
def test_cc_rule_by_hand(fn):
    # junk: idx 0 (same clothes), idx 1 (same camera) -> ranking neg, good, neg, good -> ranks 2, 4
    m = run(fn, "CC")
    assert m.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert m.mINP == pytest.approx(2 / 4)
    assert list(m.cmc[:3]) == [0.0, 1.0, 1.0]


@BOTH
def test_sc_rule_by_hand(fn):
    # junk: idx 1 (same camera), idx 3 and 5 (other clothes) -> ranking good, neg, neg -> rank 1
    m = run(fn, "sc")  # any capitalisation
    assert m.mAP == 1.0 and m.mINP == 1.0 and m.top(1) == 1.0


@BOTH
def test_queries_without_good_match_are_skipped(fn):
    dist = np.vstack([DIST, DIST[:, ::-1], DIST])
    # query 1: pid 9 absent from the gallery; query 2: pid 2 but its only image is in its own camera
    m = fn(dist, q_pids=[1, 9, 2], g_pids=G_PID, q_camids=[0, 0, 1], g_camids=G_CAM, mode="standard")
    assert (m.num_valid, m.num_skipped) == (1, 2)
    assert m.mAP == pytest.approx((1 / 1 + 2 / 3 + 3 / 5) / 3)
    # SC: a query whose outfit no other camera saw is skipped
    m = fn(np.vstack([DIST, DIST]), q_pids=[1, 1], g_pids=G_PID, q_camids=[0, 0], g_camids=G_CAM,
           q_clothes=[3, 0], g_clothes=G_CL, mode="SC")
    assert (m.num_valid, m.num_skipped, m.mAP) == (1, 1, 1.0)
    with pytest.raises(InputError, match="no query has a good match"):
        fn(DIST, q_pids=[1], g_pids=G_PID, q_camids=[0], g_camids=G_CAM, q_clothes=[3], g_clothes=G_CL,
           mode="SC")


@BOTH
def test_minp_and_cmc_average_over_queries(fn):
    # query A (pid 1): goods at ranks 2 and 4 -> AP 0.5, INP 0.5
    # query B (pid 6): its only good (idx 2) comes after idx 3 -> rank 2 -> AP 0.5, INP 0.5
    dist = np.array([[0.1, 0.2, 0.3, 0.4], [0.9, 0.8, 0.7, 0.1]])
    g_pid, g_cam = np.array([5, 1, 6, 1]), np.array([1, 1, 1, 1])
    m = fn(dist, q_pids=[1, 6], g_pids=g_pid, q_camids=[0, 0], g_camids=g_cam)
    assert m.mAP == pytest.approx(0.5) and m.mINP == pytest.approx(0.5)
    assert list(m.cmc) == [0.0, 1.0, 1.0, 1.0]
    dist[1] = [0.9, 0.8, 0.05, 0.1]  # B's good moves to rank 1
    m = fn(dist, q_pids=[1, 6], g_pids=g_pid, q_camids=[0, 0], g_camids=g_cam)
    assert m.mAP == pytest.approx(0.75) and m.mINP == pytest.approx(0.75)
    assert list(m.cmc) == [0.5, 1.0, 1.0, 1.0]
    # mINP differs from mAP: goods at ranks 1 and 4 -> AP (1 + 2/4)/2 = 0.75, INP 2/4
    m = fn(np.array([[0.1, 0.2, 0.3, 0.4]]), q_pids=[1],
           g_pids=[1, 5, 6, 1], q_camids=[0], g_camids=g_cam)
    assert m.mAP == pytest.approx(0.75) and m.mINP == pytest.approx(0.5)


@BOTH
def test_ties_are_broken_by_gallery_index(fn):
    same = np.full((1, 4), 0.5)
    # goods at indices 1 and 3 among equal distances -> ranks 2 and 4
    m = fn(same, q_pids=[1], g_pids=[7, 1, 8, 1], q_camids=[0], g_camids=[1, 1, 1, 1])
    assert m.mAP == pytest.approx(0.5) and m.top(1) == 0.0
    # the good now has the lowest index among the tied items -> rank 1
    m = fn(np.array([[0.3, 0.3, 0.1]]), q_pids=[1], g_pids=[1, 7, 8], q_camids=[0], g_camids=[1, 1, 1])
    assert m.top(1) == 0.0 and m.top(2) == 1.0 and m.mAP == pytest.approx(0.5)
    # -0.0 and 0.0 are equal distances: index order again
    m = fn(np.array([[0.0, -0.0]]), q_pids=[1], g_pids=[7, 1], q_camids=[0], g_camids=[1, 1])
    assert m.mAP == pytest.approx(0.5)


def _random_problem(rng, nq, ng, ids, tie_levels=None, dtype=np.float64):
    if tie_levels:
        d = rng.integers(0, tie_levels, (nq, ng)).astype(dtype)
    else:
        d = rng.random((nq, ng)).astype(dtype)
    return dict(distmat=d, q_pids=rng.integers(0, ids + 2, nq), g_pids=rng.integers(0, ids, ng),
                q_camids=rng.integers(0, 3, nq), g_camids=rng.integers(0, 3, ng),
                q_clothes=rng.integers(0, 3, nq), g_clothes=rng.integers(0, 3, ng))


def _same(a: Metrics, b: Metrics) -> bool:
    return (np.array_equal(a.cmc, b.cmc) and a.mAP == b.mAP and a.mINP == b.mINP
            and (a.num_valid, a.num_skipped) == (b.num_valid, b.num_skipped))


@pytest.mark.parametrize("mode", ["standard", "CC", "SC"])
@pytest.mark.parametrize("ties", [None, 3, 20], ids=["no-ties", "heavy-ties", "some-ties"])
def test_equals_reference_exactly(mode, ties):
    rng = np.random.default_rng(abs(hash((mode, ties))) % 2**32)
    for trial in range(15):
        nq, ng = int(rng.integers(1, 40)), int(rng.integers(1, 90))
        p = _random_problem(rng, nq, ng, ids=int(rng.integers(1, 10)), tie_levels=ties,
                            dtype=np.float32 if trial % 2 else np.float64)
        try:
            ref = evaluate_reference(**p, mode=mode, max_rank=20)
        except InputError:  # no valid query: both must say so
            with pytest.raises(InputError):
                evaluate(**p, mode=mode, max_rank=20)
            continue
        for chunk in (None, 1, 7):
            assert _same(ref, evaluate(**p, mode=mode, max_rank=20, chunk=chunk)), (trial, chunk)


def test_equals_reference_on_a_larger_problem_and_accepts_tensors():
    rng = np.random.default_rng(3)
    p = _random_problem(rng, 200, 1500, ids=60)
    p["distmat"] = np.round(p["distmat"], 3)  # plenty of ties between persons
    ref = evaluate_reference(**p, mode="CC")
    t = {k: torch.from_numpy(np.asarray(v)) for k, v in p.items()}
    assert _same(ref, evaluate(**t, mode="CC", chunk=64))
    assert len(ref.cmc) == 50


def test_top_k_beyond_the_cmc():
    m = evaluate(DIST, g_pids=G_PID, g_camids=G_CAM, mode="standard", q_pids=[1], q_camids=[0], max_rank=2)
    assert len(m.cmc) == 2 and m.top(50) == 1.0  # curve already at 1.0
    m = run(evaluate, "CC", max_rank=1)
    assert m.top(1) == 0.0
    with pytest.raises(InputError):
        m.top(2)
    with pytest.raises(InputError):
        m.top(0)
    d = m.as_dict(ranks=(1,))
    assert set(d) == {"top1", "mAP", "mINP", "num_queries", "num_skipped"}


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(distmat=np.zeros((2, 6))), "q_pids has 1 entries"),
        (dict(g_pids=G_PID[:5]), "g_pids has 5 entries"),
        (dict(distmat=np.array([[0.1, np.nan, 0.3, 0.4, 0.5, 0.6]])), "NaN or infinite"),
        (dict(distmat=np.array([[0.1, np.inf, 0.3, 0.4, 0.5, 0.6]])), "NaN or infinite"),
        (dict(distmat=np.zeros((0, 6)), q_pids=[], q_camids=[], q_clothes=[]), "empty query"),
        (dict(distmat=np.zeros((1, 0)), g_pids=[], g_camids=[], g_clothes=[]), "empty gallery"),
        (dict(distmat=np.zeros(6)), "must be 2-D"),
        (dict(mode="clothes"), "unknown evaluation mode"),
        (dict(mode="CC", q_clothes=None), "needs clothes ids"),
        (dict(mode="SC", g_clothes=None), "needs clothes ids"),
        (dict(max_rank=0), "max_rank"),
        (dict(chunk=0), "chunk"),
    ],
)
def test_input_errors(kwargs, pattern):
    args = dict(distmat=DIST, g_pids=G_PID, g_camids=G_CAM, g_clothes=G_CL, mode="standard", **Q)
    args.update(kwargs)
    with pytest.raises(InputError, match=pattern) as e:
        evaluate(**args)
    assert "\n" not in str(e.value)
    if "chunk" not in kwargs:
        with pytest.raises(InputError, match=pattern):
            evaluate_reference(**args)
