"""`dlcr data ...` through the real entry point (dlcr.cli.main.main)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
from PIL import Image

from cli_run import run_cli as run
from dlcr.cli.data import parse_size
from dlcr.data.datasets import read_samples
from dlcr.errors import InputError


def img(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 8), (1, 2, 3)).save(path)


def make_ltcc(root: Path) -> None:
    for rel in ["train/001_1_c1_000.png", "train/003_2_c2_000.png", "query/010_1_c1_000.png",
                "test/010_1_c2_000.png", "test/010_2_c3_001.png"]:
        img(root / "LTCC_ReID" / rel)


def test_inspect_json_contract(tmp_path: Path, capsys):
    make_ltcc(tmp_path)
    code, out, err = run(["data", "inspect", "ltcc", "--root", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    data = json.loads(out)
    assert data == {
        "dataset": "ltcc",
        "splits": {
            "train": [
                {"path": "LTCC_ReID/train/001_1_c1_000.png", "pid": 0, "camid": 0, "clothes_id": 0},
                {"path": "LTCC_ReID/train/003_2_c2_000.png", "pid": 1, "camid": 1, "clothes_id": 1},
            ],
            "query": [{"path": "LTCC_ReID/query/010_1_c1_000.png", "pid": 10, "camid": 0, "clothes_id": 0}],
            "gallery": [
                {"path": "LTCC_ReID/test/010_1_c2_000.png", "pid": 10, "camid": 1, "clothes_id": 0},
                {"path": "LTCC_ReID/test/010_2_c3_001.png", "pid": 10, "camid": 2, "clothes_id": 1},
            ],
        },
    }


def test_inspect_video_json_one_record_per_tracklet(tmp_path: Path, capsys):
    base = tmp_path / "CCVID"
    for folder in ("session1/001_01", "session2/002_02", "session3/002_04"):
        img(base / folder / "00000.jpg")
        img(base / folder / "00001.jpg")
    (base / "train.txt").write_text("session1/001_01 1 1\n")
    (base / "query.txt").write_text("session2/002_02 2 1\n")
    (base / "gallery.txt").write_text("session3/002_04 2 2\n")
    code, out, err = run(["data", "inspect", "ccvid", "--root", str(tmp_path), "--json"], capsys)
    assert code == 0, err
    splits = json.loads(out)["splits"]
    assert splits["gallery"] == [{"path": "CCVID/session3/002_04", "pid": 2, "camid": 16, "clothes_id": 1}]
    assert len(splits["train"]) == 1


def test_inspect_summary_and_check(tmp_path: Path, capsys):
    make_ltcc(tmp_path)
    code, out, _ = run(["data", "inspect", "ltcc", "--root", str(tmp_path), "--check"], capsys)
    assert code == 0
    assert "train: 2 ids, 2 images, 2 clothes, 2 cameras" in out
    assert "cc = query -> gallery (CC)" in out and "all images readable" in out
    (tmp_path / "LTCC_ReID" / "test" / "010_2_c3_001.png").write_bytes(b"broken")
    code, out, err = run(["data", "inspect", "ltcc", "--root", str(tmp_path), "--check"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: 1 of 5 images of ltcc are unreadable") and "010_2_c3_001.png" in err


def test_strict_flag(tmp_path: Path, capsys):
    make_ltcc(tmp_path)
    img(tmp_path / "LTCC_ReID" / "train" / "bad-name.png")
    code, _, err = run(["data", "inspect", "ltcc", "--root", str(tmp_path)], capsys)
    assert code == 2 and "bad-name.png" in err and err.count("\n") == 1
    code, out, _ = run(["data", "inspect", "ltcc", "--root", str(tmp_path), "--no-strict"], capsys)
    assert code == 0 and "skipped 1 file" in out


def test_errors_are_one_line(tmp_path: Path, capsys):
    code, out, err = run(["data", "inspect", "ltcc", "--root", str(tmp_path / "none")], capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and err.startswith("error: dataset root")
    code, _, err = run(["data", "stats", "ltcx", "--root", str(tmp_path)], capsys)
    assert code == 2 and "did you mean 'ltcc'" in err and err.count("\n") == 1


def test_stats_table(tmp_path: Path, capsys):
    make_ltcc(tmp_path)
    code, out, _ = run(["data", "stats", "ltcc", "--root", str(tmp_path)], capsys)
    assert code == 0
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in out.splitlines() if line.count("│") >= 6}
    assert rows["train"] == ["2", "2", "2", "2"]
    assert rows["gallery"] == ["1", "2", "2", "2"]
    assert "#images" in out and "#cameras" in out


def test_prepare_writes_samples(tmp_path: Path, capsys):
    make_ltcc(tmp_path)
    out_dir = tmp_path / "prep"
    code, out, _ = run(["data", "prepare", "ltcc", "--root", str(tmp_path), "--out", str(out_dir)], capsys)
    assert code == 0 and "samples.parquet" in out
    back = read_samples(out_dir / "samples.parquet")
    assert {k: len(v) for k, v in back.items()} == {"train": 2, "query": 1, "gallery": 2}
    assert back["gallery"][1].clothes_key == "010_2"


def test_custom_needs_csv(tmp_path: Path, capsys):
    img(tmp_path / "a.png")
    code, _, err = run(["data", "inspect", "custom", "--root", str(tmp_path)], capsys)
    assert code == 2 and "--csv" in err
    (tmp_path / "d.csv").write_text("path,pid,camid,clothes,split\na.png,3,0,x,train\n")
    code, out, _ = run(["data", "inspect", "custom", "--root", str(tmp_path), "--csv", str(tmp_path / "d.csv"),
                        "--json"], capsys)
    assert code == 0
    assert json.loads(out)["splits"]["train"] == [{"path": "a.png", "pid": 0, "camid": 0, "clothes_id": 0}]


def test_parse_size():
    assert parse_size("128x64") == (128, 64)
    assert parse_size(" 256 X 128 ") == (256, 128)
    for bad in ("128", "x64", "128x0", "axb", "128x64x3", ""):
        with pytest.raises(InputError, match="HEIGHTxWIDTH"):
            parse_size(bad)


@pytest.fixture
def fake_synth(monkeypatch):
    calls = []

    def render_world(out_dir, *, ids=150, seed=0, height=128, width=64):
        calls.append({"out_dir": str(out_dir), "ids": ids, "seed": seed, "height": height, "width": width})
        return {"ids": ids, "images": 12, "root": Path(out_dir) / "synthcc"}

    monkeypatch.setitem(sys.modules, "dlcr.synth", types.SimpleNamespace(render_world=render_world))
    return calls


def test_synth_passes_options_and_prints_summary(tmp_path: Path, capsys, fake_synth):
    code, out, err = run(["data", "synth", "--out", str(tmp_path), "--ids", "6", "--seed", "3",
                          "--size", "64x32"], capsys)
    assert code == 0, err
    assert fake_synth == [{"out_dir": str(tmp_path), "ids": 6, "seed": 3, "height": 64, "width": 32}]
    summary = json.loads(out)
    assert summary["images"] == 12 and summary["root"] == str(tmp_path / "synthcc")
    code, out, err = run(["data", "synth", "--out", str(tmp_path), "--size", "64by32"], capsys)
    assert code == 2 and len(fake_synth) == 1 and err.count("\n") == 1 and "--size" in err


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["generate.parser=schp"], "parser 'schp' needs generate.parser_model=<path to an SCHP checkpoint (LIP, ATR or Pascal-Person-Part)>"),
        (["generate.parser=folder"], "parser 'folder' needs generate.parser_model=<folder of label maps>"),
        (["generate.captioner=hf"], "captioner 'hf' needs generate.captioner_model=<hub id or folder>"),
        (["generate.summarizer=hf"], "summarizer 'hf' needs generate.summarizer_model=<hub id or folder>"),
    ],
)
def test_generate_backends_name_the_setting_they_need(sets, message):
    from dlcr.cli.common import get_config
    from dlcr.cli.generate import _describers, _parser
    from dlcr.errors import ConfigError

    cfg = get_config("synthcc", sets)
    with pytest.raises(ConfigError) as e:
        (_parser if "parser" in sets[0] else _describers)(cfg)
    assert str(e.value) == message


def test_generate_runs_on_a_custom_csv_dataset(tmp_path: Path, capsys, monkeypatch):
    """`data.csv` reaches the `custom` dataset from every command that opens the configured dataset."""
    import csv
    import re

    from dlcr.generation.outputs import read_manifest
    from dlcr.synth.writer import render_world

    render_world(tmp_path / "data", ids=4, seed=0, height=32, width=16)
    rows = []
    for split, name in (("train", "train"), ("query", "query"), ("test", "gallery")):
        for f in sorted((tmp_path / "data" / "synthcc" / split).glob("*.png")):
            m = re.fullmatch(r"(\d+)_(\d+)_c(\d+)_(\d+)\.png", f.name)
            if m:
                rows.append([f"synthcc/{split}/{f.name}", int(m[1]), int(m[3]), m[2], name])
    with open(tmp_path / "set.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "pid", "camid", "clothes", "split"], *rows])
    monkeypatch.chdir(tmp_path)
    sets = ["--set", "data.name=custom", "--set", "data.root=data", "--set", "data.csv=set.csv",
            "--set", "generate.parser=synthcc", "--set", "generate.backend=recolor", "--set", "generate.k=2"]
    code, out, err = run(["generate", "all", *sets, "--work", "w", "--no-queries"], capsys)
    assert code == 0, err
    n_train = sum(r[4] == "train" for r in rows)
    records = read_manifest(tmp_path / "w" / "generated")
    assert len(records) == 2 * n_train and {r.dataset for r in records} == {"custom"}
    # data.csv on another dataset is a one-line error, not silently ignored
    code, _, err = run(["generate", "plan", "--set", "data.csv=set.csv", "--work", "w"], capsys)
    assert code == 2 and err.startswith("error: data.csv is read only by the 'custom' dataset")
