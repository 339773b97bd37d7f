"""``dlcr ablate``: the paper's Table A1 rows on a user's CSV dataset, as a user runs it (CLI only)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

from cli_run import run_cli as run
from user_dataset import H, W, build_user_dataset

DATA = ["-c", "custom", "--set", "data.csv=my.csv", "--set", "data.root=dataset"]
GEN = ["--set", "generate.parser=folder", "--set", "generate.parser_model=labels", "--set", "generate.captioner=rule",
       "--set", "generate.summarizer=vote", "--set", "generate.backend=recolor", "--set", "generate.k=2",
       "--set", "generate.query_variants=2", "--set", "eval.refine_l=2", "--set", "eval.refine_m=3"]
MODEL = ["--set", "model.name=small_resnet", "--set", "model.pretrained=null", "--set", f"data.height={H}",
         "--set", f"data.width={W}", "--set", "data.workers=0"]
TRAIN = ["--set", "train.epochs=1", "--set", "train.eval_every=0", "--set", "sampler.batch_size=8",
         "--set", "sampler.num_instances=4", "--set", "train.amp=false"]
ARGS = ["ablate", *DATA, *GEN, *MODEL, *TRAIN, "--work", "work", "--out", "abl"]


def one_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


@pytest.fixture()
def user_dataset(tmp_path: Path, monkeypatch) -> Path:
    build_user_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_ablate_trains_every_table_a1_row_and_resumes(user_dataset: Path, capsys):
    code, out, err = run([*ARGS, "--seeds", "0"], capsys)
    assert code == 0, err
    res = json.loads((user_dataset / "abl" / "results.json").read_text())
    tbl = res["table_a1"]
    assert [r["row"] for r in tbl["rows"]] == [1, 2, 3, 4, 5, 6]
    assert [r["arm"] for r in tbl["rows"]] == ["baseline", "dlcr_unmasked", "dlcr_random_prompts", "dlcr_paired",
                                               "dlcr_progressive", "dlcr_progressive_refined"]
    assert tbl["concat"]["arm"] == "dlcr_concat" and tbl["seeds"] == [0] and tbl["epochs"] == 1
    assert res["meta"]["kind"] == "ablation" and res["meta"]["dataset"] == "custom"
    for r in [*tbl["rows"], tbl["concat"]]:
        for k in tbl["metrics"]:
            assert 0.0 <= r[k] <= 1.0 and math.isfinite(r[f"{k}_std"]), (r["arm"], k)
        assert r["arm"] in out  # the printed table
    runs = user_dataset / "abl" / "runs"
    # every arm is a run of the configured recipe with only the sampler and the data changed
    sampler = {}
    for arm in ("baseline", "dlcr_unmasked", "dlcr_random_prompts", "dlcr_paired", "dlcr_progressive", "dlcr_concat"):
        for seed in (0,):
            cfg = yaml.safe_load((runs / f"{arm}_s{seed}" / "config.yaml").read_text())
            assert cfg["train"]["seed"] == seed and cfg["model"]["name"] == "small_resnet"
            sampler[arm] = (cfg["sampler"]["mode"], cfg["sampler"]["schedule"], cfg["generate"]["mask_region"],
                            cfg["generate"]["prompt_source"])
    assert sampler == {"baseline": ("none", "official", "clothes", "dataset"),
                       "dlcr_unmasked": ("paired", "all", "person", "dataset"),
                       "dlcr_random_prompts": ("paired", "all", "clothes", "vocabulary"),
                       "dlcr_paired": ("paired", "all", "clothes", "dataset"),
                       "dlcr_progressive": ("paired", "official", "clothes", "dataset"),
                       "dlcr_concat": ("concat", "official", "clothes", "dataset")}
    # the refined row is the progressive model's refined evaluation, per seed
    for seed, row in zip((0,), res["dlcr_progressive_refined"]["per_seed"], strict=True):
        m = json.loads((runs / f"dlcr_progressive_s{seed}" / "eval" / "metrics.json").read_text())
        assert row["cc_top1"] == m["cc_refined"]["top1"] and row["map"] == m["standard_refined"]["mAP"]
    assert "cc_refined" not in json.loads((runs / "dlcr_paired_s0" / "eval" / "metrics.json").read_text())
    # rows 2 and 3 trained on generated data of their own: the unmasked variants repaint pixels outside
    # the clothes mask, the random prompts come from the vocabulary
    from dlcr.generation.outputs import read_manifest
    from dlcr.io.tables import read_table

    work = user_dataset / "work"
    unmasked = user_dataset / "work_unmasked"
    assert (unmasked / "masks").resolve() == (work / "masks").resolve()  # shared stage 1
    assert len(read_manifest(unmasked / "generated")) == len(read_manifest(work / "generated"))
    random_keys = {r["target_clothes_key"] for r in read_table(user_dataset / "work_random" / "jobs.parquet")}
    assert all(k.startswith("vocab-") for k in random_keys)
    assert not any(r["target_clothes_key"].startswith("vocab-") for r in read_table(work / "jobs.parquet"))
    from PIL import Image

    a, b = (sorted(p.rglob("*.png"))[0] for p in (work / "generated", unmasked / "generated"))
    assert not np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    page = (user_dataset / "abl" / "report.html").read_text()
    assert "DLCR ablation report" in page and "dataset: custom" in page and 'id="table-a1"' in page
    for sid in ("results", "generation", "retrieval", "curves", "features"):  # found the user's images and work
        section = page.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]
        assert "skipped:" not in section, (sid, section[:300])

    # a second call reuses every run and evaluation: nothing is trained again
    done = runs / "dlcr_concat_s0" / "eval" / "metrics.json"
    stamp = done.stat().st_mtime_ns
    code, out2, err = run([*ARGS, "--seeds", "0", "--no-report"], capsys)
    assert code == 0, err
    assert done.stat().st_mtime_ns == stamp
    assert json.loads((user_dataset / "abl" / "results.json").read_text())["table_a1"] == tbl

    # other settings into the same folder are refused, the runs already there are kept
    line = one_error(*run([*ARGS, "--seeds", "0", "--set", "train.epochs=2"], capsys)[::2])
    assert "baseline_s0" in line and "train.epochs: 1 -> 2" in line and "--out" in line
    assert done.stat().st_mtime_ns == stamp


def test_ablate_rows_subset_and_bad_values(user_dataset: Path, capsys):
    code, out, err = run([*ARGS, "--rows", "1,4", "--no-concat", "--no-report", "--seeds", "0,1"], capsys)
    assert code == 0, err
    res = json.loads((user_dataset / "abl" / "results.json").read_text())
    assert [r["arm"] for r in res["table_a1"]["rows"]] == ["baseline", "dlcr_paired"]
    assert res["table_a1"]["concat"] is None and res["table_a1"]["seeds"] == [0, 1]
    for arm in ("baseline", "dlcr_paired"):  # mean and sample std over the two seeds' runs
        vals = [json.loads((user_dataset / "abl" / "runs" / f"{arm}_s{s}" / "eval" / "metrics.json").read_text())
                ["cc"]["mAP"] for s in (0, 1)]
        assert res[arm]["cc_map"] == pytest.approx(np.mean(vals))
        assert res[arm]["cc_map_std"] == pytest.approx(np.std(vals, ddof=1))
    assert not (user_dataset / "work_unmasked").exists() and not (user_dataset / "work" / "query_jobs.parquet").exists()
    assert sorted(p.name for p in (user_dataset / "abl" / "runs").iterdir()) == ["baseline_s0", "baseline_s1",
                                                                               "dlcr_paired_s0", "dlcr_paired_s1"]
    for bad, needle in ((["--rows", "7"], "rows 1-6"), (["--rows", "x"], "--rows"), (["--seeds", ""], "--seeds"),
                        (["--rows", "1", "--no-concat", "--set", "train.epochs=0"], "epochs")):
        line = one_error(*run([*ARGS, *bad], capsys)[::2])
        assert needle in line, (bad, line)


def test_ablate_on_prcc_without_a_standard_protocol(tmp_path: Path, capsys, monkeypatch):
    """PRCC has no ``standard`` protocol and its queries are ``query_same`` / ``query_diff``: the table
    leaves those cells empty, the report shows the clothes-changing split, the validation split picks
    the evaluated checkpoint."""
    from dlcr.data.datasets import create_dataset
    from dlcr.synth import render_world
    from user_dataset import as_prcc

    render_world(tmp_path / "w", ids=12, seed=3, height=H, width=W)
    as_prcc(create_dataset("synthcc", tmp_path / "w"), tmp_path / "w", tmp_path / "data", labels=tmp_path / "labels")
    monkeypatch.chdir(tmp_path)
    args = ["ablate", "-c", "prcc", "--set", "data.root=data", *GEN, *MODEL, "--set", "train.epochs=2",
            "--set", "train.eval_every=1", "--set", "sampler.batch_size=8", "--set", "sampler.num_instances=2",
            "--set", "train.amp=false", "--rows", "1,6", "--no-concat", "--work", "work", "--out", "abl"]
    code, out, err = run(args, capsys)
    assert code == 0, err
    res = json.loads((tmp_path / "abl" / "results.json").read_text())
    assert [r["arm"] for r in res["table_a1"]["rows"]] == ["baseline", "dlcr_progressive", "dlcr_progressive_refined"]
    for r in res["table_a1"]["rows"]:
        assert r["top1"] is None and r["map"] is None and r["top1_std"] is None  # PRCC: no standard protocol
        for k in ("cc_top1", "cc_map", "sc_top1", "sc_map"):
            assert 0.0 <= r[k] <= 1.0, (r["arm"], k)
    assert "baseline" in out and " -" in out  # the printed table marks the missing cells
    for arm in ("baseline", "dlcr_progressive"):
        run_dir = tmp_path / "abl" / "runs" / f"{arm}_s0"
        assert (run_dir / "checkpoints" / "best.json").is_file()  # PRCC's val split chose a checkpoint
        paths = json.loads((run_dir / "eval" / "paths.json").read_text())
        ds = create_dataset("prcc", tmp_path / "data")
        assert paths["query"] == [s.path for s in ds.splits["query_diff"]]  # the clothes-changing queries
        assert paths["gallery"] == [s.path for s in ds.splits["gallery"]]
    assert (tmp_path / "abl" / "runs" / "dlcr_progressive_s0" / "eval" / "refined_sims.npy").is_file()
    page = (tmp_path / "abl" / "report.html").read_text()
    assert 'id="table-a1"' in page and "dataset: prcc" in page
