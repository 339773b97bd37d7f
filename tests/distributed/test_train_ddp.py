"""`torchrun --nproc_per_node=2 -m dlcr train …`: DDP on two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from dlcr.data.datasets import create_dataset
from dlcr.generation import stages
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.parsers import create_parser


@pytest.mark.slow
def test_torchrun_two_cpu_processes_train_paired_ddp(tmp_path):
    pytest.importorskip("torch.distributed.run")
    from dlcr.synth import render_world

    root, work = tmp_path / "w", tmp_path / "work"
    render_world(root, ids=10, seed=1, height=64, width=32)
    ds = create_dataset("synthcc", root)
    stages.run_masks(create_parser("synthcc"), ds.train, root, work)
    stages.run_describe(ds.train, root, work, captioner=create_captioner("rule"), summarizer=create_summarizer("vote"))
    stages.run_plan(ds.train, work, k=2, seed=0, allow_same_person=False, num_partitions=2, dataset="synthcc",
                    generator="recolor")
    stages.run_inpaint(work, root, backend="recolor", backend_options={}, batch_size=64)
    sets = [f"data.root={root}", "data.height=64", "data.width=32", "data.workers=0", "train.epochs=2",
            "train.eval_every=2", "loss.cal_start_epoch=1", "sampler.batch_size=8", "sampler.num_instances=2",
            "sampler.mode=paired", "sampler.num_partitions=2", "sampler.progressive_every=1"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "dlcr",
           "train", "--work", str(work), "--out", str(tmp_path / "runs"), "--name", "ddp"]
    for s in sets:
        cmd += ["--set", s]
    done = subprocess.run(cmd, env={**os.environ, "DLCR_NO_PROGRESS": "1", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    hist = json.loads((run / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2]  # rank 0 alone writes the history
    # the global batch of 8 real images is 4 per rank, and each rank runs half of those batches
    from dlcr.config import load_config
    from dlcr.config_args import trainer_from_config
    from dlcr.engine.build import GeneratedData, TrainData
    from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
    from dlcr.io.tables import read_table

    gen = GeneratedData(rows=read_table(work / stages.GENERATED / MANIFEST), root=work / stages.GENERATED)
    per_rank = [s if not s.startswith("sampler.batch_size") else "sampler.batch_size=4" for s in sets]
    single = trainer_from_config(load_config("synthcc", per_rank), TrainData.from_dataset(ds),
                                 tmp_path / "single", generated=gen)
    assert hist[0]["batches"] == len(single.sampler) // 2
    assert "cc_top1" in hist[-1] and 0.0 <= hist[-1]["cc_top1"] <= 1.0
    # the checkpoint holds plain (unwrapped) weights that load into a fresh model
    from dlcr.cli.evaluate import load_model

    model, state = load_model(run / "checkpoints" / "last.json", "small_resnet")
    assert state["epoch"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
