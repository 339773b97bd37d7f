"""Mask extraction and rule-based description throughput, each against a plain reference.

1. **Masks**: SCHP (the real AugmentCE2P architecture, random weights, 473x473 input, CPU) through
   ``SCHPParser.parse`` with batches of ``--batch`` images, then the clothes and body-part masks of
   every label map; reference = the same parser called once per image (batch size 1), the loop a
   plain script would write. ``--arch full`` is the official ResNet-101 (slow on a CPU: keep
   ``--images`` small); ``--arch tiny`` is :data:`dlcr.testing.tiny.TINY_SCHP_ARCH`. The label
   maps of both runs are compared.
2. **Rule describer**: :class:`~dlcr.generation.describers.rule.RuleCaptioner` (vectorised numpy)
   vs a per-pixel pure-Python implementation of the same measurements that reuses the same decision
   functions; the captions of both must be identical.

    .venv/bin/python benchmarks/bench_masks.py [--arch full|tiny|both] [--images 4] [--batch 2]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
import torch

from _common import best_of
from dlcr import vocabulary
from dlcr.generation.describers import rule, rule_region
from dlcr.generation.inpainters.recolor import pattern_mask
from dlcr.lip import NUM_LIP_LABELS, clothes_mask, part_masks
from dlcr.testing.toy_generation import toy_image, toy_label_map, toy_people

# --------------------------------------------------------------------------------------------
# 1. masks
# --------------------------------------------------------------------------------------------


def bench_masks(arch: str, n_images: int, batch: int, repeat: int) -> None:
    from dlcr.generation.parsers.schp import SCHPNet, SCHPParser
    from dlcr.testing.tiny import TINY_SCHP_ARCH

    torch.manual_seed(0)
    net = SCHPNet(num_classes=20, **(TINY_SCHP_ARCH if arch == "tiny" else {})).eval()
    n_params = sum(p.numel() for p in net.parameters())
    images, _ = toy_people(n_images, 256, 128)
    batched_parser = SCHPParser(net, input_size=473, batch_size=batch, device="cpu")
    single_parser = SCHPParser(net, input_size=473, batch_size=1, device="cpu")

    def run(parser: SCHPParser) -> list[np.ndarray]:
        labels = parser.parse(images)
        for lab in labels:  # what the masks stage derives from every label map
            clothes_mask(lab, dilate=2)
            part_masks(lab)
        return labels

    single_parser.parse(images[:1])  # warm-up (allocator, kernels)
    t_ref, ref = best_of(lambda: run(single_parser), repeat)
    t_bat, out = best_of(lambda: run(batched_parser), repeat)
    diff = sum(int((a != b).sum()) for a, b in zip(ref, out, strict=True))
    total = sum(a.size for a in ref)
    print(f"masks: SCHP {arch} ({n_params / 1e6:.1f} M params), 473x473, {n_images} images of 256x128, CPU, "
          f"{torch.get_num_threads()} thread(s), best of {repeat}")  # fmt: skip
    print(f"  reference (batch 1 loop)        {n_images / t_ref:8.2f} images/s  ({t_ref:.2f} s)")
    print(f"  parse_dataset path (batch {batch:<2d})   {n_images / t_bat:8.2f} images/s  ({t_bat:.2f} s)")
    print(f"  ratio {t_ref / t_bat:.2f}x; label maps differing in {diff} of {total} pixels")


# --------------------------------------------------------------------------------------------
# 2. rule describer vs a per-pixel Python reference
# --------------------------------------------------------------------------------------------


def naive_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    lin = [c / 255.0 for c in rgb]
    lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in lin]
    m = vocabulary.RGB_TO_XYZN
    xyz = [sum(float(m[i][j]) * lin[j] for j in range(3)) for i in range(3)]
    fx, fy, fz = (vocabulary.lab_f(t) for t in xyz)
    return (116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz))


def naive_layout(labels: np.ndarray) -> rule.Layout:
    h, w = labels.shape
    rows = np.zeros((NUM_LIP_LABELS, h), dtype=np.int64)
    lab = labels.tolist()
    for y in range(h):
        for x in range(w):
            k = lab[y][x]
            if k < NUM_LIP_LABELS:
                rows[k, y] += 1
    return rule.layout_from_rows(rows)


def naive_region(image: np.ndarray, mask: np.ndarray, min_pixels: int) -> rule_region.RegionStats:
    h, w = mask.shape
    m = mask.tolist()
    img = image.tolist()
    inside = [[m[y][x] for x in range(w)] for y in range(h)]
    core = [
        [
            0 < y < h - 1 and 0 < x < w - 1 and m[y][x] and m[y - 1][x] and m[y + 1][x] and m[y][x - 1] and m[y][x + 1]
            for x in range(w)
        ]
        for y in range(h)
    ]  # fmt: skip
    n_mask = sum(sum(r) for r in inside)
    n_core = sum(sum(r) for r in core)
    use = core if n_core >= max(min_pixels, 0.4 * n_mask) else inside
    coords = [(y, x) for y in range(h) for x in range(w) if use[y][x]]
    lab = [naive_lab(tuple(img[y][x])) for y, x in coords]
    n = len(lab)

    def d2(a, b):
        return sum((a[i] - b[i]) ** 2 for i in range(3))

    def mean(pts):
        return [sum(p[i] for p in pts) / len(pts) for i in range(3)]

    def median(pts):
        return [statistics.median(p[i] for p in pts) for i in range(3)]

    assign = [False] * n
    if n >= 4:
        c0 = median(lab)
        dist = [d2(p, c0) for p in lab]
        c1 = list(lab[dist.index(max(dist))])
        for _ in range(rule_region.KMEANS_ITERS):
            new = [d2(p, c1) < d2(p, c0) for p in lab]
            if not any(new) or all(new):
                assign = [False] * n
                break
            if new == assign:
                break
            assign = new
            c0 = mean([p for p, a in zip(lab, assign, strict=True) if not a])
            c1 = mean([p for p, a in zip(lab, assign, strict=True) if a])
    ones = [p for p, a in zip(lab, assign, strict=True) if a]
    zeros = [p for p, a in zip(lab, assign, strict=True) if not a]
    minor = min(len(ones), len(zeros)) / max(1, n)
    sep = math.sqrt(d2(mean(zeros), mean(ones))) if ones else 0.0
    if sep < rule_region.BIMODAL_DELTA_E or minor < rule_region.BIMODAL_MIN_FRACTION:
        return rule_region.RegionStats(tuple(median(lab)), None, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    dom, sec = (median(ones), median(zeros)) if len(ones) > len(zeros) else (median(zeros), median(ones))
    cl = [[-1] * w for _ in range(h)]
    for (y, x), a in zip(coords, assign, strict=True):
        cl[y][x] = int(a)

    def scan(dy: int, dx: int):
        changes = pairs = 0
        lines = set()
        for y in range(h - dy):
            for x in range(w - dx):
                a, b = cl[y][x], cl[y + dy][x + dx]
                if a >= 0 and b >= 0:
                    pairs += 1
                    changes += a != b
                    lines.add(x if dy else y)
        return changes, pairs, len(lines)

    def autocorr(lag: int, axis: int) -> float:
        sa, sb = [], []
        for y in range(h - (lag if axis == 0 else 0)):
            for x in range(w - (lag if axis == 1 else 0)):
                a = cl[y][x]
                b = cl[y + lag][x] if axis == 0 else cl[y][x + lag]
                if a >= 0 and b >= 0:
                    sa.append(2.0 * a - 1.0)
                    sb.append(2.0 * b - 1.0)
        k = len(sa)
        if k < 2:
            return 0.0
        ma, mb = sum(sa) / k, sum(sb) / k
        den = math.sqrt(max(0.0, 1 - ma * ma) * max(0.0, 1 - mb * mb))
        if den <= 1e-9:
            return 0.0
        r = (sum(p * q for p, q in zip(sa, sb, strict=True)) / k - ma * mb) / den
        return max(0.0, abs(r) - rule_region.NOISE_SIGMAS / math.sqrt(k))

    cy, py, ly = scan(1, 0)
    cx, px, lx = scan(0, 1)
    structure = max(autocorr(lag, ax) for ax in (0, 1) for lag in rule_region.STRUCTURE_LAGS if lag < mask.shape[ax])
    return rule_region.RegionStats(
        tuple(dom),
        tuple(sec),
        minor,
        cy / max(1, ly),
        cx / max(1, lx),
        cy / max(1, py),
        cx / max(1, px),
        structure,
    )


def naive_caption(image: np.ndarray, labels: np.ndarray, min_pixels: int = 10) -> str:
    parts = []
    for g in rule.choose_garments(naive_layout(labels), min_pixels):
        mask = np.isin(labels, g.labels)
        stats = naive_region(image, mask, min_pixels)
        pattern = rule_region.classify_pattern(stats)
        main, second = rule_region.pattern_colours(stats, pattern)
        secondary = rule.colour_name(second) if second is not None else None
        parts.append(
            rule.PartDescription(g.part, g.garment, rule.colour_name(main), secondary, pattern, g.pixels)
        )
    return rule.caption_from_parts(parts)


def described_people(n: int, h: int = 256, w: int = 128) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(1)
    images, labels = [], []
    palette = [(190, 32, 38), (36, 76, 188), (40, 138, 60), (238, 208, 44), (22, 22, 24), (236, 236, 232)]
    for i in range(n):
        lab = toy_label_map(h, w, rng)
        cols = [palette[j] for j in rng.permutation(len(palette))[:4]]
        img = toy_image(lab, {13: (224, 172, 140), 14: (224, 172, 140), 15: (224, 172, 140), 5: cols[0],
                              9: cols[1], 18: cols[2], 19: cols[2]}, rng)  # fmt: skip
        pat = ("stripes", "checks", "dots", "plain")[i % 4]
        if pat != "plain":
            img[pattern_mask(pat, lab.shape, rng) & (lab == 5)] = cols[3]
        images.append(img)
        labels.append(lab)
    return images, labels


def bench_rule(n_images: int, repeat: int) -> None:
    images, labels = described_people(n_images)
    cap = rule.RuleCaptioner()
    t_fast, fast = best_of(lambda: cap(images, labels), repeat)
    t0 = time.perf_counter()
    slow = [naive_caption(img, lab) for img, lab in zip(images, labels, strict=True)]
    t_slow = time.perf_counter() - t0
    same = sum(a == b for a, b in zip(fast, slow, strict=True))
    print(f"rule describer: {n_images} images of 256x128 (label map + pixels -> caption)")
    print(f"  reference (per-pixel Python)    {n_images / t_slow:8.2f} images/s  ({t_slow:.2f} s)")
    print(f"  RuleCaptioner (numpy)           {n_images / t_fast:8.2f} images/s  ({t_fast:.3f} s)")
    print(f"  ratio {t_slow / t_fast:.0f}x; identical captions {same}/{n_images}; e.g. {fast[0]!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", choices=("full", "tiny", "both"), default="both")
    ap.add_argument("--images", type=int, default=4, help="images for the full SCHP (tiny uses 4x as many)")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--rule-images", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    for arch in ("tiny", "full") if args.arch == "both" else (args.arch,):
        n = args.images * (4 if arch == "tiny" else 1)
        bench_masks(arch, n, args.batch, args.repeat)
    bench_rule(args.rule_images, args.repeat)


if __name__ == "__main__":
    main()
