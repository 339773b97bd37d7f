"""``recolor``: prompt-driven recolouring and patterning of the clothes, keeping the shading.

This is the offline inpainting backend and the paper's colour-change baseline. The target prompt
(e.g. ``"a person wearing red striped t-shirt, blue jeans, white sneakers"``) is parsed into one
style per body part (colour, optional second colour, pattern). Inside each body-part mask of the LIP
label map (upper / lower / footwear) the hue and chroma are replaced by the target colour while the
source's relative luminance is kept as a shading factor::

    new = target_colour * clip((Y + e) / (mean_part(Y) + e), 0.3, 1.8)

so folds, shadows and highlights survive. Patterns (stripes, checks, dots) are drawn in image
coordinates with a period proportional to the image height; their phase, the exact period and a
small colour jitter come from the job seed, so a job is deterministic and two variants of the same
outfit still differ slightly. Nothing here knows anything about where the image came from.

A mask that covers more than the clothes (``generate.mask_region: person``, the "standard diffusion"
ablation: identity cues repainted too) makes the person's other pixels part of the nearest garment
part (:data:`SKIN_PART`: hat, hair, face and arms join the upper garment, legs the lower one), so
skin and hair take the garment's colour and pattern. With the default clothes mask nothing changes.

The colour, pattern, modifier and garment words (and the colour table) are :mod:`dlcr.vocabulary`'s.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlcr.generation.inpainting import InpaintItem, composite
from dlcr.lip import (
    CLOTHES_LABELS,
    FACE,
    HAIR,
    HAT,
    LEFT_ARM,
    LEFT_LEG,
    RIGHT_ARM,
    RIGHT_LEG,
    labels_mask,
    part_masks,
)
from dlcr.vocabulary import COLOURS, GARMENTS, MODIFIERS, PARTS, PATTERNS, contrast_colour, luminance

#: LIP labels outside the clothes -> the garment part whose style paints them when the mask covers them
#: (``mask_region: person``); any other non-clothes label joins the upper part.
SKIN_PART: dict[int, str] = {HAT: "upper", HAIR: "upper", FACE: "upper", LEFT_ARM: "upper", RIGHT_ARM: "upper",
                             LEFT_LEG: "lower", RIGHT_LEG: "lower"}


@dataclass(frozen=True)
class PartStyle:
    """What one body part should look like: colours in [0, 1] RGB and a pattern name."""

    text: str
    colour: tuple[float, float, float] | None  # None: no colour named (a seeded one is used)
    secondary: tuple[float, float, float] | None  # None: chosen to contrast with ``colour``
    pattern: str  # "plain" | "stripes" | "checks" | "dots"


def _colour(name: str, modifier: str | None) -> tuple[float, float, float]:
    c = np.asarray(COLOURS[name], dtype=np.float64) / 255.0
    if modifier:
        how, amount = MODIFIERS[modifier]
        c = c + (1.0 - c) * amount if how == "mix" else c * amount
    return (float(c[0]), float(c[1]), float(c[2]))


def parse_part(text: str) -> PartStyle:
    """Colours (first = main, second = pattern colour) and pattern named in one garment phrase."""
    words = re.findall(r"[a-z]+(?:-[a-z]+)?", text.lower())
    colours: list[tuple[float, float, float]] = []
    pattern = "plain"
    modifier = None
    joined = False  # a second colour counts only after "and" / "with" ("navy blue" is one colour)
    for w in words:
        parts = w.split("-") if w not in GARMENTS["upper"] else [w]  # "blue-green", not "t-shirt"
        for p in parts:
            if p in ("and", "with", "on"):
                joined = True
            elif p in MODIFIERS:
                modifier = p
            elif p in COLOURS:
                if not colours or joined:
                    colours.append(_colour(p, modifier))
                modifier, joined = None, False
            elif p in PATTERNS and pattern == "plain":
                pattern = PATTERNS[p]
    return PartStyle(
        text=text.strip(),
        colour=colours[0] if colours else None,
        secondary=colours[1] if len(colours) > 1 else None,
        pattern=pattern,
    )


def parse_outfit_prompt(prompt: str) -> dict[str, PartStyle]:
    """Split a prompt into per-part styles.

    The text after ``wearing`` is split on commas (and semicolons); each phrase goes to the part
    its garment word names, and phrases without a garment word fill the remaining parts in the
    order upper, lower, footwear. Phrases naming no colour, pattern or garment are ignored; parts the
    prompt does not mention are absent from the result.
    """
    text = prompt.strip()
    m = re.search(r"\bwearing\b", text, flags=re.IGNORECASE)
    if m:
        text = text[m.end() :]
    phrases = [p.strip() for p in re.split(r"[,;]|\band\b(?=\s+(?:a|an)\s)", text) if p.strip()]
    out: dict[str, PartStyle] = {}
    unplaced: list[str] = []
    for phrase in phrases:
        words = set(re.findall(r"[a-z]+(?:-[a-z]+)?", phrase.lower()))
        words |= {p for w in words for p in w.split("-")}
        if not words & (set(COLOURS) | set(PATTERNS) | set().union(*GARMENTS.values())):
            continue  # names no colour, pattern or garment ("a person")
        part = next((p for p in PARTS if words & GARMENTS[p] and p not in out), None)
        if part is None:
            unplaced.append(phrase)
        else:
            out[part] = parse_part(phrase)
    for phrase in unplaced:
        free = [p for p in PARTS if p not in out]
        if not free:
            break
        out[free[0]] = parse_part(phrase)
    return out


def pattern_mask(pattern: str, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """Where the second colour goes, in image coordinates (period ~ 1/18..1/28 of the height)."""
    h, w = shape
    if pattern == "plain":
        return np.zeros(shape, dtype=bool)
    period = max(4.0, h * rng.uniform(1 / 28, 1 / 18))
    py, px = rng.uniform(0, period, size=2)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    if pattern == "stripes":
        return ((yy + py) // (period / 2)) % 2 == 1
    if pattern == "checks":
        return (((yy + py) // (period / 2)) + ((xx + px) // (period / 2))) % 2 == 1
    if pattern == "dots":
        cy = (yy + py) % period - period / 2
        cx = (xx + px) % period - period / 2
        return cy * cy + cx * cx <= (period * 0.25) ** 2
    raise ValueError(f"unknown pattern {pattern!r}")


class RecolorInpainter:
    """Offline inpainter: recolour + pattern every body part as the target prompt says.

    ``shading`` (0..1) is how much of the source's luminance variation is kept (1 = all of it);
    ``jitter`` is the standard deviation of the seeded per-job colour jitter.
    """

    name = "recolor"

    def __init__(self, shading: float = 1.0, jitter: float = 0.02):
        self.shading = float(shading)
        self.jitter = float(jitter)
        self.model = f"recolor(shading={self.shading:g},jitter={self.jitter:g})"

    def __call__(self, items: Sequence[InpaintItem]) -> list[np.ndarray]:
        return [self.paint(it) for it in items]

    def paint(self, item: InpaintItem) -> np.ndarray:
        src = item.image
        mask = item.mask.astype(bool)
        if item.labels is not None:
            parts = {k: v & mask for k, v in part_masks(item.labels).items()}
            extra = mask & ~labels_mask(item.labels, CLOTHES_LABELS)  # only with a mask beyond the clothes
            if extra.any():
                lower = extra & np.isin(item.labels, [k for k, v in SKIN_PART.items() if v == "lower"])
                parts["upper"] = parts["upper"] | (extra & ~lower)
                parts["lower"] = parts["lower"] | lower
        else:  # no label map: treat the whole mask as one garment (the upper one)
            parts = {"upper": mask}
        styles = parse_outfit_prompt(item.job.prompt)
        img = src.astype(np.float64) / 255.0
        y = luminance(img)
        out = img.copy()
        for i, part in enumerate(PARTS):
            region = parts.get(part)
            style = styles.get(part)
            if region is None or style is None or not region.any():
                continue
            rng = np.random.default_rng([int(item.job.seed), i])
            main = np.asarray(style.colour if style.colour is not None else rng.uniform(0.05, 0.95, 3))
            main = np.clip(main + rng.normal(0.0, self.jitter, 3), 0.0, 1.0)
            second = np.asarray(style.secondary) if style.secondary is not None else contrast_colour(main)
            target = np.broadcast_to(main, img.shape).copy()
            pm = pattern_mask(style.pattern, y.shape, rng)
            target[pm] = second
            mean_y = float(y[region].mean())
            shade = np.clip((y + 0.02) / (mean_y + 0.02), 0.3, 1.8)
            shade = 1.0 + self.shading * (shade - 1.0)
            out[region] = np.clip(target[region] * shade[region][:, None], 0.0, 1.0)
        painted = np.rint(out * 255.0).astype(np.uint8)
        return composite(src, painted, mask)
