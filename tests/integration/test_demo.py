"""`dlcr demo --quick` end to end (the smoke version of the README's main command)."""

from __future__ import annotations

import json
import time

import pytest

from dlcr.demo import METRIC_KEYS, RESULT_ARMS


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
    for stage in ("render", "masks", "describe", "plan", "inpaint", "inpaint_queries", "train_baseline",
                  "train_dlcr_concat", "train_dlcr_progressive", "report"):
        assert stage in meta["stage_seconds"], stage
    assert "torch" in meta["versions"]
    html = (out / "report.html").read_text()
    assert "baseline" in html and "dlcr_progressive_refined" in html
    # generated variants really change pixels inside the clothes and nothing outside (recolor backend)
    manifest = out / "work" / "generated" / "manifest.parquet"
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
    main(["demo", "--quick", "--backend", "tiny", "--out", str(out), "--ids", "12", "--epochs", "1"])
    res = json.loads((out / "results.json").read_text())
    assert res["meta"]["backend"] == "tiny"
    import pyarrow.parquet as pq

    rows = pq.read_table(out / "work" / "generated" / "manifest.parquet").to_pylist()
    assert rows and {r["backend"] for r in rows} == {"tiny"}
    assert (out / "report.html").is_file()
