"""The column-wise bookkeeping (committed set, consolidation, job tables) gives what the per-row code
(:mod:`dlcr.testing.bookkeeping_reference`) gave: the same committed ids, the same manifest and
skipped bytes, the same job tables."""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

from dlcr.errors import InputError
from dlcr.generation.inpainters import create_inpainter
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.outputs import (
    PARTS_DIR,
    SKIPPED,
    STATUS_EMPTY,
    commit_part,
    committed_job_ids,
    consolidate_manifest,
    existing_files,
    read_manifest,
)
from dlcr.generation.planning import plan_jobs, read_jobs, write_jobs
from dlcr.generation.runner import run_jobs
from dlcr.io.tables import read_table, write_table
from dlcr.testing.bookkeeping_reference import (
    committed_job_ids_reference,
    consolidate_manifest_reference,
    read_jobs_reference,
    write_jobs_reference,
)
from dlcr.testing.toy_generation import make_toy_dataset


@pytest.fixture
def messy(tmp_path: Path):
    """A folder in every state a run can leave: a manifest, parts (one repeated under another name),
    skipped rows in parts and in skipped.parquet, committed images that disappeared."""
    samples, outfits, image_root, label_root = make_toy_dataset(tmp_path / "ds", n_persons=5, outfits_per_person=2)
    jobs = plan_jobs(samples, outfits, k=4, seed=0, dataset="toy")
    out = tmp_path / "out"
    run = functools.partial(run_jobs, make_worker=functools.partial(create_inpainter, "recolor"),
                            image_root=image_root, label_root=label_root, out_dir=out)
    run(jobs[:12], batch_size=4)  # a consolidated manifest
    run(jobs[12:30], batch_size=4, consolidate=False)  # parts
    parts = sorted((out / PARTS_DIR).glob("*.parquet"))
    rows = read_table(parts[0])
    commit_part(out, [{**rows[1]}, {**rows[0]}])  # the same jobs again under another part name
    commit_part(out, [{**r, "status": STATUS_EMPTY, "file": ""} for r in (rows[2], *map(j2row, jobs[30:32]))])
    write_table(out / SKIPPED, [{"job_id": jobs[33].job_id, "source": jobs[33].source, "reason": STATUS_EMPTY}])
    manifest = read_table(out / MANIFEST)
    (out / manifest[0]["file"]).unlink()  # lost from the manifest
    (out / read_table(parts[1])[0]["file"]).unlink()  # lost from a part
    return out, jobs


def j2row(job):
    return {**job.to_dict(), "file": "", "width": 1, "height": 1, "backend": "recolor", "model": "", "signature": ""}


def _bytes(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix == ".parquet"}


def test_committed_ids_are_the_per_row_answer_and_a_missing_image_is_not_committed(messy):
    out, jobs = messy
    for check in (True, False):
        assert committed_job_ids(out, check) == committed_job_ids_reference(out, check)
    done = committed_job_ids(out)
    lost = read_table(out / MANIFEST)[0]["job_id"]
    assert lost not in done and lost in committed_job_ids(out, check_files=False)
    assert {jobs[30].job_id, jobs[33].job_id} <= done and len(done) == 30 + 3 - 2  # 2 skipped in parts, 1 in skipped.parquet, 2 lost


def test_consolidation_writes_the_per_row_bytes(messy, tmp_path):
    out, _ = messy
    ref = tmp_path / "ref"
    shutil.copytree(out, ref)
    consolidate_manifest(out)
    consolidate_manifest_reference(ref)
    assert _bytes(out) == _bytes(ref) and MANIFEST in _bytes(out) and SKIPPED in _bytes(out)
    assert not list((out / PARTS_DIR).glob("*.parquet"))
    consolidate_manifest(out)  # idempotent
    assert _bytes(out) == _bytes(ref)
    assert committed_job_ids(out) == committed_job_ids_reference(ref)
    assert len(read_manifest(out)) == 28


def test_consolidation_of_an_older_manifest_and_of_nothing(messy, tmp_path):
    out, _ = messy
    old = pa.Table.from_pylist(read_table(out / MANIFEST)).drop_columns(["signature"])  # before signatures
    write_table(out / MANIFEST, old)
    ref = tmp_path / "ref"
    shutil.copytree(out, ref)
    consolidate_manifest(out)
    consolidate_manifest_reference(ref)
    assert _bytes(out) == _bytes(ref)
    for folder in (tmp_path / "e1", tmp_path / "e2"):
        folder.mkdir()
    consolidate_manifest(tmp_path / "e1")
    consolidate_manifest_reference(tmp_path / "e2")
    assert _bytes(tmp_path / "e1") == _bytes(tmp_path / "e2")
    assert read_table(tmp_path / "e1" / MANIFEST) == [] and committed_job_ids(tmp_path / "e1") == set()


def test_existing_files_is_is_file_for_every_kind_of_name(tmp_path: Path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/b/x.png", "a/b/y.png", "a/z.png", "top.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "a" / "b" / "dir.png").mkdir()
    os.symlink(tmp_path / "a" / "b" / "x.png", tmp_path / "a" / "b" / "link.png")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "a" / "b" / "broken.png")
    names = ["a/b/x.png", "a/b/y.png", "a/b/gone.png", "a/b/dir.png", "a/b/link.png", "a/b/broken.png",
             "a/z.png", "a/z.png", "top.png", "", "a/b", "a/b/", "nodir/x.png", "a/b/./x.png", "a/b/../z.png",
             str(tmp_path / "top.png"), "top.png/x"]
    assert existing_files(tmp_path, names) == [(tmp_path / n).is_file() for n in names]
    assert existing_files(tmp_path, []) == []


def test_job_tables_are_the_per_row_tables(tmp_path: Path):
    samples, outfits, _, _ = make_toy_dataset(tmp_path / "ds", n_persons=4, outfits_per_person=2)
    jobs = plan_jobs(samples, outfits, k=3, seed=1, dataset="toy")
    write_jobs(tmp_path / "new.parquet", jobs)
    write_jobs_reference(tmp_path / "ref.parquet", jobs)
    assert (tmp_path / "new.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert read_jobs(tmp_path / "new.parquet") == read_jobs_reference(tmp_path / "ref.parquet") == jobs
    write_jobs(tmp_path / "empty.parquet", [])
    write_jobs_reference(tmp_path / "empty_ref.parquet", [])
    assert (tmp_path / "empty.parquet").read_bytes() == (tmp_path / "empty_ref.parquet").read_bytes()
    assert read_jobs(tmp_path / "empty.parquet") == read_jobs_reference(tmp_path / "empty.parquet") == []
    write_table(tmp_path / "bad.parquet", [{k: v for k, v in j.to_dict().items() if k != "seed"} for j in jobs])
    for reader in (read_jobs, read_jobs_reference):
        with pytest.raises(InputError, match=r"lacks column\(s\) \['seed'\]"):
            reader(tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="duplicate job ids"):
        write_jobs(tmp_path / "dup.parquet", jobs + jobs[:1])
