"""`dlcr demo --quick` end to end (the smoke version of the README's main command)."""

from __future__ import annotations

import json
import math
import time

import pytest

from dlcr.ablation import ARMS, METRIC_KEYS, RESULT_ARMS, TABLE_A1
from dlcr.generation.parsers.pose import mediapipe_missing

POSE = mediapipe_missing() is None


@pytest.mark.slow
def test_quick_demo_writes_results_and_report_and_resumes(tmp_path, capsys):
    from dlcr.cli.main import main

    out = tmp_path / "demo"
    main(["demo", "--quick", "--out", str(out), "--ids", "24", "--epochs", "2"])
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    for arm in RESULT_ARMS:
        assert arm in res and arm in printed
        for k in METRIC_KEYS:
            assert 0.0 <= res[arm][k] <= 1.0, (arm, k)
        assert res[arm]["seed"] == 0 and res[arm]["seeds"] == [0]
    meta = res["meta"]
    assert meta["quick"] is True and meta["backend"] == "recolor"
    for stage in ("render", "masks", "mask_iou", "describe", "plan", "inpaint", "inpaint_unmasked", "inpaint_random",
                  "inpaint_queries", "report", *(f"train_{a}" for a in ARMS)):
        assert stage in meta["stage_seconds"], stage
    # Table A1: six rows adding one component each, plus the concatenated arm, finite metrics
    tbl = res["table_a1"]
    assert [r["row"] for r in tbl["rows"]] == [1, 2, 3, 4, 5, 6]
    assert [r["arm"] for r in tbl["rows"]] == [arm for _, arm, _ in TABLE_A1]
    assert tbl["concat"]["arm"] == "dlcr_concat" and tbl["seeds"] == [0]
    for r in [*tbl["rows"], tbl["concat"]]:
        for k in METRIC_KEYS:
            assert math.isfinite(r[k]) and 0.0 <= r[k] <= 1.0 and r[f"{k}_std"] == 0.0, (r["arm"], k)
    rows = {r["arm"]: r for r in tbl["rows"]}
    assert rows["dlcr_unmasked"]["mask_region"] == "person" and rows["dlcr_random_prompts"]["prompt_source"] == "vocabulary"
    assert rows["dlcr_paired"]["sampler"] == "paired/all" and rows["dlcr_progressive"]["sampler"] == "paired/progressive"
    assert rows["dlcr_progressive_refined"]["refine"] is True
    for r in tbl["rows"]:
        assert f"{r['row']}  {r['arm']}" in printed
    # learning curves: validation (held-out training identities) after every epoch, never the test set
    assert meta["validation"]["ids"] >= 2 and meta["validation"]["query"] > 0
    for arm in ARMS:
        c = res["curves"][arm]
        assert c["epochs"] == [1, 2], arm
        assert all(0.0 <= v <= 1.0 for v in c["val_cc_top1"] + c["val_map"])
        hist = json.loads((out / meta["runs"] / f"{arm}_s0" / "history.json").read_text())
        assert not any(k.startswith(("cc_", "sc_", "standard_")) for h in hist for k in h)  # no test metric
    # the masks come from the pose parser (the offline real model), scored against the ground truth
    masks = meta["masks"]
    assert masks["source"] == ("pose" if POSE else "truth")
    assert 0.0 <= masks["iou"]["clothes"] <= 1.0 and masks["iou"]["images"] > 0
    if POSE:
        assert masks["iou"]["clothes"] < 1.0 and masks["iou"]["clothes"] > 0.5
    # each ablation's generated data in its own work folder, sharing the masks and descriptions
    tag = meta["work"].removeprefix("work")
    for suffix in ("_unmasked", "_random"):
        assert (out / f"work{suffix}{tag}" / "generated" / "manifest.parquet").is_file()
        assert (out / f"work{suffix}{tag}" / "masks").resolve() == (out / meta["work"] / "masks").resolve()
    assert "torch" in meta["versions"]
    html = (out / "report.html").read_text()
    assert "baseline" in html and "dlcr_progressive_refined" in html
    # generated variants really change pixels inside the clothes and nothing outside (recolor backend)
    manifest = out / meta["work"] / "generated" / "manifest.parquet"
    assert manifest.is_file()

    t0 = time.time()
    main(["demo", "--quick", "--out", str(out), "--ids", "24", "--epochs", "2"])
    again = json.loads((out / "results.json").read_text())
    assert time.time() - t0 < 30  # every stage and arm is reused
    for arm in RESULT_ARMS:
        assert again[arm]["per_seed"] == res[arm]["per_seed"]


def test_demo_rejects_bad_seeds(capsys):
    from dlcr.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--seeds", "a,b", "--out", "/nonexistent/x"])
    assert e.value.code == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_demo_runs_through_the_real_diffusers_code_with_tiny_weights(tmp_path):
    from dlcr.cli.main import main

    out = tmp_path / "demo_tiny"
    main(["demo", "--quick", "--backend", "tiny", "--out", str(out), "--ids", "16", "--epochs", "1", "--no-ablation",
          "--masks", "truth"])
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["backend"] == "tiny"
    assert res["meta"]["masks"]["source"] == "truth" and res["meta"]["masks"]["iou"]["clothes"] == 1.0
    assert [r["arm"] for r in res["table_a1"]["rows"]] == ["baseline", "dlcr_progressive", "dlcr_progressive_refined"]
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "work_truth" / "generated" / "manifest.parquet").to_pylist()
    assert rows and {r["backend"] for r in rows} == {"tiny"}
    assert (out / "report.html").is_file()
