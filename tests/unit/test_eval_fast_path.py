"""The evaluator's scoring equals its plain reference bit for bit (``evaluate_protocols`` against
``evaluate_protocols_reference``): plain and refined metrics, refined similarity matrices and errors,
on random problems with tied similarities, junk, queries without any good match (their person
absent from the gallery, or only junk of it), every mode, both refinement variants, with and
without junk exclusion, under several budgets; and the exact top-k and row counts it relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcr.errors import InputError
from dlcr.evaluation import Features, evaluate_protocols, evaluate_protocols_reference, screening
from dlcr.evaluation.candidates import top_k
from dlcr.evaluation.histcount import HistRows, count_many, thresholds
from dlcr.evaluation.rowcount import TRANSFORMS, SortedRows, ties_before
from dlcr.evaluation.screening import VariantTops
from dlcr.types import EvalProtocol

PROTOCOLS = [EvalProtocol("standard", "query", "gallery", "standard"),
             EvalProtocol("cc", "query", "gallery", "CC"),
             EvalProtocol("sc", "query", "gallery", "SC")]


def _problem(seed: int, nq: int, ng: int, ids: int, ties: str, dim: int = 16, l: int = 3):  # noqa: E741
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))

    def feats(n: int) -> Features:
        pid = rng.integers(0, ids, n)
        x = 0.8 * centres[pid] + rng.normal(size=(n, dim))
        if ties == "rounded":  # few distinct feature values: many exactly tied similarities
            x = np.round(x)
        f = torch.nn.functional.normalize(torch.from_numpy(x).float(), dim=1)
        return Features(feats=f, pids=pid, camids=rng.integers(0, 3, n), clothes_ids=rng.integers(0, 3, n))

    q, g = feats(nq), feats(ng)
    if ties == "duplicates":  # a third of the gallery repeats other gallery items
        dup = rng.integers(0, ng, ng // 3)
        g.feats[dup] = g.feats[rng.integers(0, ng, len(dup))]
    q.pids[: max(1, nq // 20)] = ids + 7  # persons the gallery lacks: no good match under any mode
    noise = torch.from_numpy(rng.normal(size=(l, nq, dim))).float()
    v = torch.nn.functional.normalize(q.feats[None] + 0.3 * noise, dim=-1)
    if ties == "rounded":
        v = torch.nn.functional.normalize(torch.round(4 * v), dim=-1)
    return {"query": q, "gallery": g}, {"query": v}


def _both(split, variants, **kw):
    out = []
    for fn in (evaluate_protocols, evaluate_protocols_reference):
        kept: dict = {}
        try:
            res = fn(split, PROTOCOLS, refine_variants=variants, refined_out=kept, **kw)
        except InputError as e:
            res, kept = f"InputError: {e}", {}
        out.append((res, kept))
    return out


def _assert_same(runs) -> None:
    (fast, kf), (ref, kr) = runs
    assert fast == ref
    assert sorted(kf) == sorted(kr)
    for name in kf:
        np.testing.assert_array_equal(kf[name], kr[name])


@pytest.mark.parametrize("seed", range(9))
def test_scoring_equals_the_reference_bit_for_bit(seed):
    rng = np.random.default_rng(100 + seed)
    nq = int(rng.integers(20, 400))
    ng = (60, 900, 5000)[seed % 3]
    ids = int(rng.integers(5, 150))
    split, variants = _problem(seed, nq, ng, ids, ("plain", "rounded", "duplicates")[seed // 3])
    for variant in ("paper", "official"):
        for exclude_junk in (True, False):
            budget = (None, 1e-6, 4.0)[(seed + exclude_junk) % 3]
            runs = _both(split, variants, m=5, variant=variant, exclude_junk=exclude_junk, max_memory_gb=budget)
            _assert_same(runs)
            fast = runs[0][0]
            if isinstance(fast, dict):
                assert fast["standard"]["num_skipped"] >= max(1, nq // 20)


@pytest.mark.parametrize("threads", [1, 2])
def test_screened_variants_and_threads_give_the_reference_result(monkeypatch, threads):
    """Enough queries for blocks after the first (screened in bfloat16 once the first block passed
    its check) and a gallery large enough to screen; one and two scoring threads."""
    monkeypatch.setattr(screening, "_FAST_BF16", True)  # screen even where bfloat16 is not faster
    checks: list[bool] = []
    check = VariantTops.check
    monkeypatch.setattr(VariantTops, "check", lambda self, *a: checks.append(check(self, *a)) or checks[-1])
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for seed, ties in ((0, "plain"), (1, "duplicates")):
            split, variants = _problem(20 + seed, 2 * 256 + 40, 4500, 250, ties, dim=16, l=2)
            for variant in ("paper", "official"):
                _assert_same(_both(split, variants, m=5, variant=variant))
    finally:
        torch.set_num_threads(old)
    assert checks and all(checks)  # the screen was used, not only tried


def test_plain_metrics_without_variants_and_a_video_like_pair():
    """Few queries (tracklets), many gallery items per person, no refinement."""
    split, _ = _problem(11, 30, 2000, 6, "plain", dim=32)
    for budget in (None, 1e-6):
        fast = evaluate_protocols(split, PROTOCOLS, max_memory_gb=budget)
        assert fast == evaluate_protocols_reference(split, PROTOCOLS, max_memory_gb=budget)
        assert set(fast) == {"standard", "cc", "sc"}


def test_only_junk_of_a_person_and_errors_match_the_reference():
    split, variants = _problem(5, 40, 300, 10, "plain")
    g = split["gallery"]
    g.camids[g.pids == split["query"].pids[-1]] = split["query"].camids[-1]  # that query: junk only
    runs = _both(split, variants, m=3)
    _assert_same(runs)
    assert runs[0][0]["cc"]["num_skipped"] >= 1
    for kw in ({"m": 0}, {"variant": "nope"}):
        (fast, _), (ref, _) = _both(split, variants, **kw)
        assert isinstance(fast, str) and fast == ref
    bad = dict(split, gallery=Features(feats=g.feats.clone(), pids=g.pids, camids=g.camids,
                                       clothes_ids=g.clothes_ids))
    bad["gallery"].feats[3, 0] = float("nan")  # handed to the reference, which rejects it
    (fast, _), (ref, _) = _both(bad, variants)
    assert isinstance(fast, str) and fast == ref and "NaN" in fast


def test_a_person_filling_most_of_a_small_gallery():
    """Query 0's person is 10 of the 12 gallery items: junk under CC leaves it 2 (m = 2 there),
    while the standard protocol refines with m = 5."""
    rng = np.random.default_rng(9)
    g = Features(feats=torch.nn.functional.normalize(torch.randn(12, 8, generator=torch.Generator().manual_seed(0)),
                                                     dim=1),
                 pids=np.r_[np.zeros(10, dtype=np.int64), 1, 2], camids=np.r_[np.zeros(5, dtype=np.int64),
                                                                               np.ones(7, dtype=np.int64)],
                 clothes_ids=np.zeros(12, dtype=np.int64))
    qf = torch.nn.functional.normalize(torch.from_numpy(rng.normal(size=(4, 8))).float(), dim=1)
    q = Features(feats=qf, pids=np.array([0, 1, 2, 0]), camids=np.array([0, 0, 0, 1]),
                 clothes_ids=np.zeros(4, dtype=np.int64))
    variants = {"query": torch.nn.functional.normalize(qf[None] + 0.2 * torch.randn(2, 4, 8), dim=-1)}
    for variant in ("paper", "official"):
        _assert_same(_both({"query": q, "gallery": g}, variants, m=5, variant=variant))


@pytest.mark.parametrize("kind", ["normal", "integers", "zeros", "neg_inf"])
def test_top_k_is_the_stable_order(kind):
    rng = np.random.default_rng(7)
    for n, k in ((30, 4), (5000, 7), (20011, 40), (3000, 3000)):
        m = rng.normal(size=(6, n)).astype(np.float32)
        if kind == "integers":
            m = rng.integers(0, 4, size=(6, n)).astype(np.float32)
        elif kind == "zeros":  # +0.0 and -0.0 compare equal: ties by column
            m = np.round(m, 1)
            m[:, ::3] = -0.0
            m[:, 1::3] = 0.0
        elif kind == "neg_inf":
            m[rng.random((6, n)) < 0.9] = -np.inf
        vals, cols = top_k(torch.from_numpy(m), k)
        want = np.argsort(-m, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(cols, want)
        np.testing.assert_array_equal(vals, np.take_along_axis(m, want, axis=1))


@pytest.mark.parametrize("kind", ["rounded", "tiny", "constant", "signed_zeros"])
def test_row_counts_and_ties_under_every_transform(kind):
    rng = np.random.default_rng(3)
    s = np.round(rng.normal(scale=0.3, size=(5, 700)), 3).astype(np.float32)
    if kind == "tiny":  # 1 - s merges these: ties the sort alone cannot see
        s[:, :350] = rng.normal(scale=1e-9, size=(5, 350))
    elif kind == "constant":
        s[:] = 0.25
    elif kind == "signed_zeros":
        s[:, ::3], s[:, 1::3] = -0.0, 0.0
    srt, hist = SortedRows(s), HistRows(s)
    rows = np.arange(5)
    cols = rng.integers(0, 700, size=(5, 9))
    for f, fn in TRANSFORMS.items():
        d = fn(s)
        v = np.take_along_axis(d, cols, axis=1)
        v[:, 0], v[:, 1], v[:, 2] = np.inf, -np.inf, rng.normal(size=5)  # beyond every entry, and between
        lt, le = (d[:, None, :] < v[:, :, None]).sum(-1), (d[:, None, :] <= v[:, :, None]).sum(-1)
        np.testing.assert_array_equal(srt.count(rows, v, f), lt)
        np.testing.assert_array_equal(srt.count(rows, v, f, strict=False), le)
        np.testing.assert_array_equal(count_many(hist, [(v, f, True), (v, f, False)]), [lt, le])
        t, found = thresholds(v, f)  # the smallest float at which f(t) < v holds
        assert np.all(~found | (fn(t) < v))
        with np.errstate(over="ignore"):
            below = np.nextafter(t, np.float32(-np.inf))
        assert np.all(~found | np.isneginf(t) | ~(fn(below) < v))
        r, c = np.repeat(rows, 9), cols.reshape(-1)
        want = [(d[i, :j] == d[i, j]).sum() for i, j in zip(r, c, strict=True)]
        np.testing.assert_array_equal(ties_before(s, r, c, d[r, c], f), want)
