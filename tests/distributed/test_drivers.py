import functools
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dlcr.distributed.env import dist_env, shard
from dlcr.errors import ConfigError
from dlcr.generation.inpainters import create_inpainter
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.planning import plan_jobs, write_jobs
from dlcr.generation.runner import inpaint_signature, run_jobs
from dlcr.io.tables import read_table
from dlcr.testing.toy_generation import make_toy_dataset, runner_argv


@pytest.fixture
def toy(tmp_path: Path):
    samples, outfits, image_root, label_root = make_toy_dataset(
        tmp_path / "ds", n_persons=5, outfits_per_person=2
    )
    jobs = plan_jobs(samples, outfits, k=4, seed=0, dataset="toy")  # 40 jobs
    write_jobs(tmp_path / "jobs.parquet", jobs)
    return jobs, image_root, label_root


def _sig(jobs, label_root, **options):
    """The signature the command line computes for the whole plan (jobs.parquet) and ``options``."""
    return inpaint_signature("recolor", options, jobs, label_root)


def _cli(tmp_path, image_root, label_root, out, *extra):
    return runner_argv(tmp_path / "jobs.parquet", image_root, label_root, out, "--batch-size", "3", *extra)


def _images(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted((out / "images").rglob("*.png"))}


def _assert_exactly_the_plan(out: Path, jobs, ref: Path | None = None):
    ids = [r["job_id"] for r in read_table(out / MANIFEST)]
    assert len(ids) == len(set(ids))
    assert set(ids) == {j.job_id for j in jobs}
    assert len(_images(out)) == len(jobs)
    if ref is not None:
        assert _images(out) == _images(ref)
        assert read_table(out / MANIFEST) == read_table(ref / MANIFEST)


def test_dist_env_and_shard():
    assert dist_env({}) == dist_env({"RANK": "0", "WORLD_SIZE": "1"})
    e = dist_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (e.rank, e.world_size, e.local_rank, e.is_main, e.is_distributed) == (3, 4, 1, False, True)
    assert dist_env({"SLURM_PROCID": "2", "SLURM_NTASKS": "3", "SLURM_LOCALID": "0"}).rank == 2
    with pytest.raises(ConfigError):
        dist_env({"RANK": "2", "WORLD_SIZE": "2"})
    with pytest.raises(ConfigError, match="not an integer"):
        dist_env({"RANK": "x", "WORLD_SIZE": "2"})
    items = list(range(10))
    shares = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(shares, [])) == items and shares[1] == [1, 4, 7]


def test_plain_processes_with_rank_env_produce_exactly_the_plan(toy, tmp_path):
    jobs, image_root, label_root = toy
    ref = tmp_path / "ref"
    run_jobs(
        jobs,
        make_worker=functools.partial(create_inpainter, "recolor"),
        image_root=image_root,
        label_root=label_root,
        out_dir=ref,
        signature=_sig(jobs, label_root),
    )
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dlcr",
                *_cli(tmp_path, image_root, label_root, out, "--driver", "torchrun"),
            ],
            env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "DLCR_NO_PROGRESS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    # each rank did its static half (the "already committed" count depends on the other rank's pace)
    assert re.search(r"rank 0/2: planned 40, already committed \d+, generated 20\b", outs[0][0])
    assert re.search(r"rank 1/2: planned 40, already committed \d+, generated 20\b", outs[1][0])
    _assert_exactly_the_plan(out, jobs, ref)

    # other settings: every rank refuses; with --overwrite rank 0 replaces the outputs, rank 1 waits for it
    def ranks(*extra):
        procs = [subprocess.Popen([sys.executable, "-m", "dlcr",
                                   *_cli(tmp_path, image_root, label_root, out, "--driver", "torchrun", *extra)],
                                  env={**os.environ, "RANK": str(r), "WORLD_SIZE": "2", "DLCR_NO_PROGRESS": "1"},
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for r in range(2)]  # fmt: skip
        return procs, [p.communicate(timeout=60) for p in procs]

    procs, outs = ranks("--option", "jitter=0.1")
    assert [p.returncode for p in procs] == [2, 2]
    assert all("inpainter.options.jitter: 0.02 -> 0.1" in err for _, err in outs)
    procs, outs = ranks("--option", "jitter=0.1", "--overwrite")
    assert [p.returncode for p in procs] == [0, 0], [o[1] for o in outs]
    _assert_exactly_the_plan(out, jobs)
    assert {r["model"] for r in read_table(out / MANIFEST)} == {"recolor(shading=1,jitter=0.1)"}


def test_torchrun_two_cpu_processes_produce_exactly_the_plan(toy, tmp_path):
    pytest.importorskip("torch.distributed.run")
    jobs, image_root, label_root = toy
    out = tmp_path / "out"
    # a first, partial run: the torchrun run must do only the rest
    run_jobs(
        jobs[:7],
        make_worker=functools.partial(create_inpainter, "recolor"),
        image_root=image_root,
        label_root=label_root,
        out_dir=out,
        signature=_sig(jobs, label_root),
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "dlcr",
        *_cli(tmp_path, image_root, label_root, out, "--driver", "torchrun"),
    ]
    done = subprocess.run(
        cmd,
        env={**os.environ, "DLCR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    gen = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"rank (\d)/2: planned 40, already committed \d+, generated (\d+)", done.stdout)
    }
    assert set(gen) == {0, 1} and sum(gen.values()) == 40 - 7
    _assert_exactly_the_plan(out, jobs)


@pytest.mark.ray
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.slow
def test_ray_data_driver_produces_exactly_the_plan(toy, tmp_path):
    ray = pytest.importorskip("ray")
    jobs, image_root, label_root = toy
    ref = tmp_path / "ref"
    make = functools.partial(create_inpainter, "recolor")
    sig = _sig(jobs, label_root)
    run_jobs(jobs, make_worker=make, image_root=image_root, label_root=label_root, out_dir=ref, signature=sig)
    out = tmp_path / "out"
    run_jobs(jobs[:5], make_worker=make, image_root=image_root, label_root=label_root, out_dir=out, signature=sig)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        rep = run_jobs(
            jobs,
            make_worker=make,
            image_root=image_root,
            label_root=label_root,
            out_dir=out,
            batch_size=4,
            driver="ray",
            ray_concurrency=2,
            ray_num_gpus=0,
            signature=sig,
        )
    finally:
        ray.shutdown()
    assert (rep.already_committed, rep.pending, rep.generated) == (5, 35, 35)
    _assert_exactly_the_plan(out, jobs, ref)


def test_resolve_device_defaults_to_cpu_without_a_gpu_and_passes_names_through(monkeypatch):
    import torch

    from dlcr.distributed.env import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device() == resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no usable CUDA GPU"):  # not a traceback at the first .to()
        resolve_device("cuda:1")
    with pytest.raises(ConfigError, match="unknown device 'gpu'"):
        resolve_device("gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(ConfigError, match="has 2 CUDA GPU"):
        resolve_device("cuda:2")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert resolve_device() == "cuda:1"  # local rank 3 on a 2-GPU node
