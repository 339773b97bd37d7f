"""``dlcr data prepare`` writes samples.parquet; ``--set data.samples=...`` makes the later stages read the
dataset from it (the raw files, here a custom CSV, are not needed any more)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cli_run import run_cli as run
from user_dataset import build_user_dataset

GEN = ["--set", "generate.parser=folder", "--set", "generate.parser_model=labels",
       "--set", "generate.captioner=rule", "--set", "generate.summarizer=vote",
       "--set", "generate.backend=recolor", "--set", "generate.k=2"]


def one_error(code: int, err: str) -> str:
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (code, err)
    return lines[0]


@pytest.fixture
def prepared(tmp_path: Path, capsys, monkeypatch) -> dict[str, int]:
    counts = build_user_dataset(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["data", "prepare", "custom", "--root", "dataset", "--csv", "my.csv", "--out", "prep"],
                         capsys)
    assert code == 0, err
    assert pq.read_schema(tmp_path / "prep" / "samples.parquet").names[:2] == ["split", "path"]
    (tmp_path / "my.csv").rename(tmp_path / "gone.csv")  # the later stages must not need it
    return counts


def test_later_stages_read_the_prepared_table(prepared: dict[str, int], tmp_path: Path, capsys):
    from dlcr.generation.planning import read_jobs
    from dlcr.io.tables import read_table

    data = ["-c", "custom", "--set", "data.samples=prep/samples.parquet", "--set", "data.root=dataset"]
    for stage in ("masks", "describe", "plan"):
        code, out, err = run(["generate", stage, *data, *GEN, "--work", "work"], capsys)
        assert code == 0, (stage, err)
    masks = read_table(tmp_path / "work" / "masks" / "masks.parquet")
    assert len(masks) == prepared["train"] + prepared["query"] and all(r["clothes_pixels"] > 0 for r in masks)
    jobs = read_jobs(tmp_path / "work" / "jobs.parquet")
    assert len(jobs) == 2 * prepared["train"] and {j.dataset for j in jobs} == {"custom"}
    assert all((tmp_path / "dataset" / j.source).is_file() for j in jobs)
    # without data.samples the same command needs the CSV, which is gone
    line = one_error(*run(["generate", "plan", "-c", "custom", "--set", "data.csv=my.csv", "--set",
                           "data.root=dataset", *GEN, "--work", "work2"], capsys)[::2])
    assert "my.csv" in line


def test_a_table_of_another_dataset_or_root_is_refused(prepared: dict[str, int], tmp_path: Path, capsys):
    table = ["--set", "data.samples=prep/samples.parquet"]
    line = one_error(*run(["generate", "masks", "-c", "synthcc", *table, "--set", "data.root=dataset",
                           "--work", "w"], capsys)[::2])
    assert "prepared for dataset 'custom'" in line and "'synthcc'" in line, line
    line = one_error(*run(["train", "-c", "prcc", *table, "--set", "data.root=dataset"], capsys)[::2])
    assert "prepared for dataset 'custom'" in line, line
    (tmp_path / "elsewhere").mkdir()
    line = one_error(*run(["generate", "masks", "-c", "custom", *table, "--set", "data.root=elsewhere", *GEN,
                           "--work", "w"], capsys)[::2])
    assert "not under data.root elsewhere" in line, line
    line = one_error(*run(["generate", "masks", "-c", "custom", "--set", "data.samples=prep/nope.parquet",
                           "--set", "data.root=dataset", *GEN, "--work", "w"], capsys)[::2])
    assert "not found" in line and "dlcr data prepare" in line, line
    assert not (tmp_path / "w").exists()  # refused before any work


def test_a_table_written_with_the_old_rel_path_column_is_read(prepared: dict[str, int], tmp_path: Path):
    from dlcr.data.datasets import dataset_from_samples, read_samples

    new = tmp_path / "prep" / "samples.parquet"
    table = pq.read_table(new)
    old = table.rename_columns(["rel_path" if c == "path" else c for c in table.column_names])
    pq.write_table(old.replace_schema_metadata(table.schema.metadata), tmp_path / "old.parquet")
    assert read_samples(tmp_path / "old.parquet") == read_samples(new)
    ds = dataset_from_samples(tmp_path / "old.parquet", tmp_path / "dataset")
    assert ds.name == "custom" and len(ds.protocols) == 3  # the metadata survives the old column name
    assert {k: len(v) for k, v in ds.splits.items()} == prepared
