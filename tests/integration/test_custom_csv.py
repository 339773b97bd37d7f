"""A user's own dataset, described by a CSV, through every stage: data, generate, train, evaluate.

The images come from a small synthetic world, copied into a layout of the user's own (JPEG files
grouped by camera, person ids and outfit names of its own, a ``Query`` split written in another case)
so that nothing synthcc-specific can help: masks come from the ``folder`` parser (label maps
precomputed elsewhere, here the world's ground truth), captions from ``rule``, variants from
``recolor``; every backend is offline and works on any image.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from cli_run import run_cli as run
from dlcr.config import list_packaged_configs, load_config
from user_dataset import H, W, build_user_dataset


def one_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


def test_custom_csv_dataset_through_data_generate_train_evaluate(tmp_path: Path, capsys, monkeypatch):
    counts = build_user_dataset(tmp_path)
    # every relative path below is read from the working directory: data.csv too (not from data.root)
    monkeypatch.chdir(tmp_path)

    code, out, err = run(["data", "inspect", "custom", "--root", "dataset", "--csv", "my.csv", "--json"], capsys)
    assert code == 0, err
    splits = json.loads(out)["splits"]
    assert {k: len(v) for k, v in splits.items()} == counts
    code, out, err = run(["data", "inspect", "custom", "--root", "dataset", "--csv", "my.csv"], capsys)
    assert code == 0, err
    assert "protocols: standard" in out and "sc = query -> gallery (SC)" in out and "(CC)" in out

    data = ["-c", "custom", "--set", "data.csv=my.csv", "--set", "data.root=dataset"]
    gen = ["--set", "generate.parser=folder", "--set", "generate.parser_model=labels",
           "--set", "generate.captioner=rule", "--set", "generate.summarizer=vote",
           "--set", "generate.backend=recolor", "--set", "generate.k=2", "--set", "generate.query_variants=2"]
    code, out, err = run(["generate", "all", *data, *gen], capsys)  # --work defaults to out/custom
    assert code == 0, err
    from dlcr.generation.outputs import read_manifest
    from dlcr.io.tables import read_table

    work = tmp_path / "out" / "custom"
    masks = read_table(work / "masks" / "masks.parquet")  # the user's label maps were read, not blank ones
    assert len(masks) == counts["train"] + counts["query"] and all(r["clothes_pixels"] > 0 for r in masks)
    records = read_manifest(work / "generated")
    assert len(records) == 2 * counts["train"] and {r.dataset for r in records} == {"custom"}
    assert len(list((work / "generated").rglob("*.png"))) == 2 * counts["train"]
    assert len(read_manifest(work / "query_generated")) == 2 * counts["query"]
    code, out, err = run(["generate", "all", *data, *gen], capsys)  # done: everything is resumed, nothing redone
    assert code == 0, err
    assert len(read_manifest(work / "generated")) == 2 * counts["train"]

    model = ["--set", "model.name=small_resnet", "--set", "model.pretrained=null", "--set", f"data.height={H}",
             "--set", f"data.width={W}", "--set", "data.workers=0"]
    train = ["--set", "train.epochs=1", "--set", "train.eval_every=0", "--set", "sampler.batch_size=8",
             "--set", "sampler.num_instances=2", "--set", "train.amp=false"]
    code, out, err = run(["train", *data, *model, *train, "--name", "mine", "--out", "runs"], capsys)
    assert code == 0, err
    assert "trained 1 epoch" in out
    ck = tmp_path / "runs" / "mine" / "checkpoints" / "last.json"
    assert ck.is_file() and ck.with_suffix(".safetensors").is_file()

    code, out, err = run(["evaluate", *data, *model, "--checkpoint", "runs/mine/checkpoints/last.json",
                          "--refine", "--l", "2", "--m", "3"], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "runs" / "mine" / "eval" / "metrics.json").read_text())
    assert {"standard", "sc", "cc", "standard_refined", "cc_refined"} <= set(metrics)
    for name in ("standard", "sc", "cc"):
        r = metrics[name]
        for k in ("top1", "top5", "mAP", "mINP"):
            assert math.isfinite(r[k]) and 0.0 <= r[k] <= 1.0, (name, k, r[k])
        assert r["num_queries"] > 0, name
    assert metrics["standard"]["num_queries"] == counts["query"]


def test_custom_config_is_packaged_and_needs_data_csv(tmp_path: Path, capsys, monkeypatch):
    assert "custom" in list_packaged_configs()
    cfg = load_config("custom")
    assert cfg.data.name == "custom" and cfg.data.csv is None
    assert cfg.model.name == "cal_resnet50" and cfg.train.epochs == 60  # the CAL recipe, like prcc
    monkeypatch.chdir(tmp_path)
    for argv in (["generate", "all", "-c", "custom"], ["generate", "masks", "-c", "custom"],
                 ["generate", "describe", "-c", "custom"], ["generate", "plan", "-c", "custom"],
                 ["generate", "queries", "-c", "custom"], ["train", "-c", "custom"],
                 ["evaluate", "-c", "custom", "--checkpoint", "none.json", "--device", "cpu"],
                 ["train", "--set", "data.name=custom"]):
        line = one_error(*run(argv, capsys)[::2])
        assert "data.csv" in line and "--set data.csv=" in line, (argv, line)
    # data.csv on a dataset that does not read it is refused, not ignored
    line = one_error(*run(["train", "-c", "prcc", "--set", "data.csv=my.csv"], capsys)[::2])
    assert line == "error: data.csv is read only by the 'custom' dataset, not by 'prcc'"


def test_a_relative_data_csv_is_read_from_the_working_directory(tmp_path: Path, capsys, monkeypatch):
    (tmp_path / "root" / "imgs").mkdir(parents=True)
    Image.new("RGB", (8, 16)).save(tmp_path / "root" / "imgs" / "a.png")
    (tmp_path / "root" / "my.csv").write_text("path,pid,camid,clothes,split\nimgs/a.png,1,1,a,train\n")
    monkeypatch.chdir(tmp_path)
    sets = ["-c", "custom", "--set", "data.root=root", "--set", "generate.parser=synthcc"]
    # the CSV lies under data.root, but a relative data.csv is not looked up there: a hint says so
    line = one_error(*run(["generate", "masks", *sets, "--set", "data.csv=my.csv"], capsys)[::2])
    assert "working directory" in line and str(Path("root") / "my.csv") in line, line
    code, out, err = run(["data", "inspect", "custom", "--root", "root", "--csv", "root/my.csv"], capsys)
    assert code == 0 and "train: 1 ids, 1 images" in out, (out, err)
    monkeypatch.chdir(tmp_path / "root")  # from another folder the same relative path names another file
    one_error(*run(["data", "inspect", "custom", "--root", ".", "--csv", "root/my.csv"], capsys)[::2])


@pytest.mark.parametrize("csv_value", ["", "null"])
def test_an_empty_data_csv_is_the_missing_key_error(tmp_path: Path, capsys, monkeypatch, csv_value: str):
    monkeypatch.chdir(tmp_path)
    line = one_error(*run(["generate", "plan", "-c", "custom", "--set", f"data.csv={csv_value}"], capsys)[::2])
    assert "data.csv" in line
