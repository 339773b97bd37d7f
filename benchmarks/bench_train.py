"""Training cost: epoch time of the three data arms, and data loading against a naive loader.

Renders a small synthcc world, generates K=10 recolor variants per training image, then times one
epoch of ``dlcr``'s trainer (small_resnet, 64x32 input, 1 thread) for

* originals only (``sampler.mode=none``),
* concatenation over the whole enlarged pool (``concat`` with ``concat_budget=full``: the paper's plain
  ablation, 11x the images of an epoch),
* concatenation with the paired arm's compute (``concat``, default budget),
* paired + progressive (``paired``; epoch 0 and the last epoch, when all partitions are allowed).

Data loading: images/s of the training dataset (decode → resize → flip/pad-crop → normalise → erasing)
with a plain PIL-per-file loader and torchvision's classic transforms (the reference), and with
``dlcr``'s loader (decoded images cached at the network size, transforms v2), both measured in this run
after one warm-up pass.

    .venv/bin/python benchmarks/bench_train.py [--ids 60] [--threads 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision import transforms as T

from dlcr.config import load_config
from dlcr.config_args import trainer_from_config
from dlcr.data.datasets import create_dataset
from dlcr.data.loaders import ImageDataset, items_from_samples
from dlcr.data.transforms import build_transforms
from dlcr.engine.build import GeneratedData, TrainData
from dlcr.generation import stages
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.parsers import create_parser
from dlcr.io.tables import read_table
from dlcr.synth import render_world


def naive_loader_pass(paths: list[Path], h: int, w: int) -> float:
    tf = T.Compose([T.Resize((h, w)), T.RandomHorizontalFlip(), T.Pad(2), T.RandomCrop((h, w)), T.ToTensor(),
                    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), T.RandomErasing(p=0.5)])
    t0 = time.perf_counter()
    for p in paths:
        tf(Image.open(p).convert("RGB"))
    return time.perf_counter() - t0


def ours_pass(ds: ImageDataset) -> float:
    t0 = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ids", type=int, default=60)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    h, w = 64, 32
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "w", Path(tmp) / "work"
        render_world(root, ids=args.ids, seed=0)
        ds = create_dataset("synthcc", root)
        stages.run_masks(create_parser("synthcc"), ds.train, root, work)
        stages.run_describe(ds.train, root, work, captioner=create_captioner("rule"),
                            summarizer=create_summarizer("vote"))
        stages.run_plan(ds.train, work, k=10, seed=0, allow_same_person=False, num_partitions=4,
                        dataset="synthcc", generator="recolor")
        stages.run_inpaint(work, root, backend="recolor", backend_options={}, batch_size=64)
        gen = GeneratedData(rows=read_table(work / stages.GENERATED / MANIFEST), root=work / stages.GENERATED)
        data = TrainData.from_dataset(ds)
        print(f"synthcc ids={args.ids}: {len(ds.train)} training images, {len(gen.rows)} generated (K=10), "
              f"input {h}x{w}, {args.threads} thread(s)")

        base = [f"data.root={root}", f"data.height={h}", f"data.width={w}", "data.workers=0",
                "data.cache_images=true", "train.epochs=20", "train.eval_every=0", "loss.cal_start_epoch=0"]
        arms = [("originals only", ["sampler.mode=none"], [0]),
                ("concat, whole pool (K=10)", ["sampler.mode=concat", "sampler.concat_budget=full"], [0]),
                ("concat, paired compute", ["sampler.mode=concat"], [0]),
                ("paired progressive", ["sampler.mode=paired"], [0, 19])]
        ref = None
        for name, sets, epochs in arms:
            cfg = load_config("synthcc", base + sets)
            tr = trainer_from_config(cfg, data, Path(tmp) / "run", generated=None if "none" in sets[0] else gen)
            tr.train_epoch(0)  # warm-up: fills the image cache, first-call overheads
            for e in epochs:
                stats = tr.train_epoch(e)
                ref = ref or stats["seconds"]
                print(f"  {name:<28} epoch {e + 1:>2}: {stats['seconds']:6.1f} s, {stats['batches']:4d} steps, "
                      f"{stats['images_per_s']:6.0f} img/s, {stats['seconds'] / ref:5.2f}x the originals' epoch")

        paths = [root / s.path for s in ds.train]
        naive_loader_pass(paths[:64], h, w)
        t_naive = naive_loader_pass(paths, h, w)
        ours = ImageDataset(items_from_samples(ds.train), root, build_transforms(h, w, train=True, pad=2),
                            cache_hw=(h, w))
        ours_pass(ours)  # first pass decodes and caches
        t_ours = ours_pass(ours)
        n = len(paths)
        print(f"  data loading, naive PIL per file: {n / t_naive:7.0f} img/s")
        print(f"  data loading, dlcr (cached, v2):  {n / t_ours:7.0f} img/s   speed-up {t_naive / t_ours:.2f}x")


if __name__ == "__main__":
    main()
