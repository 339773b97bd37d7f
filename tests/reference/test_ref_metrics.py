"""dlcr's CMC / mAP / mINP against re-statements of CAL's and AGW's evaluation code.

References:

* guxinqian/Simple-CCReID ``tools/eval_metrics.py``: ``compute_ap_cmc``, ``evaluate`` (the standard
  rule: same person, other camera is good; same person, same camera is junk) and
  ``evaluate_with_clothes`` (CC: good = other camera and other clothes, junk = same camera or same
  clothes; SC: good = other camera and same clothes, junk = same camera or other clothes); queries
  without a good match are skipped. ``test.py`` runs ``evaluate`` and then SC and CC on one query /
  gallery pair, and ``test_prcc`` the standard rule for both PRCC query sets.
* mangye16/ReID-Survey ``data/datasets/eval_reid.py`` (``eval_func``, AGW): mINP, the mean over
  queries of ``#good / (1-based rank of the hardest good match)`` after junk removal. CAL has no mINP;
  dlcr applies AGW's definition under CAL's junk rules, as re-stated here.

The reference ranks with ``np.argsort`` (quicksort: the order of tied distances is unspecified), so
the distance matrices below have no ties; dlcr's documented tie rule (gallery index, a stable sort)
is compared with a stable-sort re-statement separately. The CMC is compared bitwise (both are integer
counts over the same number of queries); AP and mINP to 1e-12 relative, as the reference sums
``(1/ngood)·precision`` term by term and dlcr sums the precisions before dividing.
"""

from __future__ import annotations

import numpy as np
import pytest

from dlcr.evaluation import evaluate, evaluate_reference

# ---- re-statements of the references -----------------------------------------------------------


def ref_compute_ap_cmc(index, good_index, junk_index):
    """Simple-CCReID compute_ap_cmc, with AGW's INP of the same (junk-free) ranking added."""
    ap = 0.0
    cmc = np.zeros(len(index))
    index = index[np.isin(index, junk_index, invert=True)]
    ngood = len(good_index)
    rows_good = np.argwhere(np.isin(index, good_index)).flatten()
    cmc[rows_good[0]:] = 1.0
    for i in range(ngood):
        ap += (1.0 / ngood) * ((i + 1) * 1.0 / (rows_good[i] + 1))
    inp = ngood / (rows_good[-1] + 1.0)  # eval_reid.py: cmc[max_pos_idx] / (max_pos_idx + 1)
    return ap, cmc, inp


def ref_evaluate(distmat, q_pids, g_pids, q_camids, g_camids, q_clothes=None, g_clothes=None,
                 mode="standard", kind="quicksort"):
    """Simple-CCReID evaluate (mode 'standard') / evaluate_with_clothes (mode 'CC' or 'SC')."""
    num_q = distmat.shape[0]
    index = np.argsort(distmat, axis=1, kind=kind)
    num_no_gt = 0
    cmc_sum = np.zeros(len(g_pids))
    ap_sum = 0.0
    inp_sum = 0.0
    for i in range(num_q):
        query_index = np.argwhere(g_pids == q_pids[i])
        camera_index = np.argwhere(g_camids == q_camids[i])
        good_index = np.setdiff1d(query_index, camera_index, assume_unique=True)
        junk_index = np.intersect1d(query_index, camera_index)
        if mode == "CC":
            cloth_index = np.argwhere(g_clothes == q_clothes[i])
            good_index = np.setdiff1d(good_index, cloth_index, assume_unique=True)
            junk_index = np.union1d(junk_index, np.intersect1d(query_index, cloth_index))
        elif mode == "SC":
            cloth_index = np.argwhere(g_clothes == q_clothes[i])
            good_index = np.intersect1d(good_index, cloth_index)
            junk_index = np.union1d(junk_index, np.setdiff1d(query_index, cloth_index))
        if good_index.size == 0:
            num_no_gt += 1
            continue
        ap, cmc, inp = ref_compute_ap_cmc(index[i], good_index, junk_index)
        cmc_sum = cmc_sum + cmc
        ap_sum += ap
        inp_sum += inp
    n = num_q - num_no_gt
    return cmc_sum / n, ap_sum / n, inp_sum / n, n


# ---- fixed problems ----------------------------------------------------------------------------


def problem(seed: int, nq: int, ng: int, ids: int, cams: int = 3, outfits: int = 3):
    """A tie-free distance matrix (a permutation of distinct values) and id / camera / clothes labels;
    clothes ids are per person (person p's outfit o is p * outfits + o), as in the datasets."""
    rng = np.random.default_rng(seed)
    dist = rng.permutation(nq * ng).reshape(nq, ng).astype(np.float64) / (nq * ng)
    qp, gp = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    qc, gc = rng.integers(0, cams, nq), rng.integers(0, cams, ng)
    ql = qp * outfits + rng.integers(0, outfits, nq)
    gl = gp * outfits + rng.integers(0, outfits, ng)
    return dict(distmat=dist, q_pids=qp, g_pids=gp, q_camids=qc, g_camids=gc, q_clothes=ql, g_clothes=gl)


def compare(p: dict, mode: str, kind: str = "quicksort") -> None:
    cmc, mAP, mINP, n = ref_evaluate(p["distmat"], p["q_pids"], p["g_pids"], p["q_camids"], p["g_camids"],
                                     p["q_clothes"], p["g_clothes"], mode=mode, kind=kind)
    ng = p["distmat"].shape[1]
    for fn in (evaluate, evaluate_reference):
        m = fn(**p, mode=mode, max_rank=ng)
        assert m.num_valid == n and m.num_skipped == len(p["q_pids"]) - n
        assert np.array_equal(m.cmc, cmc)  # bitwise: same counts over the same number of queries
        assert m.mAP == pytest.approx(mAP, rel=1e-12, abs=0)
        assert m.mINP == pytest.approx(mINP, rel=1e-12, abs=0)
        # a shorter max_rank is the reference's CMC cut off there (test.py reads cmc[0/4/9/19])
        assert np.array_equal(fn(**p, mode=mode, max_rank=20).cmc, cmc[:20])


@pytest.mark.parametrize("mode", ["standard", "CC", "SC"])
@pytest.mark.parametrize("seed", range(4))
def test_metrics_equal_the_reference(mode, seed):
    p = problem(seed, nq=25, ng=60, ids=8)
    compare(p, mode)


@pytest.mark.parametrize("mode", ["standard", "CC", "SC"])
def test_queries_without_a_good_match_are_skipped_like_the_reference(mode):
    p = problem(11, nq=30, ng=40, ids=12, cams=2, outfits=2)
    _, _, _, n = ref_evaluate(**{k: p[k] for k in ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")},
                              q_clothes=p["q_clothes"], g_clothes=p["g_clothes"], mode=mode)
    assert 0 < n < 30  # the case is not vacuous: some queries have no good match under this rule
    compare(p, mode)


def test_a_single_camera_and_clothes_layout_by_hand():
    # one query (person 1, camera 0, outfit 10) against 7 gallery items in rank order
    # idx  pid cam clothes   standard  CC    SC
    # 0    1   0   10        junk      junk  junk
    # 1    2   1   20        -         -     -
    # 2    1   1   10        good      junk  good
    # 3    1   2   11        good      good  junk
    # 4    3   0   30        -         -     -
    # 5    1   1   11        good      good  junk
    # 6    2   2   21        -         -     -
    p = dict(distmat=np.arange(7, dtype=np.float64)[None, :] / 10, q_pids=np.array([1]),
             g_pids=np.array([1, 2, 1, 1, 3, 1, 2]), q_camids=np.array([0]), g_camids=np.array([0, 1, 1, 2, 0, 1, 2]),
             q_clothes=np.array([10]), g_clothes=np.array([10, 20, 10, 11, 30, 11, 21]))
    for mode in ("standard", "CC", "SC"):
        compare(p, mode)
    _, mAP, mINP, _ = ref_evaluate(**p, mode="CC")
    assert mAP == pytest.approx((1 / 2 + 2 / 4) / 2) and mINP == pytest.approx(2 / 4)


@pytest.mark.parametrize("mode", ["standard", "CC", "SC"])
def test_ties_follow_the_gallery_order_of_a_stable_sort(mode):
    # with tied distances the reference's quicksort order is unspecified; dlcr's is the stable one
    p = problem(5, nq=20, ng=50, ids=6)
    p["distmat"] = np.round(p["distmat"] * 8) / 8  # 9 distinct levels: many ties
    compare(p, mode, kind="stable")
