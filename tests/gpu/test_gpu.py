"""GPU paths (issue 18): AMP / bf16 training steps, DDP over NCCL with one process, fp16 inpainting
against fp32 within a stated tolerance, GPU evaluation against CPU evaluation. Skipped without CUDA
(tests/gpu/conftest.py); run with ``pytest -m gpu tests/gpu`` (benchmarks/gpu/run.sh does)."""

from __future__ import annotations

import dataclasses
import socket

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

H, W = 64, 32

#: fp16 vs fp32 inpainting of the same jobs (tiny random SD-1.5 pipeline, 2 DDIM steps): mean
#: absolute difference over the repainted pixels, in grey levels of 0..255, and the share of them
#: more than 8 levels apart. Pixels outside the mask are the source's in both (exactly equal).
FP16_MEAN_TOL = 2.0
FP16_FAR_SHARE_TOL = 0.02


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from dlcr.data.datasets import create_dataset
    from dlcr.synth import render_world

    root = tmp_path_factory.mktemp("gpuworld")
    render_world(root / "w", ids=8, seed=3, height=H, width=W)
    return {"root": root / "w", "ds": create_dataset("synthcc", root / "w")}


def _cfg(world, **extra):
    from dlcr.config import load_config

    sets = [f"data.root={world['root']}", f"data.height={H}", f"data.width={W}", "data.workers=0",
            "train.epochs=1", "train.eval_every=0", "loss.cal_start_epoch=0", "sampler.batch_size=8",
            "sampler.num_instances=2", "sampler.mode=none", "model.name=small_resnet", "model.pretrained=null"]
    return load_config("synthcc", sets + [f"{k}={v}" for k, v in extra.items()])


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_amp_training_epoch_on_cuda(world, tmp_path, dtype):
    from dlcr.config_args import trainer_from_config
    from dlcr.engine.build import TrainData

    cfg = _cfg(world, **{"train.amp": "true", "train.amp_dtype": dtype, "train.channels_last": "true",
                         "train.sync_every": 3})
    tr = trainer_from_config(cfg, TrainData.from_dataset(world["ds"]), tmp_path / dtype, device="cuda")
    assert tr.amp and tr.channels_last
    assert tr.scaler.is_enabled() == (dtype == "float16")  # bf16 needs no loss scaling
    conv = next(m for m in tr.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    before = {k: v.detach().clone() for k, v in tr.model.state_dict().items()}
    stats = tr.train_epoch(0)
    assert stats["batches"] > 0 and np.isfinite(stats["loss"]) and stats["clothes"] > 0 and stats["adv"] > 0
    changed = [k for k, v in tr.model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed


def test_non_finite_loss_still_raises_at_the_sync_point(world, tmp_path, monkeypatch):
    from dlcr.config_args import trainer_from_config
    from dlcr.engine.build import TrainData

    tr = trainer_from_config(_cfg(world, **{"train.amp": "true", "train.amp_dtype": "bfloat16"}),
                             TrainData.from_dataset(world["ds"]), tmp_path / "nan", device="cuda")
    real_ce = tr.ce
    monkeypatch.setattr(tr, "ce", lambda logits, pids: real_ce(logits, pids) * float("nan"))
    with pytest.raises(FloatingPointError, match=r"loss became nan at epoch 1; lower optim.lr"):
        tr.train_epoch(0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_ddp_over_nccl_with_one_process(world, tmp_path, monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from dlcr.config_args import trainer_from_config
    from dlcr.distributed.env import DistEnv
    from dlcr.engine.build import TrainData

    @dataclasses.dataclass(frozen=True)
    class OneProcessDDP(DistEnv):  # world size 1, but every distributed code path taken
        @property
        def is_distributed(self) -> bool:
            return True

    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    try:
        cfg = _cfg(world, **{"train.amp": "true", "train.amp_dtype": "bfloat16", "train.channels_last": "true"})
        tr = trainer_from_config(cfg, TrainData.from_dataset(world["ds"]), tmp_path / "ddp", device="cuda",
                                 env=OneProcessDDP(rank=0, world_size=1, local_rank=0))
        assert isinstance(tr.forward, DDP)
        res = tr.fit()  # train_epoch (NCCL all-reduce of the clothes classifier), checkpoint, barrier
        assert res.epochs_run == 1 and np.isfinite(res.history[-1]["loss"])
        t = torch.ones(3, device="cuda")
        dist.all_reduce(t)
        assert t.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()


def _inpaint_items(n: int):
    from dlcr.generation.inpainting import InpaintItem
    from dlcr.generation.planning import Job

    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        mask = np.zeros((H, W), dtype=bool)
        mask[16:48, 4:28] = True
        job = Job(job_id=f"j{i}", kind="train", dataset="t", source=f"{i}.png", source_clothes_key="0_0", pid=0,
                  target_clothes_key="1_0", variant=0, partition=0, prompt="a person in a red shirt", seed=i,
                  generator="diffusers")
        items.append(InpaintItem(job=job, image=img, mask=mask))
    return items


def test_fp16_inpainting_matches_fp32_within_tolerance(tmp_path):
    from tests.public_formats.sd import build_sd15_inpainting

    from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter

    path = build_sd15_inpainting(tmp_path / "sd15")
    items = _inpaint_items(4)
    outs = {}
    for dtype, extra in (("float32", {}), ("float16", {}), ("float16_cl", {"channels_last": True})):
        inp = DiffusersInpainter(path, scheduler="ddim", steps=2, height=H, width=W, device="cuda",
                                 dtype=dtype.split("_")[0], micro_batch=2, local_files_only=True, **extra)
        assert "AttnProcessor2_0" in inp.attention
        outs[dtype] = np.stack(inp(items)).astype(np.float64)
    mask = np.stack([it.mask for it in items])
    for name in ("float16", "float16_cl"):
        diff = np.abs(outs[name] - outs["float32"])
        assert diff[~mask].max() == 0  # pasted back: the source's own pixels
        inside = diff[mask]
        assert inside.mean() <= FP16_MEAN_TOL, (name, inside.mean())
        assert (inside > 8).mean() <= FP16_FAR_SHARE_TOL, (name, (inside > 8).mean())


def test_gpu_evaluation_equals_cpu_evaluation(world):
    from dlcr.engine.evaluate import EvalSettings, evaluate_model
    from dlcr.evaluation import evaluate_protocols
    from dlcr.evaluation.features import Features
    from dlcr.models import create_model

    ds = world["ds"]
    torch.manual_seed(0)
    model = create_model("small_resnet", ds.num_train_pids, pretrained=None).eval()
    st = EvalSettings(height=H, width=W, batch_size=16)
    splits = {k: list(v) for k, v in ds.splits.items()}
    cpu = evaluate_model(model, splits, ds.root, ds.protocols, st, device="cpu", keep_features=True)
    gpu = evaluate_model(model.cuda(), splits, ds.root, ds.protocols, st, device="cuda", keep_features=True)
    half = evaluate_model(model, splits, ds.root, ds.protocols, dataclasses.replace(st, half=True),
                          device="cuda", keep_features=True)
    for name in cpu["_features"]:
        fc, fg, fh = (r["_features"][name].feats for r in (cpu, gpu, half))
        assert fg.dtype == fh.dtype == torch.float32 and fg.device.type == fh.device.type == "cpu"
        assert torch.allclose(fc, fg, atol=1e-4), name  # cuDNN vs CPU convolutions: rounding only
        assert (fc * fh).sum(1).min() > 0.999, name  # fp16 autocast features: cosine to fp32 > 0.999
    for p in ds.protocols:
        for k in ("top1", "mAP"):
            # features equal up to rounding: metrics equal but for a rank flip among near-tied scores
            assert abs(cpu[p.name][k] - gpu[p.name][k]) <= 0.02, (p.name, k)

    # the evaluator itself on GPU tensors (same features): identical metrics, refinement included
    g = torch.Generator().manual_seed(0)
    n_q, n_g, d = 200, 500, 64

    def feats(n, cam):
        pid = np.arange(n) % 40
        return Features(feats=torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1), pids=pid,
                        camids=np.full(n, cam), clothes_ids=pid * 2 + cam)

    q, gal = feats(n_q, 0), feats(n_g, 1)
    var = torch.nn.functional.normalize(torch.randn(6, n_q, d, generator=g), dim=-1)
    from dlcr.types import EvalProtocol

    proto = [EvalProtocol("cc", "query", "gallery", "standard")]
    on_cpu = evaluate_protocols({"query": q, "gallery": gal}, proto, refine_variants={"query": var})
    qd = dataclasses.replace(q, feats=q.feats.cuda())
    gd = dataclasses.replace(gal, feats=gal.feats.cuda())
    on_gpu = evaluate_protocols({"query": qd, "gallery": gd}, proto, refine_variants={"query": var.cuda()})
    for name in ("cc", "cc_refined"):
        for k in ("top1", "top5", "mAP", "mINP"):
            assert abs(on_cpu[name][k] - on_gpu[name][k]) <= 1e-6, (name, k)
