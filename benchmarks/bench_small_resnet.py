"""Training throughput of ``small_resnet`` (the CPU demo model) vs torchvision's ResNet-18.

One step = forward + label-smoothed CE + batch-hard triplet + backward + Adam, batch 32 at 128×64.
Prints wall-clock images/s, images per CPU-second (less sensitive to other processes on a shared
machine) and forward+backward GFLOP per image, for both models, and the ratio.

    python benchmarks/bench_small_resnet.py --threads 1
"""

from __future__ import annotations

import argparse
import time

import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from dlcr.losses import CrossEntropyLabelSmooth, TripletLoss
from dlcr.models import create_model


def measure(model: torch.nn.Module, forward, x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[float, float, float]:
    ce, tri = CrossEntropyLabelSmooth(), TripletLoss()
    opt = torch.optim.Adam(model.parameters(), 3.5e-4)
    model.train()

    def step() -> None:
        opt.zero_grad()
        f, logits = forward(model, x)
        (ce(logits, y) + tri(f, y)).backward()
        opt.step()

    step()
    step()
    with FlopCounterMode(display=False) as fc:
        step()
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    n = steps * len(x)
    return n / wall, n / cpu, fc.get_total_flops() / len(x) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=32)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, 128, 64)
    y = torch.arange(args.batch) // 4
    small = measure(create_model("small_resnet", 8), lambda m, v: m(v, with_logits=True), x, y, args.steps)

    def r18_forward(m, v):
        out = m(v)
        return out, out

    ref = measure(torchvision.models.resnet18(num_classes=8), r18_forward, x, y, max(2, args.steps // 3))
    print(f"threads={args.threads} batch={args.batch} 128x64")
    for name, r in (("small_resnet", small), ("torchvision resnet18 (reference)", ref)):
        print(f"  {name:34s} {r[0]:7.1f} img/s wall  {r[1]:7.1f} img/CPU-s  {r[2]:.3f} GFLOP/img fwd+bwd")
    print(f"  ratio small/reference: {small[0] / ref[0]:.2f}x wall, {small[1] / ref[1]:.2f}x per CPU-second")


if __name__ == "__main__":
    main()
