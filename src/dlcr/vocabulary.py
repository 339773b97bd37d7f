"""The words of outfit descriptions and the colour arithmetic shared by the stages that use them.

One vocabulary for everything that reads or writes an outfit description: the ``recolor``
inpainter (which paints what a prompt names), the caption splitter of the description stage
(:mod:`dlcr.generation.outfit_text`), the ``rule`` captioner (whose colour names are a subset of
:data:`COLOURS`), the ``pose`` parser (CIELAB colour distances) and the synthetic world's palette
(:mod:`dlcr.synth.palette`, which draws its clothes colours from :data:`COLOURS` so that a described
colour means the same RGB value to the renderer and to the recolouring backend).

Garment words come in two tables keyed differently: :data:`GARMENTS` (the words recolor places on
a part) and :data:`GARMENT_WORDS_BY_PART` (those plus words the caption splitter also recognises),
both keyed by body part (``upper`` / ``lower`` / ``footwear``); the words the rule captioner writes
for each LIP label are :data:`dlcr.generation.describers.rule.GARMENT_WORDS_BY_LIP`.

CIELAB (D65) of sRGB bytes: :func:`rgb_to_lab`. This module imports only numpy and the standard
library (the bottom layer of the package).
"""

from __future__ import annotations

import numpy as np

#: The garment parts of an outfit description, in the order they are written.
PARTS = ("upper", "lower", "footwear")

# RGB in 0..255; several names per colour where people use both.
COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (22, 22, 24),
    "white": (236, 236, 232),
    "gray": (128, 128, 130),
    "grey": (128, 128, 130),
    "silver": (190, 190, 195),
    "red": (190, 32, 38),
    "maroon": (112, 22, 36),
    "burgundy": (112, 22, 36),
    "pink": (236, 132, 170),
    "orange": (238, 128, 32),
    "yellow": (238, 208, 44),
    "gold": (210, 172, 56),
    "beige": (218, 198, 162),
    "cream": (240, 230, 202),
    "khaki": (190, 174, 120),
    "tan": (198, 158, 108),
    "brown": (118, 74, 40),
    "olive": (108, 114, 42),
    "green": (40, 138, 60),
    "teal": (22, 126, 128),
    "cyan": (44, 188, 200),
    "turquoise": (48, 196, 190),
    "blue": (36, 76, 188),
    "navy": (26, 36, 92),
    "denim": (68, 98, 146),
    "purple": (108, 50, 150),
    "violet": (128, 70, 180),
    "lavender": (180, 160, 220),
}
MODIFIERS = {"light": ("mix", 0.45), "pale": ("mix", 0.6), "dark": ("scale", 0.55), "deep": ("scale", 0.7)}
PATTERNS = {
    "striped": "stripes",
    "stripes": "stripes",
    "stripe": "stripes",
    "pinstriped": "stripes",
    "checked": "checks",
    "checkered": "checks",
    "plaid": "checks",
    "checks": "checks",
    "gingham": "checks",
    "tartan": "checks",
    "dotted": "dots",
    "polka": "dots",
    "dots": "dots",
    "spotted": "dots",
    "floral": "dots",
    "plain": "plain",
    "solid": "plain",
}
#: Garment words by part: the words recolor places a prompt phrase on a part by.
GARMENTS = {
    "upper": {
        "shirt",
        "t-shirt",
        "tshirt",
        "tee",
        "top",
        "blouse",
        "sweater",
        "jumper",
        "hoodie",
        "sweatshirt",
        "jacket",
        "coat",
        "vest",
        "cardigan",
        "polo",
        "dress",
        "blazer",
        "parka",
        "tank",
        "suit",
        "uniform",
        "jersey",
    },
    "lower": {
        "pants",
        "jeans",
        "trousers",
        "shorts",
        "skirt",
        "leggings",
        "slacks",
        "chinos",
        "joggers",
        "sweatpants",
        "tights",
    },
    "footwear": {
        "shoes",
        "shoe",
        "sneakers",
        "sneaker",
        "boots",
        "boot",
        "sandals",
        "heels",
        "slippers",
        "loafers",
        "trainers",
        "flats",
    },
}

#: Garment words per part: recolor's vocabulary (:data:`GARMENTS`) plus a few items it does not
#: paint specially (what the caption splitter recognises).
GARMENT_WORDS_BY_PART: dict[str, frozenset[str]] = {
    "upper": frozenset(GARMENTS["upper"] | {"jumpsuit", "overalls", "tunic", "camisole", "windbreaker"}),
    "lower": frozenset(GARMENTS["lower"] | {"capris", "culottes", "jeggings", "pant", "trouser"}),
    "footwear": frozenset(GARMENTS["footwear"] | {"socks", "sock", "footwear", "flip-flops", "trainer"}),
}
#: Things captions mention that are not garments of any part (a phrase naming one is dropped).
NOT_GARMENTS = frozenset(
    "hair skin eyes eye face beard background bag backpack handbag purse hat cap helmet glasses "  # noqa: SIM905
    "sunglasses umbrella phone wall street road floor sky building car bike bicycle tree grass "
    "scarf belt watch gloves glove mask necklace tie badge logo image photo picture".split()
)


# --------------------------------------------------------------------------------------------
# Colour arithmetic
# --------------------------------------------------------------------------------------------


def luminance(rgb01: np.ndarray) -> np.ndarray:
    return rgb01[..., 0] * 0.299 + rgb01[..., 1] * 0.587 + rgb01[..., 2] * 0.114


def contrast_colour(c: np.ndarray) -> np.ndarray:
    """The second colour of a pattern when the prompt names none: light on dark, dark on light."""
    return np.array([0.93, 0.93, 0.92]) if luminance(c) < 0.45 else np.array([0.1, 0.1, 0.12])


# CIELAB (D65)
_C = np.arange(256, dtype=np.float64) / 255.0
#: sRGB byte -> linear light.
SRGB_TO_LINEAR = np.where(_C <= 0.04045, _C / 12.92, ((_C + 0.055) / 1.055) ** 2.4)
#: linear sRGB -> CIE XYZ (D65), rows already divided by the D65 white point.
RGB_TO_XYZN = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ]
) / np.array([[0.95047], [1.0], [1.08883]])
_EPS = (6.0 / 29.0) ** 3
_KAPPA = 1.0 / (3.0 * (6.0 / 29.0) ** 2)


def lab_f(t: float) -> float:
    """CIELAB's companding function (scalar; the vectorised version is inside :func:`rgb_to_lab`)."""
    return t ** (1.0 / 3.0) if t > _EPS else t * _KAPPA + 4.0 / 29.0


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of uint8 sRGB values, shape (..., 3) -> float64 (..., 3)."""
    lin = SRGB_TO_LINEAR[np.asarray(rgb, dtype=np.uint8)]
    xyz = lin @ RGB_TO_XYZN.T
    f = np.where(xyz > _EPS, np.cbrt(xyz), xyz * _KAPPA + 4.0 / 29.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab



__all__ = [
    "COLOURS",
    "GARMENTS",
    "GARMENT_WORDS_BY_PART",
    "MODIFIERS",
    "NOT_GARMENTS",
    "PARTS",
    "PATTERNS",
    "RGB_TO_XYZN",
    "SRGB_TO_LINEAR",
    "contrast_colour",
    "lab_f",
    "luminance",
    "rgb_to_lab",
]
