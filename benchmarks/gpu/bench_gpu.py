"""DLCR's GPU benchmark: one script, one JSON, each figure beside the paper's (Tables A5 / A6).

Full-size architectures built from their public configs with random weights (throughput does not
depend on the weight values):

- ``inpaint``: SD-1.5 inpainting (UNet 9 -> 4 channels, 320/640/1280/1280, 2 layers per block,
  8 heads, cross-attention 768; VAE 128/256/512/512, 4 latents; CLIP-L text encoder, 768 wide, 12
  layers, 12 heads, MLP 3072, vocabulary 49408, 77 positions: the values of
  runwayml/stable-diffusion-inpainting's ``unet/``, ``vae/`` and ``text_encoder/config.json``, as
  also written out in open-mmlab/mmagic ``configs/stable_diffusion/stable-diffusion_ddim_denoisingunet.py``),
  run through DLCR's own :class:`~dlcr.generation.inpainters.diffusers_backend.DiffusersInpainter`
  (fp16, SDPA, channels_last, UNet/VAE calls of ``micro_batch`` jobs): training variants at
  768x256 x 50 DDIM steps and query variants at 384x128 x 10 steps, without and with
  ``torch.compile`` of the UNet;
- ``masks``: SCHP's ResNet-101 (LIP, 20 classes) at 473x473, batched, fp16;
- ``train``: CAL's ResNet-50 training steps at 384x192 with 32 real + 32 generated images per step
  (the paired arm's batch), AMP bf16 + channels_last, through DLCR's own ``Trainer.train_epoch``,
  and PRCC epoch times estimated from it (Table A5: 65 s paired, 691 s concatenated);
- ``refine``: evaluation with prediction refinement (l=6 variants, m=5) of PRCC-size and LaST-size
  random features on the device.

Usage::

    benchmarks/gpu/run.sh                      # on a GPU machine, writes benchmarks/gpu/results.json
    python benchmarks/gpu/bench_gpu.py --smoke --out /tmp/gpu.json   # tiny sizes on the CPU, seconds

``--smoke`` shrinks every model and size (the code paths are the same; the compile runs use the
``eager`` backend on the CPU) so that CI checks the script does not rot. Every section records
its own error instead of stopping the others; ``--budget-s`` skips the sections still to run
once that many seconds have passed (the compile runs come last).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # tests/public_formats (the CLIP tokenizer files)
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

#: The paper's figures on one A100 (Table A6: images per second; Table A5: seconds per PRCC epoch).
PAPER = {
    "masks_img_s": 61.6,
    "captions_img_s": 4.0,
    "train_inpaint_img_s": 0.89,
    "query_inpaint_img_s": 3.33,
    "refine_img_s": 642.6,
    "prcc_epoch_paired_s": 65.0,
    "prcc_epoch_concat_s": 691.0,
}

#: PRCC / LaST sizes (train images; query and gallery images of the evaluated protocol).
PRCC = {"train": 17896, "query": 3543, "gallery": 3384, "variants_per_image": 10}
LAST = {"query": 10176, "gallery": 125353}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- model configs
def unet_config(full: bool) -> dict[str, Any]:
    """SD-1.5 inpainting ``unet/config.json`` (full) or its two-level tiny copy (smoke)."""
    cfg: dict[str, Any] = {
        "_class_name": "UNet2DConditionModel",
        "act_fn": "silu",
        "attention_head_dim": 8,
        "block_out_channels": [320, 640, 1280, 1280],
        "center_input_sample": False,
        "cross_attention_dim": 768,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 9,
        "layers_per_block": 2,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    }
    if not full:
        cfg.update(block_out_channels=[32, 64], cross_attention_dim=32, layers_per_block=1,
                   down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
                   up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"])
    return cfg


def vae_config(full: bool) -> dict[str, Any]:
    """SD-1.5 ``vae/config.json`` (full: 4 blocks 128..512, downsampling 8) or a tiny one (smoke:
    also downsampling 8, so the latent grid is the same function of the image size)."""
    cfg: dict[str, Any] = {
        "_class_name": "AutoencoderKL",
        "act_fn": "silu",
        "block_out_channels": [128, 256, 512, 512],
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 2,
        "norm_num_groups": 32,
        "out_channels": 3,
        "sample_size": 512,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
    }
    if not full:
        cfg.update(block_out_channels=[16, 32, 32, 32], layers_per_block=1, norm_num_groups=16)
    return cfg


def text_config(full: bool, vocab: dict[str, int]) -> dict[str, Any]:
    """CLIP ViT-L/14's text tower (``text_encoder/config.json`` of SD-1.5) or a tiny one."""
    cfg = {
        "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": int(vocab["<|startoftext|>"]),
        "dropout": 0.0, "eos_token_id": int(vocab["<|endoftext|>"]), "hidden_act": "quick_gelu",
        "hidden_size": 768, "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 3072,
        "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
        "num_attention_heads": 12, "num_hidden_layers": 12, "pad_token_id": 1, "projection_dim": 768,
        "vocab_size": 49408,
    }
    if not full:
        cfg.update(hidden_size=32, intermediate_size=128, num_attention_heads=4, num_hidden_layers=2,
                   projection_dim=32, vocab_size=max(len(vocab), 1000))
    return cfg


def build_sd15_inpainting(folder: Path, full: bool, device: torch.device) -> Path:
    """A random SD-1.5 inpainting pipeline folder (fp16 safetensors on CUDA), diffusers layout."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from tests.public_formats.sd import _BETAS, _write_json, write_clip_tokenizer
    from transformers import CLIPTextConfig, CLIPTextModel

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    _write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionInpaintPipeline", "_diffusers_version": "0.6.0",
        "feature_extractor": [None, None], "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    _write_json(folder / "scheduler" / "scheduler_config.json", {
        "_class_name": "DDIMScheduler", "_diffusers_version": "0.6.0", **_BETAS, "clip_sample": False,
        "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
        "steps_offset": 1, "trained_betas": None,
    })
    write_clip_tokenizer(folder / "tokenizer")
    vocab = json.loads((folder / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    torch.manual_seed(0)
    with torch.device(device):  # random init on the GPU: seconds, not minutes
        te = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in text_config(full, vocab).items()
                                             if k not in ("architectures", "model_type")}))
        unet = UNet2DConditionModel.from_config({k: v for k, v in unet_config(full).items() if k != "_class_name"})
        vae = AutoencoderKL.from_config({k: v for k, v in vae_config(full).items() if k != "_class_name"})
    for name, model in (("text_encoder", te), ("unet", unet), ("vae", vae)):
        model.to(dtype).save_pretrained(folder / name, safe_serialization=True)
        del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return folder


# ----------------------------------------------------------------------------- sections
def _items(n: int, kind: str, h: int, w: int, seed: int = 0) -> list[Any]:
    from dlcr.generation.inpainting import InpaintItem
    from dlcr.generation.planning import Job

    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = np.zeros((h, w), dtype=bool)
        mask[h // 4: 3 * h // 4, w // 8: 7 * w // 8] = True
        job = Job(job_id=f"{kind}{i}", kind=kind, dataset="bench", source=f"s{i}.png", source_clothes_key="0_0",
                  pid=0, target_clothes_key="1_0", variant=0, partition=0,
                  prompt="a person wearing a red shirt and blue jeans" if i % 2 else "a person in a black coat",
                  seed=seed + i, generator="diffusers")
        out.append(InpaintItem(job=job, image=img, mask=mask))
    return out


def bench_inpaint(args: argparse.Namespace, device: torch.device, tmp: Path, compiled: bool) -> dict[str, Any]:
    from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter

    full = not args.smoke
    folder = tmp / "sd15_inpainting"
    if not (folder / "model_index.json").is_file():
        t0 = time.perf_counter()
        build_sd15_inpainting(folder, full, device)
        build_s = time.perf_counter() - t0
    else:
        build_s = 0.0
    h, w, steps, qsteps = (768, 256, 50, 10) if full else (64, 32, 1, 1)
    # compiled: one batch size (each shape is compiled once: minutes for the full UNet)
    batches = args.inpaint_batches or (([16] if compiled else [16, 32]) if full else [2])
    accel: dict[str, Any] = {"channels_last": device.type == "cuda"}
    if compiled:
        accel.update(compile=True, compile_backend=args.compile_backend or ("inductor" if full else "eager"))
    out: dict[str, Any] = {"build_s": round(build_s, 2), "dtype": "float16" if device.type == "cuda" else "float32",
                           "size_train": [h, w], "steps_train": steps, "size_query": [h // 2, w // 2],
                           "steps_query": qsteps, "compile": accel.get("compile", False),
                           "compile_backend": accel.get("compile_backend"), "runs": []}
    for b in batches:
        t0 = time.perf_counter()
        inp = DiffusersInpainter(folder, scheduler="ddim", steps=steps, height=h, width=w, query_steps=qsteps,
                                 device=str(device), micro_batch=b, local_files_only=True, **accel)
        load_s = time.perf_counter() - t0
        out["attention"] = inp.attention
        run: dict[str, Any] = {"batch": b, "load_s": round(load_s, 2)}
        for kind, n_jobs, paper in (("train", b, PAPER["train_inpaint_img_s"]),
                                    ("query", 2 * b, PAPER["query_inpaint_img_s"])):
            items = _items(n_jobs, kind, h, w)
            t0 = time.perf_counter()
            inp(items[: max(1, n_jobs // 2)] if args.smoke else items)  # warm-up: cuDNN, compile of this shape
            sync(device)
            warm = time.perf_counter() - t0
            t0 = time.perf_counter()
            inp(items)
            sync(device)
            dt = time.perf_counter() - t0
            run[kind] = {"jobs": n_jobs, "first_call_s": round(warm, 2), "seconds": round(dt, 3),
                         "img_s": round(n_jobs / dt, 3), "paper_img_s": paper,
                         "vs_paper": round(n_jobs / dt / paper, 2)}
        if device.type == "cuda":
            run["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
            torch.cuda.reset_peak_memory_stats(device)
        out["runs"].append(run)
        del inp
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return out


def bench_masks(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from dlcr.generation.parsers.schp import SCHPNet, SCHPParser

    full = not args.smoke
    torch.manual_seed(0)
    net = SCHPNet(num_classes=20) if full else SCHPNet(num_classes=20, layers=(1, 1, 1, 1), width=8)
    size = 473 if full else 64
    half = device.type == "cuda"
    out: dict[str, Any] = {"input_size": size, "arch": "resnet101" if full else "tiny", "runs": []}
    for b in args.mask_batches or ([32, 64] if full else [4]):
        parser = SCHPParser(net, input_size=size, batch_size=b, device=str(device),
                            dtype="float16" if half else None)
        out["dtype"] = str(parser.dtype).replace("torch.", "")
        rng = np.random.default_rng(0)
        h, w = (256, 128) if full else (48, 24)  # PRCC-like person crops
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(b * (3 if full else 1))]
        parser.parse(images[:b])  # warm-up
        sync(device)
        t0 = time.perf_counter()
        parser.parse(images)
        sync(device)
        dt = time.perf_counter() - t0
        out["runs"].append({"batch": b, "images": len(images), "seconds": round(dt, 3),
                            "img_s": round(len(images) / dt, 2), "paper_img_s": PAPER["masks_img_s"],
                            "vs_paper": round(len(images) / dt / PAPER["masks_img_s"], 2)})
        net = parser.net.float()
    return out


def bench_train(args: argparse.Namespace, device: torch.device, tmp: Path) -> dict[str, Any]:
    from dlcr.config import load_config
    from dlcr.config_args import trainer_from_config
    from dlcr.engine.build import TrainData
    from dlcr.types import Sample

    full = not args.smoke
    h, w = (384, 192) if full else (64, 32)
    per_side = 32 if full else 4  # real images per step (+ as many generated ones: the paired arm)
    steps = args.train_steps or (30 if full else 2)
    n_pids = 150 if full else 4  # PRCC's training identities
    samples = [Sample(path=f"img/{p}_{i}.png", pid=p, camid=i % 2, clothes_id=2 * p + (i % 2), split="train",
                      clothes_key=f"{p}_{i % 2}") for p in range(n_pids) for i in range(4)]
    pid2clothes = np.zeros((n_pids, 2 * n_pids), dtype=np.float32)
    for p in range(n_pids):
        pid2clothes[p, 2 * p: 2 * p + 2] = 1
    data = TrainData(root=tmp, train=samples, eval_splits={}, protocols=(), num_pids=n_pids,
                     num_clothes=2 * n_pids, pid2clothes=pid2clothes, name="bench")
    cuda = device.type == "cuda"
    sets = [f"data.height={h}", f"data.width={w}", "data.workers=0", "train.epochs=2", "train.eval_every=0",
            "loss.cal_start_epoch=0", f"sampler.batch_size={2 * per_side}", "sampler.num_instances=4",
            "sampler.mode=none", "model.pretrained=null", f"model.name={'cal_resnet50' if full else 'small_resnet'}",
            f"train.amp={'true' if cuda else 'false'}", "train.amp_dtype=bfloat16",
            f"train.channels_last={'true' if cuda else 'false'}", "train.cudnn_deterministic=false"]
    cfg = load_config(None, sets)
    tr = trainer_from_config(cfg, data, tmp / "train_run", device=str(device))
    g = torch.Generator().manual_seed(0)

    def batch() -> dict[str, torch.Tensor]:
        pids = torch.arange(2 * per_side) % n_pids
        cids = torch.where(torch.arange(2 * per_side) < per_side, 2 * pids, torch.full_like(pids, -1))
        img = torch.randn(2 * per_side, 3, h, w, generator=g)
        return {"img": img.pin_memory() if cuda else img, "pid": pids, "clothes_id": cids}

    pool = [batch() for _ in range(4)]
    tr.loader = [pool[i % len(pool)] for i in range(3)]  # warm-up epoch (cuDNN autotuning)
    tr.max_steps = None
    tr.train_epoch(0)
    sync(device)
    tr.loader = [pool[i % len(pool)] for i in range(steps)]
    t0 = time.perf_counter()
    stats = tr.train_epoch(1)
    sync(device)
    dt = time.perf_counter() - t0
    step_s = dt / steps
    real_steps = PRCC["train"] / per_side  # the paired sampler: one step per 32 real images (+ 32 variants)
    concat_steps = PRCC["train"] * (1 + PRCC["variants_per_image"]) / (2 * per_side)  # every image once
    out = {"size": [h, w], "batch": f"{per_side} real + {per_side} generated", "steps": steps,
           "model": cfg.model.name, "amp": f"bf16={tr.amp}", "channels_last": tr.channels_last,
           "seconds": round(dt, 3), "step_s": round(step_s, 4), "img_s": round(2 * per_side / step_s, 1),
           "loss_finite": bool(np.isfinite(stats["loss"])),
           "prcc_epoch_paired_s_est": round(real_steps * step_s, 1), "paper_prcc_epoch_paired_s": PAPER["prcc_epoch_paired_s"],
           "prcc_epoch_concat_s_est": round(concat_steps * step_s, 1), "paper_prcc_epoch_concat_s": PAPER["prcc_epoch_concat_s"],
           "note": "GPU steps only (synthetic pinned batches): data loading excluded"}
    if cuda:
        out["peak_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    return out


def bench_refine(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    from dlcr.evaluation import evaluate_protocols
    from dlcr.evaluation.features import Features
    from dlcr.types import EvalProtocol

    full = not args.smoke
    dim, l, m = (4096, 6, 5) if full else (64, 6, 5)  # noqa: E741 -- CAL's 4096-d features, l / m of the paper
    sizes = {"prcc": PRCC, "last": LAST} if full else {"prcc": {"query": 60, "gallery": 50},
                                                       "last": {"query": 80, "gallery": 300}}
    if args.skip_last:
        sizes.pop("last")
    out: dict[str, Any] = {"dim": dim, "l": l, "m": m}
    gen = torch.Generator(device="cpu").manual_seed(0)
    for name, s in sizes.items():
        nq, ng = int(s["query"]), int(s["gallery"])
        n_ids = max(2, nq // 20)

        def feats(n: int, cam: int, n_ids: int = n_ids) -> Features:
            pid = np.arange(n) % n_ids
            f = torch.nn.functional.normalize(torch.randn(n, dim, generator=gen), dim=1)
            return Features(feats=f.to(device), pids=pid, camids=np.full(n, cam), clothes_ids=pid * 2 + cam)

        q, g = feats(nq, 0), feats(ng, 1)
        variants = torch.nn.functional.normalize(torch.randn(l, nq, dim, generator=gen), dim=-1).to(device)
        proto = [EvalProtocol("cc", "query", "gallery", "standard")]
        sync(device)
        t0 = time.perf_counter()
        plain = evaluate_protocols({"query": q, "gallery": g}, proto)
        sync(device)
        t_plain = time.perf_counter() - t0
        t0 = time.perf_counter()
        refined = evaluate_protocols({"query": q, "gallery": g}, proto, refine_variants={"query": variants}, m=m)
        sync(device)
        t_ref = time.perf_counter() - t0
        out[name] = {"query": nq, "gallery": ng, "eval_s": round(t_plain, 3), "eval_refined_s": round(t_ref, 3),
                     "refine_img_s": round(nq / t_ref, 1), "paper_refine_img_s": PAPER["refine_img_s"],
                     "vs_paper": round(nq / t_ref / PAPER["refine_img_s"], 2),
                     "mAP_random": round(float(plain["cc"]["mAP"]), 4),
                     "mAP_refined_random": round(float(refined["cc_refined"]["mAP"]), 4)}
    return out


# ----------------------------------------------------------------------------- main
SECTIONS = ("masks", "train", "refine", "inpaint", "inpaint_compiled")


def environment(device: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
                           "host": platform.node(), "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    for mod in ("diffusers", "transformers"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 -- optional
            env[mod] = None
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (CPU, seconds): checks the script runs")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--budget-s", type=float, default=450.0, help="skip sections that start after this many s")
    ap.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; smoke: eager)")
    ap.add_argument("--inpaint-batches", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--mask-batches", type=lambda s: [int(x) for x in s.split(",")], default=None)
    ap.add_argument("--train-steps", type=int, default=None)
    ap.add_argument("--skip-last", action="store_true", help="refinement at PRCC size only")
    args = ap.parse_args(argv)
    os.environ.setdefault("DLCR_NO_PROGRESS", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if args.smoke and device.type == "cpu":
        torch.set_num_threads(1)  # tiny ops: one thread is several times faster on a shared CI machine
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    bad = sorted(set(wanted) - set(SECTIONS))
    if bad:
        ap.error(f"unknown section(s) {bad}; choose from {', '.join(SECTIONS)}")
    t_start = time.perf_counter()
    result: dict[str, Any] = {"benchmark": "dlcr-gpu", "smoke": bool(args.smoke), "env": environment(device),
                              "paper": {"source": "DLCR Table A6 (one A100) and Table A5", **PAPER},
                              "captions": {"skipped": "not benchmarked (a random LLaVA-size model is out of the "
                                                      "8-minute budget)", "paper_img_s": PAPER["captions_img_s"]},
                              "sections": {}}
    with tempfile.TemporaryDirectory(prefix="dlcr-gpu-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for name in wanted:
            elapsed = time.perf_counter() - t_start
            if elapsed > args.budget_s:
                result["sections"][name] = {"skipped": f"budget: {elapsed:.0f} s > {args.budget_s:.0f} s"}
                continue
            print(f"[bench_gpu] {name} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            try:
                if name == "masks":
                    sec = bench_masks(args, device)
                elif name == "train":
                    sec = bench_train(args, device, tmp)
                elif name == "refine":
                    sec = bench_refine(args, device)
                else:
                    sec = bench_inpaint(args, device, tmp, compiled=name == "inpaint_compiled")
            except Exception as e:  # noqa: BLE001 -- one section's failure is recorded, the others still run
                sec = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=8)}
            sec["wall_s"] = round(time.perf_counter() - t0, 2)
            result["sections"][name] = sec
            print(f"[bench_gpu] {name}: {sec['wall_s']} s{' ERROR ' + sec['error'] if 'error' in sec else ''}",
                  file=sys.stderr, flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    result["total_s"] = round(time.perf_counter() - t_start, 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if k != "sections"} | {
        "sections": {k: ("error" if "error" in v else "skipped" if "skipped" in v else "ok")
                     for k, v in result["sections"].items()}}, indent=1), flush=True)
    return 1 if any("error" in v for v in result["sections"].values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
