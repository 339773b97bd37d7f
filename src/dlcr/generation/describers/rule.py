"""``rule``: an offline captioner that reads the garments off a LIP label map and the pixels.

It works on any RGB image with a LIP label map (real photos with a parser's output as well as the
synthetic world), and never looks at ground-truth descriptions. Per body part it decides:

* the **garment** from the parsing labels: upper-clothes (5) is a ``t-shirt`` when arm skin
  (14/15) shows in the upper half of the torso (short sleeves) and a ``shirt`` otherwise; coat (7)
  is a ``jacket``; dress (6) a ``dress`` (which then also stands for the lower part); jumpsuit (10)
  a ``jumpsuit``; pants (9) are ``shorts`` when leg skin (16/17) shows well above the shoes and
  ``pants`` otherwise; skirt (12) a ``skirt``; shoes (18/19) ``shoes``, or ``socks`` (8) alone;
* the **colour** from the garment's pixels in CIELAB (so that shading changes lightness, not the
  name): a two-means split gives the dominant colour (median of the larger cluster) and, when the
  clusters are far apart, a second colour; names come from hue / chroma / lightness bands and are a
  subset of the shared vocabulary that the recolor backend paints (:mod:`dlcr.vocabulary`;
  ``light`` / ``dark`` modifiers included);
* the **pattern** from how the two colour clusters alternate in space. A pattern needs several
  colour changes per scan line *and* spatial regularity (the autocorrelation of the cluster labels
  at some small lag, minus its chance level, is large; independent noise scores about 0). Changes
  along one image axis only -> ``striped``; along both -> ``checked`` (balanced clusters) or
  ``dotted`` (a minor cluster); otherwise plain (not written in the caption). A two-coloured pattern
  is named "<main> and <second> <pattern>", the more colourful colour first when the shares are
  near equal.

Measurements (:func:`measure_layout`, :func:`measure_region`) are vectorised numpy; the decisions
(:func:`choose_garments`, :func:`colour_name`, :func:`classify_pattern`) are small pure functions on
their results, so a per-pixel reference implementation can reuse them (see
``benchmarks/bench_masks.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dlcr.errors import InputError
from dlcr.generation.describers.rule_region import classify_pattern, measure_region, pattern_colours
from dlcr.lip import (
    COAT,
    DRESS,
    LEFT_ARM,
    LEFT_LEG,
    LEFT_SHOE,
    NUM_LIP_LABELS,
    PANTS,
    RIGHT_ARM,
    RIGHT_LEG,
    RIGHT_SHOE,
    SKIRT,
    SOCKS,
    UPPER_CLOTHES,
)
from dlcr.lip import JUMPSUITS as JUMPSUIT
from dlcr.vocabulary import COLOURS, rgb_to_lab

ARMS, LEGS, SHOES = (LEFT_ARM, RIGHT_ARM), (LEFT_LEG, RIGHT_LEG), (LEFT_SHOE, RIGHT_SHOE)

#: Colour names the rule captioner can produce (all are keys of :data:`dlcr.vocabulary.COLOURS`).
BASIC_COLOURS: tuple[str, ...] = (
    "black", "white", "gray", "red", "pink", "orange", "yellow", "beige", "brown", "olive",
    "green", "teal", "turquoise", "blue", "navy", "purple",
)  # fmt: skip
#: Garment words it can produce, by LIP label (the words by body part are
#: :data:`dlcr.vocabulary.GARMENT_WORDS_BY_PART`).
GARMENT_WORDS_BY_LIP: dict[int, tuple[str, ...]] = {
    UPPER_CLOTHES: ("t-shirt", "shirt"),  # short / long sleeves
    COAT: ("jacket",),
    DRESS: ("dress",),
    JUMPSUIT: ("jumpsuit",),
    PANTS: ("shorts", "pants"),
    SKIRT: ("skirt",),
    SHOES[0]: ("shoes",),
    SOCKS: ("socks",),
}
PLURAL_GARMENTS = frozenset({"pants", "shorts", "shoes", "socks"})

# tunables (documented in the module docstring)
SLEEVE_BAND = 0.55  # arm skin above this fraction of the torso height means short sleeves
SLEEVE_MIN_FRACTION = 0.03  # ... when it amounts to this fraction of the upper garment's pixels
SHORTS_MARGIN = 0.1  # leg skin this far (x trouser height) above the shoes is not just ankles
SHORTS_MIN_FRACTION = 0.2  # leg skin vs trouser pixels for "shorts"
# ... and those of the region measurements: dlcr.generation.describers.rule_region


# --------------------------------------------------------------------------------------------
# Colour space and colour names
# --------------------------------------------------------------------------------------------

# CIELAB conversion: :func:`dlcr.vocabulary.rgb_to_lab`.


def _reference_lightness() -> dict[str, float]:
    lab = rgb_to_lab(np.array([COLOURS[n] for n in BASIC_COLOURS], dtype=np.uint8))
    return {n: float(v) for n, v in zip(BASIC_COLOURS, lab[:, 0], strict=True)}


_REF_L = _reference_lightness()
_TAKES_MODIFIER = frozenset({"red", "green", "blue", "purple", "teal"})


def colour_name(lab: Sequence[float]) -> str:
    """A basic colour name (optionally ``light``/``dark``) for one CIELAB colour.

    Hue bands decide the family; lightness and chroma split it (red vs pink, orange vs brown vs
    beige, blue vs navy). ``light``/``dark`` is added to the saturated families when the colour is
    much lighter / darker than the named colour's prototype in :data:`dlcr.vocabulary.COLOURS`.
    """
    lum, a, b = (float(v) for v in lab)
    c = math.hypot(a, b)
    h = math.degrees(math.atan2(b, a)) % 360.0
    if c < 10.0 or (lum < 20.0 and c < 15.0) or (lum > 85.0 and c < 14.0):
        if lum < 28.0:
            return "black"
        if lum >= 74.0:
            return "white"
        if lum < 40.0:
            return "dark gray"
        return "light gray" if lum >= 64.0 else "gray"
    if h < 15.0 or h >= 345.0:
        base = "pink" if lum >= 45.0 else "red"
    elif h < 50.0:
        base = "pink" if lum >= 68.0 else ("brown" if c < 30.0 and lum < 45.0 else "red")
    elif h < 75.0:
        base = "brown" if lum < 50.0 else ("beige" if c < 30.0 else "orange")
    elif h < 110.0:
        if c < 35.0:
            base = "beige" if lum >= 60.0 else "brown"
        else:
            base = "yellow" if lum >= 60.0 else "olive"
    elif h < 175.0:
        base = "green"
    elif h < 235.0:
        base = "turquoise" if lum >= 62.0 else "teal"
    elif h < 300.0:
        base = "navy" if lum < 25.0 else "blue"
    else:
        base = "pink" if lum >= 60.0 and h >= 325.0 else "purple"
    if base in _TAKES_MODIFIER:
        if lum >= _REF_L[base] + 20.0:
            return f"light {base}"
        if lum <= _REF_L[base] - 18.0:
            return f"dark {base}"
    return base


# --------------------------------------------------------------------------------------------
# Layout: which garments, from the label map
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """What the label map says about garment types: pixel counts and two skin measurements."""

    counts: tuple[int, ...]  # pixels per LIP label (length NUM_LIP_LABELS)
    arm_band: int  # arm skin pixels in the top SLEEVE_BAND of the upper garment's rows
    leg_high: int  # leg skin pixels between the trousers' top and (shoes' top - margin)


def row_histogram(labels: np.ndarray) -> np.ndarray:
    """(NUM_LIP_LABELS, H) pixel counts of every label in every row (labels >= 20 are ignored)."""
    h = labels.shape[0]
    key = labels.astype(np.int64) * h + np.arange(h, dtype=np.int64)[:, None]
    hist = np.bincount(key.ravel(), minlength=256 * h)
    return hist[: NUM_LIP_LABELS * h].reshape(NUM_LIP_LABELS, h)


def _extent(rows: np.ndarray) -> tuple[int, int] | None:
    nz = np.flatnonzero(rows)
    return (int(nz[0]), int(nz[-1])) if nz.size else None


def layout_from_rows(rows: np.ndarray) -> Layout:
    """:class:`Layout` from a :func:`row_histogram`."""
    h = rows.shape[1]
    counts = tuple(int(v) for v in rows.sum(axis=1))
    arm_band = leg_high = 0
    torso = _extent(rows[UPPER_CLOTHES] + rows[COAT])
    if torso is not None:
        top, bottom = torso
        stop = top + int(math.ceil(SLEEVE_BAND * (bottom - top + 1)))
        arm_band = int(rows[list(ARMS), top:stop].sum())
    legs = _extent(rows[PANTS])
    if legs is not None:
        top, bottom = legs
        shoes = _extent(rows[list(SHOES)].sum(axis=0))
        shoes_top = shoes[0] if shoes is not None else h
        stop = shoes_top - int(math.ceil(SHORTS_MARGIN * (bottom - top + 1)))
        leg_high = int(rows[list(LEGS), top : max(top, stop)].sum())
    return Layout(counts=counts, arm_band=arm_band, leg_high=leg_high)


def measure_layout(labels: np.ndarray) -> Layout:
    return layout_from_rows(row_histogram(labels))


@dataclass(frozen=True)
class GarmentChoice:
    part: str  # "upper" | "lower" | "footwear"
    garment: str  # a garment word
    labels: tuple[int, ...]  # the LIP ids whose pixels give its colour
    pixels: int


def choose_garments(layout: Layout, min_pixels: int = 10) -> list[GarmentChoice]:
    """The garment of each visible body part, in the order upper, lower, footwear."""
    n = layout.counts
    out: list[GarmentChoice] = []
    upper = max((UPPER_CLOTHES, COAT, DRESS, JUMPSUIT), key=lambda k: (n[k], -k))
    whole_body = False
    if n[upper] >= min_pixels:
        if upper == UPPER_CLOTHES:
            short = layout.arm_band >= max(3.0, SLEEVE_MIN_FRACTION * n[UPPER_CLOTHES])
            word = "t-shirt" if short else "shirt"
        else:
            word = GARMENT_WORDS_BY_LIP[upper][0]
        out.append(GarmentChoice("upper", word, (upper,), n[upper]))
        whole_body = upper in (DRESS, JUMPSUIT) and n[upper] >= n[PANTS] + n[SKIRT]
    lower = PANTS if n[PANTS] >= n[SKIRT] else SKIRT
    if not whole_body and n[lower] >= min_pixels:
        if lower == PANTS:
            word = "shorts" if layout.leg_high >= SHORTS_MIN_FRACTION * n[PANTS] else "pants"
        else:
            word = "skirt"
        out.append(GarmentChoice("lower", word, (lower,), n[lower]))
    shoes = n[SHOES[0]] + n[SHOES[1]]
    if shoes >= min_pixels:
        out.append(GarmentChoice("footwear", "shoes", SHOES, shoes))
    elif n[SOCKS] >= min_pixels:
        out.append(GarmentChoice("footwear", "socks", (SOCKS,), n[SOCKS]))
    return out


# Region colours and pattern, from the pixels: :mod:`dlcr.generation.describers.rule_region`.


# --------------------------------------------------------------------------------------------
# The captioner
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartDescription:
    """One garment as the rule captioner sees it."""

    part: str
    garment: str
    colour: str
    secondary: str | None  # second colour of a patterned garment
    pattern: str  # "plain" | "striped" | "checked" | "dotted"
    pixels: int

    @property
    def phrase(self) -> str:
        """``red and white striped t-shirt``; a plain garment has no pattern word."""
        words = [self.colour]
        if self.pattern != "plain":
            if self.secondary and self.secondary != self.colour:
                words += ["and", self.secondary]
            words.append(self.pattern)
        words.append(self.garment)
        return " ".join(words)


def with_article(phrase: str, garment: str) -> str:
    if garment in PLURAL_GARMENTS:
        return phrase
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def join_phrases(phrases: Sequence[str]) -> str:
    """``a person wearing A, B and C`` (``a person`` when nothing is visible)."""
    if not phrases:
        return "a person"
    body = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return "a person wearing " + body


def describe_parts(
    image: np.ndarray, labels: np.ndarray, min_pixels: int = 10, layout: Layout | None = None
) -> list[PartDescription]:
    """The garments of one image (upper, lower, footwear order; absent parts are left out)."""
    out = []
    for g in choose_garments(layout or measure_layout(labels), min_pixels):
        lut = np.zeros(256, dtype=bool)
        lut[list(g.labels)] = True
        stats = measure_region(image, lut[labels], min_pixels)
        pattern = classify_pattern(stats)
        main, second = pattern_colours(stats, pattern)
        secondary = colour_name(second) if second is not None else None
        out.append(PartDescription(g.part, g.garment, colour_name(main), secondary, pattern, g.pixels))
    return out


def caption_from_parts(parts: Sequence[PartDescription]) -> str:
    return join_phrases([with_article(p.phrase, p.garment) for p in parts])


def _check_pair(i: int, image: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"image {i} must be RGB uint8 (H, W, 3), got {img.dtype} {img.shape}")
    if labels is None:
        raise InputError(f"the rule captioner needs a LIP label map for image {i}; got None")
    lab = np.asarray(labels)
    if lab.shape != img.shape[:2] or not np.issubdtype(lab.dtype, np.integer):
        raise InputError(
            f"label map {i} must be an integer (H, W) array matching its image {img.shape[:2]}, "
            f"got {lab.dtype} {lab.shape}"
        )
    return img, lab.astype(np.uint8, copy=False)


class RuleCaptioner:
    """Offline captioner: garment types from the label map, colours and patterns from the pixels."""

    name = "rule"

    def __init__(self, min_pixels: int = 10):
        if min_pixels < 1:
            raise InputError(f"min_pixels must be at least 1, got {min_pixels}")
        self.min_pixels = int(min_pixels)
        self.model = f"rule-v1(min_pixels={self.min_pixels})"

    def describe(self, image: np.ndarray, labels: np.ndarray) -> list[PartDescription]:
        img, lab = _check_pair(0, image, labels)
        return describe_parts(img, lab, self.min_pixels)

    def __call__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray | None]) -> list[str]:
        if len(images) != len(labels):
            raise InputError(f"{len(images)} images but {len(labels)} label maps")
        out = []
        for i, (image, lab) in enumerate(zip(images, labels, strict=True)):
            img, lab8 = _check_pair(i, image, lab)
            out.append(caption_from_parts(describe_parts(img, lab8, self.min_pixels)))
        return out
