import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cli_run import cli_status as main
from dlcr.errors import UnsafePathError
from dlcr.generation.inpainters import create_inpainter
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.outputs import (
    PARTS_DIR,
    SKIPPED,
    commit_part,
    committed_job_ids,
    consolidate_manifest,
    read_manifest,
)
from dlcr.generation.planning import plan_jobs, write_jobs
from dlcr.generation.runner import run_jobs
from dlcr.generation.signature_record import recorded_hash
from dlcr.io.images import read_label_map, read_rgb
from dlcr.io.tables import read_table, write_table
from dlcr.testing.toy_generation import make_toy_dataset, runner_argv

RECOLOR = functools.partial(create_inpainter, "recolor")


@pytest.fixture
def toy(tmp_path: Path):
    samples, outfits, image_root, label_root = make_toy_dataset(
        tmp_path / "ds", n_persons=5, outfits_per_person=2
    )
    jobs = plan_jobs(samples, outfits, k=4, seed=0, dataset="toy")  # 10 images x 4 = 40 jobs
    return samples, jobs, image_root, label_root


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _run(jobs, image_root, label_root, out, **kw):
    return run_jobs(
        jobs, make_worker=RECOLOR, image_root=image_root, label_root=label_root, out_dir=out, **kw
    )


def test_run_generates_the_plan_and_a_rerun_does_nothing(toy, tmp_path):
    _, jobs, image_root, label_root = toy
    out = tmp_path / "out"
    rep = _run(jobs, image_root, label_root, out, batch_size=3)
    assert (rep.planned, rep.already_committed, rep.generated) == (40, 0, 40)
    recs = read_manifest(out)
    assert sorted(r.job_id for r in recs) == sorted(j.job_id for j in jobs)
    assert not list((out / PARTS_DIR).glob("*.parquet"))  # merged into the manifest
    by_id = {j.job_id: j for j in jobs}
    for r in recs[:8]:
        assert r.job == by_id[r.job_id] and r.backend == "recolor"
        img, src = read_rgb(out / r.file), read_rgb(image_root / r.source)
        assert (r.height, r.width) == img.shape[:2] == src.shape[:2]
        mask = np.isin(read_label_map(label_root / r.source), [*range(3, 13), 18, 19])
        assert np.array_equal(img[~mask], src[~mask]) and not np.array_equal(img[mask], src[mask])
        assert r.file == f"images/{r.source[:-4]}/{r.variant:02d}_{r.job_id}.png"
    before = _files(out / "images")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}
    rep2 = _run(jobs, image_root, label_root, out, batch_size=3)
    assert (rep2.already_committed, rep2.pending, rep2.generated) == (40, 0, 0)
    assert _files(out / "images") == before
    assert mtimes == {p: p.stat().st_mtime_ns for p in (out / "images").rglob("*.png")}


def test_empty_masks_are_skipped_and_reported(tmp_path):
    samples, outfits, image_root, label_root = make_toy_dataset(tmp_path / "ds", n_persons=3, empty_masks=1)
    jobs = plan_jobs(samples, outfits, k=2)
    empty_src = samples[-1].path
    rep = _run(jobs, image_root, label_root, tmp_path / "out")
    skipped = {j.job_id for j in jobs if j.source == empty_src}
    assert set(rep.skipped_empty) == skipped and rep.generated == len(jobs) - 2
    assert {r["job_id"] for r in read_table(tmp_path / "out" / SKIPPED)} == skipped
    assert not any(r.source == empty_src for r in read_manifest(tmp_path / "out"))
    assert _run(jobs, image_root, label_root, tmp_path / "out").pending == 0  # skipped ones are committed
    # a masks table flags empty sources up front: their label maps are not even read
    (label_root / (empty_src[:-4] + ".png")).unlink()
    write_table(
        tmp_path / "masks.parquet", [{"source": s.path, "empty": s.path == empty_src} for s in samples]
    )
    rep = _run(jobs, image_root, label_root, tmp_path / "out2", masks_table=tmp_path / "masks.parquet")
    assert set(rep.skipped_empty) == skipped and rep.generated == len(jobs) - 2


def test_partial_leftovers_are_cleaned_and_redone(toy, tmp_path):
    _, jobs, image_root, label_root = toy
    ref = tmp_path / "ref"
    _run(jobs, image_root, label_root, ref)
    out = tmp_path / "out"
    _run(jobs[:12], image_root, label_root, out, batch_size=4)
    # a killed run: a stale temp, an uncommitted garbage image, a committed image that disappeared
    rec = read_manifest(out)
    stale = out / "images" / "toy" / ".x.png.abc123.tmp"
    stale.write_bytes(b"partial")
    garbage = out / f"images/{jobs[20].source[:-4]}/{jobs[20].variant:02d}_{jobs[20].job_id}.png"
    garbage.parent.mkdir(parents=True, exist_ok=True)
    garbage.write_bytes(b"not a png")
    (out / rec[0].file).unlink()
    assert rec[0].job_id not in committed_job_ids(out)
    rep = _run(jobs, image_root, label_root, out, batch_size=5)
    assert rep.removed_temps == 1 and not stale.exists()
    assert rep.generated == 40 - 12 + 1
    assert _files(out / "images") == _files(ref / "images")
    assert read_table(out / MANIFEST) == read_table(ref / MANIFEST)


def test_consolidation_removes_duplicate_rows(toy, tmp_path):
    _, jobs, image_root, label_root = toy
    out = tmp_path / "out"
    _run(jobs[:6], image_root, label_root, out, batch_size=2, consolidate=False)
    parts = sorted((out / PARTS_DIR).glob("*.parquet"))
    assert len(parts) == 3
    rows = read_table(parts[0])
    commit_part(out, [{**rows[1]}, {**rows[0]}])  # the same jobs again under another part name
    consolidate_manifest(out)
    consolidate_manifest(out)  # idempotent
    ids = [r.job_id for r in read_manifest(out)]
    assert sorted(ids) == sorted(j.job_id for j in jobs[:6])


def test_sources_leaving_the_image_root_are_refused(toy, tmp_path):
    _, jobs, image_root, label_root = toy
    bad = [replace(jobs[0], source="../../etc/passwd")]
    with pytest.raises(UnsafePathError):
        _run(bad, image_root, label_root, tmp_path / "out")


def test_command_line_entry_point(toy, tmp_path, capsys):
    _, jobs, image_root, label_root = toy
    write_jobs(tmp_path / "jobs.parquet", jobs[:8])
    code = main(runner_argv(tmp_path / "jobs.parquet", image_root, label_root, tmp_path / "out",
                            "--option", "jitter=0.0", "--batch-size", "3"))
    assert code == 0 and "generated 8" in capsys.readouterr().out
    assert {r.model for r in read_manifest(tmp_path / "out")} == {"recolor(shading=1,jitter=0)"}
    assert (
        main(runner_argv(tmp_path / "jobs.parquet", image_root, label_root, tmp_path / "out", "--backend", "recolour"))
        == 2
    )
    assert "did you mean 'recolor'" in capsys.readouterr().err


def _count_pngs(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.png")) if folder.is_dir() else 0


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume_matches_an_uninterrupted_run(toy, tmp_path):
    _, jobs, image_root, label_root = toy
    write_jobs(tmp_path / "jobs.parquet", jobs)
    ref = tmp_path / "ref"
    _run(jobs, image_root, label_root, ref, batch_size=5)

    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dlcr",
           *runner_argv(tmp_path / "jobs.parquet", image_root, label_root, out, "--batch-size", "2")]
    env = {**os.environ, "DLCR_NO_PROGRESS": "1"}
    rng = np.random.default_rng(1234)
    killed_mid_run = 0
    for round_ in range(4):
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start_count = _count_pngs(out / "images")
        if round_ == 0:  # a kill at a random moment, most likely during start-up
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=float(rng.uniform(0.02, 0.2)))
        else:  # a kill after a random number of new images, plus a random few milliseconds
            target = start_count + int(rng.integers(1, 7))
            deadline = time.monotonic() + 30
            while (
                proc.poll() is None and _count_pngs(out / "images") < target and time.monotonic() < deadline
            ):
                time.sleep(0.001)
            time.sleep(float(rng.uniform(0, 0.004)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.returncode == -signal.SIGKILL and len(committed_job_ids(out)) < len(jobs):
            killed_mid_run += 1
    assert killed_mid_run >= 3  # the kills really interrupted the generation (before its end)

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert _files(out / "images") == _files(ref / "images")  # same files, same bytes
    rows = read_table(out / MANIFEST)
    # the command line records the generation signature (the reference run through run_jobs has none)
    assert {r.pop("signature") for r in rows} == {recorded_hash(out)}
    assert rows == [{k: v for k, v in r.items() if k != "signature"} for r in read_table(ref / MANIFEST)]
    ids = [r["job_id"] for r in read_table(out / MANIFEST)]
    assert len(ids) == len(set(ids)) == len(jobs)
    assert not list(out.rglob("*.tmp")) and not list((out / PARTS_DIR).glob("*.parquet"))


def test_label_maps_are_found_where_the_masks_stage_writes_them_or_beside_the_full_name(tmp_path):
    from dlcr.errors import ImageError
    from dlcr.generation.outputs import label_path_for

    (tmp_path / "cam1").mkdir()
    (tmp_path / "cam1" / "a.png").write_bytes(b"x")
    (tmp_path / "cam1" / "b.jpg.png").write_bytes(b"x")
    assert label_path_for(tmp_path, "cam1/a.jpg") == (tmp_path / "cam1" / "a.png").resolve()
    assert label_path_for(tmp_path, "cam1/b.jpg") == (tmp_path / "cam1" / "b.jpg.png").resolve()
    with pytest.raises(ImageError, match=r"looked for cam1/c\.png or cam1/c\.jpg\.png"):
        label_path_for(tmp_path, "cam1/c.jpg")
