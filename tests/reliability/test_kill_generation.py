"""SIGKILL ``dlcr generate inpaint`` at random moments, resume each time, compare with an unbroken run.

Each round starts the real command (``python -m dlcr generate inpaint``) on the same work folder and
kills it with SIGKILL either after a random delay (mostly during start-up / model loading) or a few
milliseconds after a random number of new images appeared (mid-batch: images written, batch not yet
committed). After every kill the folder must hold only complete, decodable images for the committed
jobs; after the final uninterrupted resume the images must be byte-identical to a run that was never
interrupted, the manifest must list every job exactly once, and no temp or part file may remain.

Both backends are byte-deterministic on CPU: ``recolor`` by construction, ``tiny`` (the real diffusers
code path) because every job has its own seeded CPU generator and a resumed run re-forms exactly the
batches of an unbroken one (pending jobs are always the suffix after the last committed batch).
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from relia_util import PYTHON, H, W, cli_env, clone, replan

from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.outputs import PARTS_DIR, STATUS_OK, committed_job_ids
from dlcr.generation.planning import read_jobs, write_jobs
from dlcr.generation.stages import GENERATED, JOBS
from dlcr.io.images import read_rgb
from dlcr.io.tables import read_table

pytestmark = pytest.mark.slow


def _cmd(world: Path, work: Path, backend: str, batch_size: int) -> list[str]:
    return [PYTHON, "-m", "dlcr", "generate", "inpaint", "--set", f"data.root={world}",
            "--set", f"generate.backend={backend}", "--set", f"generate.batch_size={batch_size}",
            "--work", str(work)]


def _pngs(folder: Path) -> int:
    return sum(1 for _ in folder.rglob("*.png")) if folder.is_dir() else 0


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _check_committed(out: Path) -> int:
    """Every committed record names a complete image; returns how many jobs are committed."""
    rows = read_table(out / MANIFEST) if (out / MANIFEST).is_file() else []
    for part in sorted((out / PARTS_DIR).glob("*.parquet")) if (out / PARTS_DIR).is_dir() else []:
        rows += [r for r in read_table(part) if r["status"] == STATUS_OK]
    for r in rows:
        assert read_rgb(out / r["file"]).shape == (H, W, 3), r["file"]  # decodes: never a partial PNG
    return len(committed_job_ids(out))


def _kill_and_resume(world: Path, work: Path, backend: str, batch_size: int, *, seed: int, time_kills: int,
                     count_kills: int, max_delay: float, jitter: float, env: dict[str, str]) -> None:
    """Kill ``time_kills`` rounds after a random delay (or as soon as the first new image appears,
    whichever comes first: a start-up kill), then ``count_kills`` rounds a random few milliseconds
    after 1-3 new images appeared (a mid-generation kill), resuming every time."""
    out = work / GENERATED
    n_jobs = len(read_jobs(work / JOBS))
    cmd = _cmd(world, work, backend, batch_size)
    rng = np.random.default_rng(seed)
    interrupted = 0
    trace = []  # (round, seconds alive, images on disk, jobs committed) -- shown when an assertion fails
    for round_ in range(time_kills + count_kills):
        before = _pngs(out / "images")
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.monotonic()
        if round_ < time_kills:
            delay, target = float(rng.uniform(0.05, max_delay)), before + 1
        else:
            delay, target = 120.0, before + int(rng.integers(1, 4))
        while proc.poll() is None and _pngs(out / "images") < target and time.monotonic() - t0 < delay:
            time.sleep(0.002)
        time.sleep(float(rng.uniform(0, jitter if round_ % 2 else 0.002)))  # odd rounds: later in the batch
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = _check_committed(out) if out.is_dir() else 0
        trace.append((round_, round(time.monotonic() - t0, 2), _pngs(out / "images"), done))
        if proc.returncode == -signal.SIGKILL and done < n_jobs:
            interrupted += 1
    print(f"{backend} kills (round, seconds, images, committed):", trace)
    assert interrupted >= 10, f"only {interrupted} kills interrupted the generation before its end: {trace}"
    assert _pngs(out / "images") < n_jobs or len(committed_job_ids(out)) < n_jobs  # work was left to resume

    final = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-3000:]


def _assert_same_as(out: Path, ref: Path, n_jobs: int) -> None:
    assert _files(out / "images") == _files(ref / "images")  # same files, same bytes
    rows = read_table(out / MANIFEST)
    assert rows == read_table(ref / MANIFEST)
    ids = [r["job_id"] for r in rows]
    assert len(ids) == len(set(ids)) == n_jobs  # no duplicate, no missing row
    assert not list(out.rglob("*.tmp")), "temp files left behind"
    assert not list((out / PARTS_DIR).glob("*.parquet")), "uncommitted parts left behind"


def test_recolor_sigkill_at_random_moments_then_resume_is_byte_identical(world, work, tmp_path):
    from dlcr.cli.main import main

    ref = clone(work, tmp_path / "ref")
    kill = clone(work, tmp_path / "kill")
    for w in (ref, kill):  # start from the plan: no generated images yet
        import shutil

        shutil.rmtree(w / GENERATED)
    main(["generate", "inpaint", "--set", f"data.root={world}", "--set", "generate.backend=recolor",
          "--set", "generate.batch_size=2", "--work", str(ref)])
    _kill_and_resume(world, kill, "recolor", 2, seed=7, time_kills=3, count_kills=9, max_delay=2.0,
                     jitter=0.003, env=cli_env())
    _assert_same_as(kill / GENERATED, ref / GENERATED, len(read_jobs(work / JOBS)))


def test_tiny_diffusers_sigkill_at_random_moments_then_resume_is_byte_identical(world, work, tmp_path,
                                                                               tmp_path_factory):
    import shutil

    pytest.importorskip("diffusers")
    env = cli_env(DLCR_CACHE_DIR=str(tmp_path_factory.mktemp("tiny-cache")))
    base = clone(work, tmp_path / "base")
    shutil.rmtree(base / GENERATED)
    replan(world, base, "tiny")
    write_jobs(base / JOBS, read_jobs(base / JOBS)[:24])  # the tiny pipeline is ~0.1 s a job: keep it short
    ref = clone(base, tmp_path / "ref")
    kill = clone(base, tmp_path / "kill")
    # the reference also builds the tiny pipeline into the cache, so no kill lands inside that build
    done = subprocess.run(_cmd(world, ref, "tiny", 2), env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    _kill_and_resume(world, kill, "tiny", 2, seed=11, time_kills=6, count_kills=4, max_delay=3.0, jitter=0.05,
                     env=env)
    _assert_same_as(kill / GENERATED, ref / GENERATED, 24)
    assert {r["backend"] for r in read_table(kill / GENERATED / MANIFEST)} == {"tiny"}
