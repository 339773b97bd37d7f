"""SIGKILL ``dlcr train`` during an epoch and inside a checkpoint write; ``--resume`` continues exactly.

Every run is a real ``dlcr train`` process (``train_hook.py`` wraps the CLI entry point with two test
hooks: a log of the training items the loader fetched, and a pause inside a chosen checkpoint file's
write, so the kill lands inside the save every time instead of by luck). The resumed runs must
consume exactly the sampler stream of an uninterrupted run from the last complete checkpoint on and
end with bit-identical weights (CPU, one thread; no loader workers, and once with two).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from relia_util import HERE, PYTHON, cli_env, data_sets
from safetensors.torch import load_file

from dlcr.engine.checkpoint_files import latest_checkpoint

pytestmark = pytest.mark.slow

EPOCHS = 3
PER_BATCH = 16  # paired sampler: 8 real images + one generated variant of each
HOOK = HERE / "train_hook.py"


def _args(world: Path, work: Path, out: Path, resume: bool = False) -> list[str]:
    sets = {"train.epochs": EPOCHS, "train.eval_every": 0, "loss.cal_start_epoch": 1, "sampler.mode": "paired",
            "sampler.batch_size": 8, "sampler.num_instances": 2, "sampler.num_partitions": 2,
            "sampler.progressive_every": 1}
    args = [*data_sets(world), "--work", str(work), "--out", str(out), "--name", "run", "--device", "cpu"]
    for k, v in sets.items():
        args += ["--set", f"{k}={v}"]
    return args + (["--resume"] if resume else [])


def _start(args: list[str], log: Path, err: Path, **env: str) -> subprocess.Popen:
    with open(err, "wb") as fh:  # a file, not a pipe: a paused child must never block on a full pipe
        return subprocess.Popen([PYTHON, str(HOOK), *args], env=cli_env(RELIA_INDEX_LOG=str(log), **env),
                                stdout=subprocess.DEVNULL, stderr=fh)


def _wait_for(cond: Callable[[], bool], proc: subprocess.Popen, err: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if proc.poll() is not None:
            raise AssertionError(f"run ended (code {proc.returncode}) before the kill point: "
                                 f"{err.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting for the kill point")
        time.sleep(0.01)


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _finish(args: list[str], log: Path, err: Path, **env: str) -> None:
    proc = _start(args, log, err, **env)
    assert proc.wait(timeout=300) == 0, err.read_text()[-3000:]


def _log(path: Path) -> dict[int, list[int]]:
    """epoch -> pool indices in the order the run fetched them."""
    out: dict[int, list[int]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            r = json.loads(line)
            out.setdefault(r["e"], []).append(r["i"])
    return out


def _count(path: Path, epoch: int) -> int:
    return len(_log(path).get(epoch, []))


def _ckpt_epoch(run: Path) -> int | None:
    last = latest_checkpoint(run / "checkpoints")
    return None if last is None else int(json.loads(last.read_text())["epoch"])


def _model_weights(run: Path) -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(run / "checkpoints" / "last.safetensors")).items()
            if k.startswith("model.")}


def _assert_same_weights(run: Path, ref: dict[str, torch.Tensor]) -> None:
    got = _model_weights(run)
    assert got.keys() == ref.keys()
    for k, v in ref.items():
        assert torch.equal(got[k], v), f"{k} differs from the uninterrupted run"


def _assert_clean_run(run: Path) -> None:
    ck = run / "checkpoints"
    assert not list(ck.glob(".*.tmp")), "temp files of the killed checkpoint writes remain"
    assert sorted(p.name for p in ck.iterdir()) == ["last.json", "last.optim.safetensors", "last.safetensors"]
    assert [json.loads(x)["epoch"] for x in (run / "log.jsonl").read_text().splitlines()] == [1, 2, 3]
    # history.json: the full list is checked by test_resume_keeps_the_history_of_completed_epochs
    assert json.loads((run / "history.json").read_text())[-1]["epoch"] == EPOCHS


@pytest.fixture(scope="module")
def reference(world: Path, work: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """An uninterrupted run: its consumed sampler stream per epoch and its final weights."""
    d = tmp_path_factory.mktemp("ref_train")
    _finish(_args(world, work, d / "runs"), d / "ref.jsonl", d / "ref.err")
    log = _log(d / "ref.jsonl")
    assert sorted(log) == [0, 1, 2] and all(len(v) % PER_BATCH == 0 and v for v in log.values())
    return {"log": log, "weights": _model_weights(d / "runs" / "run")}


def test_sigkill_during_an_epoch_then_resume_continues_the_same_stream(world, work, reference, tmp_path):
    from dlcr.config import load_config
    from dlcr.config_args import trainer_from_config
    from dlcr.data.datasets import create_dataset
    from dlcr.engine.build import GeneratedData, TrainData
    from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
    from dlcr.generation.stages import GENERATED
    from dlcr.io.tables import read_table

    out, run = tmp_path / "runs", tmp_path / "runs" / "run"
    ref = reference["log"]
    a_log, err = tmp_path / "a.jsonl", tmp_path / "a.err"
    proc = _start(_args(world, work, out), a_log, err)
    _wait_for(lambda: _count(a_log, 1) >= 2 * PER_BATCH, proc, err)  # two batches into the 2nd epoch
    _kill(proc)
    assert _ckpt_epoch(run) == 0, "the kill should land inside epoch 1, after checkpoint 0"
    a = _log(a_log)
    assert a[0] == ref[0] and 0 < len(a[1]) < len(ref[1]) and a[1] == ref[1][: len(a[1])]

    # The trainer rebuilt from the run folder hands out, from the checkpoint on, the very batches the
    # uninterrupted run consumed (not the ones the killed process had already started on).
    cfg = load_config(run / "config.yaml")
    gen = GeneratedData(rows=read_table(work / GENERATED / MANIFEST), root=work / GENERATED)
    tr = trainer_from_config(cfg, TrainData.from_dataset(create_dataset("synthcc", world)), run, generated=gen,
                             device="cpu")
    assert tr.resume() and tr.start_epoch == 1
    tr.sampler.set_epoch(1)
    assert [i for batch in tr.sampler for i in batch] == ref[1]

    b_log = tmp_path / "b.jsonl"
    _finish(_args(world, work, out, resume=True), b_log, tmp_path / "b.err")
    b = _log(b_log)
    assert sorted(b) == [1, 2] and b[1] == ref[1] and b[2] == ref[2]
    _assert_same_weights(run, reference["weights"])
    _assert_clean_run(run)


@pytest.mark.parametrize("chain", [[(1, "last.safetensors"), (2, "last.json"), (2, "last.optim.safetensors")]])
def test_sigkill_inside_checkpoint_writes_then_resume_from_last_complete(world, work, reference, tmp_path, chain):
    """Killed while writing the weights, the JSON, then the optimizer state of a checkpoint."""
    out, run = tmp_path / "runs", tmp_path / "runs" / "run"
    ref = reference["log"]
    for n, (epoch, fname) in enumerate(chain):
        marker, log, err = tmp_path / f"m{n}", tmp_path / f"{n}.jsonl", tmp_path / f"{n}.err"
        proc = _start(_args(world, work, out, resume=n > 0), log, err, RELIA_PAUSE_SAVE=f"{epoch}:{fname}",
                      RELIA_MARKER=str(marker))
        _wait_for(marker.is_file, proc, err)
        _kill(proc)
        assert list((run / "checkpoints").glob(f".{fname}.*.tmp")), "the kill did not land inside the write"
        # the checkpoint being written is lost, the one before it must not be
        assert _ckpt_epoch(run) == epoch - 1, f"after a kill inside {fname} of epoch {epoch}"
        got = _log(log)
        for e, idx in got.items():  # the killed run consumed the reference stream, epoch by epoch
            assert idx == ref[e], e
    last = tmp_path / "last.jsonl"
    _finish(_args(world, work, out, resume=True), last, tmp_path / "last.err")
    resumed_from = chain[-1][0]
    assert _log(last) == {e: ref[e] for e in range(resumed_from, EPOCHS)}
    _assert_same_weights(run, reference["weights"])
    _assert_clean_run(run)


def test_resume_keeps_the_history_of_completed_epochs(world, work, tmp_path):
    from dlcr.config import load_config
    from dlcr.config_args import trainer_from_config
    from dlcr.data.datasets import create_dataset
    from dlcr.engine.build import GeneratedData, TrainData
    from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
    from dlcr.generation.stages import GENERATED
    from dlcr.io.tables import read_table

    sets = [f"data.root={world}", "data.height=64", "data.width=32", "data.workers=0", "train.eval_every=0",
            "sampler.mode=none", "sampler.batch_size=8", "sampler.num_instances=2"]
    data = TrainData.from_dataset(create_dataset("synthcc", world))
    gen = GeneratedData(rows=read_table(work / GENERATED / MANIFEST), root=work / GENERATED)
    trainer_from_config(load_config("synthcc", [*sets, "train.epochs=1"]), data, tmp_path, generated=gen,
                        device="cpu").fit()
    again = trainer_from_config(load_config("synthcc", [*sets, "train.epochs=2"]), data, tmp_path, generated=gen,
                                device="cpu")
    assert again.resume() and again.start_epoch == 1
    assert [h["epoch"] for h in again.fit().history] == [1, 2]


def test_sigkill_with_loader_workers_then_resume_ends_with_the_uninterrupted_weights(world, work, tmp_path):
    """``data.workers=2``: the augmentations are drawn in loader worker processes, seeded per epoch
    from the checkpointed state, so a run killed mid-epoch and resumed still ends bit-identical to an
    uninterrupted run with the same workers (the fetch order across workers is not compared)."""
    workers = ["--set", "data.workers=2"]
    _finish(_args(world, work, tmp_path / "ref") + workers, tmp_path / "ref.jsonl", tmp_path / "ref.err")
    ref = _model_weights(tmp_path / "ref" / "run")
    out, run = tmp_path / "runs", tmp_path / "runs" / "run"
    a_log, err = tmp_path / "a.jsonl", tmp_path / "a.err"
    proc = _start(_args(world, work, out) + workers, a_log, err)
    _wait_for(lambda: _count(a_log, 1) >= 2 * PER_BATCH, proc, err)  # the workers are fetching epoch 2
    _kill(proc)
    assert _ckpt_epoch(run) == 0, "the kill should land inside epoch 1, after checkpoint 0"
    _finish(_args(world, work, out, resume=True) + workers, tmp_path / "b.jsonl", tmp_path / "b.err")
    assert sorted(_log(tmp_path / "b.jsonl")) == [1, 2]
    _assert_same_weights(run, ref)
    _assert_clean_run(run)
