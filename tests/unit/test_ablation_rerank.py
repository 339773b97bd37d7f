"""The re-ranked arms of results.json (dlcr.ablation.collect_results): added from the runs' re-ranked
metrics, every existing entry unchanged by them, absent for runs evaluated without re-ranking; and
their rows in the printed table and the report's results table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlcr.ablation import RERANKED_ARMS, RESULT_ARMS, collect_results, results_table
from dlcr.report.results import _results_section, arm_label

ARMS = ("baseline", "dlcr_concat", "dlcr_progressive")


def _protocols(base: float) -> dict:
    return {p: {"top1": base, "mAP": base / 2, "mINP": 0.1, "num_queries": 4, "num_skipped": 0}
            for p in ("standard", "sc", "cc")}


def _runs(root: Path, rerank: bool) -> Path:
    for seed in (0, 1):
        for i, arm in enumerate(ARMS):
            metrics = {}
            for name, r in _protocols(0.1 * (i + 1) + 0.01 * seed).items():
                metrics[name] = r
                if arm == "dlcr_progressive":
                    metrics[f"{name}_refined"] = {**r, "top1": r["top1"] + 0.05}
                if rerank and arm in ("baseline", "dlcr_progressive"):
                    metrics[f"{name}_reranked"] = {**r, "top1": r["top1"] + 0.02}
                    if arm == "dlcr_progressive":
                        metrics[f"{name}_reranked_refined"] = {**r, "top1": r["top1"] + 0.03}
                        metrics[f"{name}_refined_reranked"] = {**r, "top1": r["top1"] + 0.04}
            d = root / f"{arm}_s{seed}" / "eval"
            d.mkdir(parents=True)
            (d / "metrics.json").write_text(json.dumps(metrics))
    return root


def test_reranked_arms_are_added_and_the_rest_is_unchanged(tmp_path):
    kw = {"seeds": (0, 1), "refined": True, "epochs": 2}
    plain = collect_results(_runs(tmp_path / "a", False), ARMS, **kw)
    both = collect_results(_runs(tmp_path / "b", True), ARMS, **kw)
    assert not set(RERANKED_ARMS) & set(plain)
    assert set(both) - set(plain) == set(RERANKED_ARMS)
    for key, value in plain.items():
        assert both[key] == value, key
    assert list(both)[:4] == list(plain)[:4]  # the trained arms and the refined row first, as before
    r = both["dlcr_progressive_refined_reranked"]
    assert r["cc_top1"] == pytest.approx(0.345) and r["seeds"] == [0, 1]
    assert both["baseline_reranked"]["top1"] == pytest.approx(0.125)
    # without refinement, only the plain re-ranked arms
    loose = collect_results(tmp_path / "b", ARMS, seeds=(0, 1), refined=False, epochs=2)
    assert {a for a in RERANKED_ARMS if a in loose} == {"baseline_reranked", "dlcr_progressive_reranked"}
    # a seed without re-ranked metrics: no re-ranked arm
    (tmp_path / "b" / "baseline_s1" / "eval" / "metrics.json").write_text(json.dumps(_protocols(0.1)))
    assert "baseline_reranked" not in collect_results(tmp_path / "b", ARMS, **kw)


def test_reranked_rows_are_printed_and_reported(tmp_path):
    res = collect_results(_runs(tmp_path, True), ARMS, seeds=(0, 1), refined=True, epochs=2)
    res["meta"] = {"seeds": [0, 1]}
    text = results_table(res).splitlines()
    for arm in RERANKED_ARMS:
        assert sum(line.startswith(f"rr {arm} ") for line in text) == 1, arm
    for arm in RESULT_ARMS:
        if arm in res:
            assert any(arm in line for line in text)
    html = _results_section(tmp_path, res, None)
    for arm in RERANKED_ARMS:
        assert f'data-arm="{arm}"' in html and arm_label(arm) in html
    assert "k-reciprocal re-ranking" in html
