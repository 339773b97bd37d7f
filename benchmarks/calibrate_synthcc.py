"""Calibrate the synthcc world: does a CNN trained on the originals lean on clothes?

Renders a world into a temporary folder, trains a small ResNet from scratch on the train split
(cross-entropy on person ids, no pretrained weights), extracts L2-normalised features and scores
query -> gallery under the standard, same-clothes (SC) and clothes-changing (CC) rules of
docs/design.md §8. The world is calibrated when SC top-1 - CC top-1 >= 15 points while CC top-1 stays far
above chance (identity is recoverable from body, skin, hair and head cues).

Two diagnostics back the later DLCR demo:
* ``recoloured queries``: every query's clothes are repainted (the ``recolor`` backend, ground-truth
  masks) with another test person's outfit; SC accuracy falling towards CC shows the shortcut is
  mostly clothes *colour/pattern*, which recolouring can break.
* ``--recolor-train``: a second model trained on the originals plus recoloured copies (each train
  image repainted with another train outfit's description, keeping its pid); a higher CC top-1
  than the baseline shows the augmentation can remove the shortcut.

The reference for the ratio line is chance: the same evaluation on random features, same run.

Measured on this machine (2 CPU threads, shared with other jobs, so times are loose), with
``python benchmarks/calibrate_synthcc.py --recolor-train --identity-check`` (world defaults: ids=150,
seed=0, 128x64, 5 cameras; 1,806 train / 322 query / 1,449 gallery images; training at 128x64,
12 epochs)::

    world render                      18.8 s wall (about 14 s CPU) for 3,577 images + label maps
    chance (random features)          SC top-1  0.3  CC top-1  0.6  (mAP 1.1 / 1.9)
    baseline (80 s train)             SC top-1 95.7  CC top-1 14.6  (mAP 93.6 / 14.5); standard 95.7
    baseline, recoloured queries      SC top-1 10.9  CC top-1 14.3
    SC - CC = 81.1 points; CC top-1 / chance = 23.5x
    originals + recoloured copies     SC top-1 92.9  CC top-1 36.6  (mAP 81.3 / 30.1): 2.51x the baseline's CC
    identity cues only (clothes gray) CC top-1 65.5  (mAP 53.3)

So the baseline leans on clothes (81 points between SC and CC), identity is recoverable from
body / skin / hair / head cues alone (65.5 CC top-1 without any clothes pixel), and the shortcut is
colour/pattern: recolouring the queries' clothes drops SC top-1 from 95.7 to 10.9, and training on
recoloured copies lifts CC top-1 from 14.6 to 36.6. Faster check at 64x32 input
(``--input 64x32 --epochs 20``): baseline SC 96.0 / CC 9.0, recoloured copies CC 35.4, identity-only
CC 55.3.

Usage:
    python benchmarks/calibrate_synthcc.py [--ids 150] [--seed 0] [--epochs 12] [--threads 2]
        [--input HxW] [--recolor-train] [--identity-check] [--keep DIR] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlcr.evaluation import evaluate as lib_evaluate
from dlcr.io.images import read_label_map, read_rgb
from dlcr.synth import NAME_RE, render_world

# --------------------------------------------------------------------------------------- evaluation


def evaluate(dist, q, g, mode: str) -> dict[str, float]:
    """CMC top-1/5 and mAP under the docs/design.md §8 rules (``dlcr.evaluation.evaluate``; queries without a
    good match are skipped)."""
    r = lib_evaluate(dist, q["pid"], g["pid"], q["cam"], g["cam"], q["clothes"], g["clothes"], mode=mode)
    return {"top1": float(r.cmc[0]), "top5": float(r.cmc[min(4, len(r.cmc) - 1)]), "mAP": float(r.mAP),
            "n_query": int(r.num_valid)}


# ------------------------------------------------------------------------------------------ loading


def load_split(root: Path, split: str, with_masks: bool = False) -> dict[str, np.ndarray]:
    files = sorted(p for p in (root / "synthcc" / split).iterdir() if NAME_RE.match(p.name))
    meta = np.array([list(map(int, NAME_RE.match(p.name).groups())) for p in files])  # type: ignore[union-attr]
    out = {
        "img": np.stack([read_rgb(p) for p in files]),
        "pid": meta[:, 0],
        "clothes": meta[:, 0] * 100 + meta[:, 1],
        "outfit": np.array([f"{a:03d}_{b}" for a, b in meta[:, :2]]),
        "cam": meta[:, 2],
    }
    if with_masks:
        out["mask"] = np.stack([read_label_map(root / "synthcc" / "masks" / split / p.name) for p in files])
    return out


def recolour(images: np.ndarray, masks: np.ndarray, prompts: list[str], seeds: list[int]) -> np.ndarray:
    """Repaint the clothes of each image with the outfit prompt given (the recolor backend)."""
    from dlcr.generation.inpainters.recolor import RecolorInpainter
    from dlcr.generation.inpainting import InpaintItem
    from dlcr.generation.planning import Job
    from dlcr.lip import clothes_mask

    painter = RecolorInpainter()
    out = []
    for img, lab, prompt, seed in zip(images, masks, prompts, seeds, strict=True):
        job = Job("x", "train", "synthcc", "x", "x", 0, "x", 0, 0, prompt, int(seed), "recolor")
        out.append(painter.paint(InpaintItem(job, img, clothes_mask(lab), lab)))
    return np.stack(out)


def other_outfit_prompts(pids, keys: list[str], outfits: dict, rng: np.random.Generator,
                         first_seed: int) -> tuple[list[str], list[int]]:
    """For each person id, the prompt of a random outfit in ``keys`` worn by someone else, and a seed."""
    prompts = []
    for pid in pids:
        others = [k for k in keys if int(k[:3]) != pid]
        o = outfits[others[int(rng.integers(len(others)))]]
        prompts.append(f"a person wearing {o['upper']}, {o['lower']}, {o['footwear']}")
    return prompts, list(range(first_seed, first_seed + len(prompts)))


def grey_clothes(d: dict[str, np.ndarray]) -> np.ndarray:
    """The images with every clothes pixel (ground-truth label map) set to mid-gray."""
    from dlcr.lip import clothes_mask

    out = d["img"].copy()
    for img, lab in zip(out, d["mask"], strict=True):
        img[clothes_mask(lab)] = 128
    return out


# ------------------------------------------------------------------------------------------ model


class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.b1 = nn.BatchNorm2d(cout)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.b2 = nn.BatchNorm2d(cout)
        self.short = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.short(x))


class SmallReID(nn.Module):
    """A four-stage ResNet (one basic block per stage), GAP, BN neck, linear classifier."""

    def __init__(self, n_classes: int, widths=(16, 32, 64, 128)):
        super().__init__()
        w = widths
        self.stem = nn.Sequential(nn.Conv2d(3, w[0], 3, 2, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU())
        self.body = nn.Sequential(Block(w[0], w[0], 1), Block(w[0], w[1], 2), Block(w[1], w[2], 2), Block(w[2], w[3], 2))
        self.neck = nn.BatchNorm1d(w[3])
        self.fc = nn.Linear(w[3], n_classes, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(self.stem(x)).mean((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def to_tensor(imgs: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW


def resize(x: torch.Tensor, hw: tuple[int, ...]) -> torch.Tensor:
    y = F.interpolate(x.float(), size=hw, mode="area")
    return y.round().clamp(0, 255).to(torch.uint8)


def prep(x: torch.Tensor) -> torch.Tensor:
    return (x.float() / 255.0 - MEAN) / STD


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and random 4-pixel-padded crop (the usual re-id augmentation)."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
    pad = F.pad(x, (4, 4, 4, 4), mode="replicate")
    dy, dx = torch.randint(0, 9, (2,), generator=gen).tolist()
    return pad[:, :, dy : dy + h, dx : dx + w]


def train(images: torch.Tensor, labels: np.ndarray, epochs: int, seed: int, batch: int = 64) -> SmallReID:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    _, y = np.unique(labels, return_inverse=True)
    y_t = torch.from_numpy(y).long()
    model = SmallReID(int(y.max()) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3, weight_decay=5e-4)
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.15)
    model.train()
    for ep in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        tot, correct, t0 = 0.0, 0, time.perf_counter()
        for i in range(0, len(y), batch):
            idx = perm[i : i + batch]
            if len(idx) < 2:
                continue
            x = augment(prep(images[idx]), gen)
            logits = model(x)
            loss = F.cross_entropy(logits, y_t[idx], label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y_t[idx]).sum())
        print(f"  epoch {ep + 1}/{epochs}: loss {tot / len(y):.3f} train acc {correct / len(y):.3f} "
              f"({time.perf_counter() - t0:.1f}s)", flush=True)
    return model


@torch.no_grad()
def extract(model: SmallReID, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    model.eval()
    feats = [F.normalize(model.features(prep(images[i : i + batch])), dim=1) for i in range(0, len(images), batch)]
    return torch.cat(feats).numpy()


def score(fq: np.ndarray, fg: np.ndarray, q, g) -> dict[str, dict[str, float]]:
    dist = 1.0 - fq @ fg.T
    return {m: evaluate(dist, q, g, m) for m in ("standard", "SC", "CC")}


def fmt(r: dict[str, dict[str, float]]) -> str:
    return "  ".join(f"{m}: top1 {100 * v['top1']:5.1f} mAP {100 * v['mAP']:5.1f}" for m, v in r.items())


# ------------------------------------------------------------------------------------------- main


def parse_value(s: str):
    try:
        return json.loads(s)
    except ValueError:
        return s


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ids", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-seed", type=int, default=0)
    ap.add_argument("--input", type=str, default=None, help="HxW to resize images to before training")
    ap.add_argument("--recolor-train", action="store_true", help="also train on originals + recoloured copies")
    ap.add_argument("--identity-check", action="store_true",
                    help="also train/test on images whose clothes are painted gray (identity cues only)")
    ap.add_argument("--keep", type=Path, default=None, help="render into (and keep) this folder")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="advanced world option")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("DLCR_NO_PROGRESS", "1")
    advanced = {k: parse_value(v) for k, v in (s.split("=", 1) for s in args.set)}

    tmp = None
    if args.keep is None:
        tmp = tempfile.TemporaryDirectory(prefix="synthcc_")
        root = Path(tmp.name)
    else:
        root = args.keep
    t0 = time.perf_counter()
    summary = render_world(root, ids=args.ids, seed=args.seed, **advanced)
    t_render = time.perf_counter() - t0
    print(f"world: {summary['images']} images, ids {summary['ids']}, clothes {summary['clothes']}; "
          f"render {t_render:.1f}s ({summary['rendered']} rendered)")

    tr = load_split(root, "train", with_masks=args.recolor_train or args.identity_check)
    q = load_split(root, "query", with_masks=True)
    g = load_split(root, "test", with_masks=args.identity_check)
    x_tr, x_q, x_g = to_tensor(tr["img"]), to_tensor(q["img"]), to_tensor(g["img"])
    if args.input:
        hw = tuple(int(v) for v in args.input.lower().split("x"))
        x_tr, x_q, x_g = (resize(x, hw) for x in (x_tr, x_q, x_g))

    rng = np.random.default_rng(12345)
    chance = score(*(F.normalize(torch.from_numpy(rng.normal(size=(len(a), 128))).float(), dim=1).numpy()
                     for a in (q["pid"], g["pid"])), q, g)
    print(f"chance (random features): {fmt(chance)}")

    t0 = time.perf_counter()
    print(f"training baseline on {len(tr['pid'])} images, {len(set(tr['pid']))} ids, {args.epochs} epochs, "
          f"{args.threads} threads")
    model = train(x_tr, tr["pid"], args.epochs, args.train_seed)
    t_train = time.perf_counter() - t0
    fq, fg = extract(model, x_q), extract(model, x_g)
    base = score(fq, fg, q, g)
    print(f"baseline ({t_train:.0f}s train): {fmt(base)}")

    # recoloured queries: each query repainted with the outfit of another test person
    outfits = json.loads((root / "synthcc" / "outfits.json").read_text())
    prompts, seeds = other_outfit_prompts(q["pid"], sorted(set(g["outfit"])), outfits, rng, first_seed=1000)
    x_qr = to_tensor(recolour(q["img"], q["mask"], prompts, seeds))
    if args.input:
        x_qr = resize(x_qr, hw)
    rec = score(extract(model, x_qr), fg, q, g)
    print(f"baseline, recoloured queries: {fmt(rec)}")

    gap = 100 * (base["SC"]["top1"] - base["CC"]["top1"])
    ratio = base["CC"]["top1"] / max(chance["CC"]["top1"], 1e-9)
    print(f"SC top-1 - CC top-1 = {gap:.1f} points (target >= 15)")
    print(f"ratio: CC top-1 {100 * base['CC']['top1']:.1f}% / chance CC top-1 {100 * chance['CC']['top1']:.1f}% "
          f"= {ratio:.1f}x")

    if args.recolor_train:
        prompts, seeds = other_outfit_prompts(tr["pid"], sorted(set(tr["outfit"])), outfits, rng, first_seed=5000)
        x_aug = to_tensor(recolour(tr["img"], tr["mask"], prompts, seeds))
        if args.input:
            x_aug = resize(x_aug, hw)
        x_all = torch.cat([x_tr, x_aug])
        y_all = np.concatenate([tr["pid"], tr["pid"]])
        t0 = time.perf_counter()
        print(f"training with recoloured copies ({len(y_all)} images)")
        m2 = train(x_all, y_all, max(1, args.epochs // 2), args.train_seed)
        aug = score(extract(m2, x_q), extract(m2, x_g), q, g)
        print(f"originals + recoloured ({time.perf_counter() - t0:.0f}s train, half the epochs = same steps): "
              f"{fmt(aug)}")
        print(f"ratio: CC top-1 with recolouring / baseline = "
              f"{aug['CC']['top1'] / max(base['CC']['top1'], 1e-9):.2f}x")
    if args.identity_check:
        t0 = time.perf_counter()
        x_tr0, x_q0, x_g0 = (to_tensor(grey_clothes(d)) for d in (tr, q, g))
        if args.input:
            x_tr0, x_q0, x_g0 = (resize(x, hw) for x in (x_tr0, x_q0, x_g0))
        print("training on clothes-free images (clothes pixels painted gray)")
        m3 = train(x_tr0, tr["pid"], args.epochs, args.train_seed)
        ident = score(extract(m3, x_q0), extract(m3, x_g0), q, g)
        print(f"identity cues only ({time.perf_counter() - t0:.0f}s): {fmt(ident)}")
        print(f"ratio: identity-only CC top-1 / chance = {ident['CC']['top1'] / max(chance['CC']['top1'], 1e-9):.1f}x")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
