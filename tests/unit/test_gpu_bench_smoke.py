"""benchmarks/gpu/bench_gpu.py --smoke on the CPU: the GPU benchmark's code paths at tiny sizes, so
that the script does not rot between GPU runs (the compiled-UNet section is left to the GPU run and
to tests/unit/test_gpu_paths.py: tracing it takes longer than this test may)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "bench_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("dlcr_bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["dlcr_bench_gpu"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("dlcr_bench_gpu", None)


def test_gpu_benchmark_smoke_run_writes_every_section(bench, tmp_path):
    import torch

    threads = torch.get_num_threads()
    out = tmp_path / "gpu.json"
    try:
        rc = bench.main(["--smoke", "--device", "cpu", "--out", str(out),
                         "--sections", "masks,train,refine,inpaint"])
    finally:
        torch.set_num_threads(threads)
    res = json.loads(out.read_text())
    assert rc == 0, {k: v.get("error") for k, v in res["sections"].items()}
    assert res["smoke"] is True and res["benchmark"] == "dlcr-gpu"
    assert {"device", "torch", "date"} <= set(res["env"])
    assert set(res["paper"]) >= {"masks_img_s", "train_inpaint_img_s", "query_inpaint_img_s", "refine_img_s",
                                 "prcc_epoch_paired_s", "prcc_epoch_concat_s"}
    sec = res["sections"]
    assert set(sec) == {"masks", "train", "refine", "inpaint"}
    assert {"img_s", "paper_img_s", "vs_paper", "batch"} <= set(sec["masks"]["runs"][0])
    assert {"img_s", "step_s", "prcc_epoch_paired_s_est", "prcc_epoch_concat_s_est", "paper_prcc_epoch_paired_s"} \
        <= set(sec["train"])
    assert sec["train"]["loss_finite"]
    for size in ("prcc", "last"):
        assert {"eval_s", "eval_refined_s", "refine_img_s", "paper_refine_img_s"} <= set(sec["refine"][size])
    run = sec["inpaint"]["runs"][0]
    for kind in ("train", "query"):
        assert run[kind]["img_s"] > 0 and run[kind]["paper_img_s"] > 0
    assert "AttnProcessor2_0" in sec["inpaint"]["attention"]
    assert all(v["wall_s"] >= 0 for v in sec.values())
