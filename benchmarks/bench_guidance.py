"""What discriminator guidance costs per image: the same jobs with and without it.

Runs the ``tiny`` diffusers backend (random tiny SD inpainting pipeline) on the CPU. The guided runs
add, at every UNet call above the threshold, one forward and one backward pass through the
discriminator (the default ``LatentDiscriminator`` size, random weights: the cost does not depend on
what it learned) for one CFG half. Reported: ms per image and the ratio to the unguided run, for the
default threshold (t > 200) and for guidance at every step.

Keep in mind the reference: the tiny UNet is ~4 orders of magnitude smaller than SD's, so the
ratio here is an upper bound of what guidance adds to a real pipeline.

    .venv/bin/python benchmarks/bench_guidance.py [--jobs 16] [--batch 8] [--steps 10]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from _common import best_of, line
from bench_inpaint import make_items
from dlcr.generation.guidance import (
    LatentDiscriminator,
    guidance_correction,
    save_discriminator,
    scheduler_alphas_cumprod,
)
from dlcr.generation.inpainters.diffusers_backend import make_tiny_inpainter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5, help="best of this many interleaved runs per setting")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    items = make_items(args.jobs, 128, 64)
    opts = dict(steps=args.steps, height=64, width=32, max_batch=args.batch, guidance_scale=7.5)
    plain = make_tiny_inpainter(**opts)

    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        disc = LatentDiscriminator().set_schedule(scheduler_alphas_cumprod(plain.pipe.scheduler))
        disc.info = {"scaling_factor": float(plain.pipe.vae.config.scaling_factor), "scheduler": "DDIMScheduler"}
        path = save_discriminator(disc, Path(tmp) / "disc")
        guided = make_tiny_inpainter(**opts, discriminator=str(path))  # default: w=1, t > 200
        every = make_tiny_inpainter(**opts, discriminator=str(path), guidance_min_t=-1)
        runs = {"no guidance": plain, "guidance, t > 200 (default)": guided, "guidance, every step": every}
        for inp in runs.values():
            inp(items[:2])  # warm-up
        n_unet = sum(p.numel() for p in plain.pipe.unet.parameters())
        n_disc = sum(p.numel() for p in disc.parameters())
        print(f"tiny pipeline, {args.jobs} jobs, batch {args.batch}, {args.steps} DDIM steps, CFG 7.5, "
              f"{args.threads} thread(s); UNet {n_unet / 1e6:.2f} M params, discriminator {n_disc / 1e3:.0f} k")
        times = {name: float("inf") for name in runs}
        outs = {}
        for _ in range(args.repeat):  # interleaved, so load from other processes hits every setting alike
            for name, inp in runs.items():
                sec, outs[name] = best_of(lambda inp=inp: inp(items), repeat=1)
                times[name] = min(times[name], sec)
        base = times["no guidance"]
        for name, sec in times.items():
            line(name, sec / args.jobs, f"per image   x{sec / base:.2f} vs no guidance")
        g = guided.guidance
        print(f"  UNet calls corrected with the default threshold (all runs): {g.corrected} of {g.calls}")
        diff = max(int(np.abs(a.astype(int) - b).max()) for a, b in zip(outs["no guidance"],
                                                                         outs["guidance, t > 200 (default)"],
                                                                         strict=True))
        print(f"  largest pixel change from guidance (random discriminator, w=1): {diff}")
        # the same cost per UNet call, measured in isolation (stable on a loaded machine)
        unet, b = plain.pipe.unet, args.batch
        lat = torch.randn(2 * b, 9, 32, 16)
        emb = torch.randn(2 * b, plain.pipe.text_encoder.config.max_position_embeddings,
                          plain.pipe.unet.config.cross_attention_dim)
        ac = scheduler_alphas_cumprod(plain.pipe.scheduler)
        with torch.inference_mode():
            t_unet, _ = best_of(lambda: unet(lat, torch.tensor(500), encoder_hidden_states=emb, return_dict=False),
                                repeat=20)
            t_disc, _ = best_of(lambda: guidance_correction(guided.guidance.disc, lat[:b, :4], torch.tensor(500),
                                                            ac, 1.0), repeat=20)
        line(f"UNet call (batch {2 * b}, both CFG halves)", t_unet)
        line(f"discriminator forward+backward (batch {b})", t_disc, f"x{t_disc / t_unet:.3f} of a UNet call")
        print(f"ratio (guided default / plain, end to end): {times['guidance, t > 200 (default)'] / base:.2f}")
        print(f"ratio (one corrected UNet call / plain UNet call): {(t_unet + t_disc) / t_unet:.3f}")


if __name__ == "__main__":
    main()
