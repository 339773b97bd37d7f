"""Colour and garment vocabulary of the synthetic world.

Clothes colours use the *names and RGB values* of the shared colour table
(:data:`dlcr.vocabulary.COLOURS`, the one the ``recolor`` inpainter paints with), so an outfit
description such as ``"red striped t-shirt"`` means the same colour to the renderer and to the
recolouring backend: a recoloured image can then look exactly like another person's real outfit,
which is what the clothes-changing augmentation needs. Garment and pattern words are also taken
from the words that backend understands (tests check both).
"""

from __future__ import annotations

import numpy as np

from dlcr.lip import COAT, PANTS, SKIRT, UPPER_CLOTHES
from dlcr.vocabulary import COLOURS, contrast_colour

#: RGB 0..255 of the clothes colours the world uses, taken from the shared colour table.
CLOTHES_RGB: dict[str, tuple[int, int, int]] = {
    name: COLOURS[name]
    for name in ("black", "white", "gray", "silver", "red", "maroon", "pink", "orange", "yellow", "beige", "khaki",
                 "brown", "olive", "green", "teal", "cyan", "blue", "navy", "denim", "purple", "lavender")
}

# Colours drawn for each garment slot, with weights: like real street clothing, dark and neutral
# colours dominate, so many people match and clothes alone rarely identify a person.
UPPER_COLOURS: dict[str, float] = {
    "black": 14, "white": 10, "gray": 10, "navy": 8, "blue": 6, "beige": 5, "silver": 3, "red": 5,
    "maroon": 3, "pink": 3, "orange": 2, "yellow": 3, "khaki": 3, "brown": 4, "olive": 3, "green": 4,
    "teal": 2, "cyan": 2, "purple": 3, "lavender": 2,
}  # fmt: skip
LOWER_COLOURS: dict[str, float] = {
    "black": 16, "gray": 10, "navy": 8, "blue": 5, "denim": 4, "khaki": 7, "beige": 5, "brown": 5,
    "olive": 3, "white": 3, "red": 2, "maroon": 2, "green": 2, "purple": 1, "pink": 1, "teal": 1,
}  # fmt: skip
#: Saturated colours; the world option ``vivid`` scales their weights (0 = neutral clothing only).
VIVID = frozenset({"red", "maroon", "pink", "orange", "yellow", "green", "teal", "cyan", "blue", "purple", "lavender"})
JEANS_COLOURS: dict[str, float] = {"blue": 5, "denim": 4, "navy": 2, "black": 3, "gray": 1}
SHOE_COLOURS: dict[str, float] = {
    "white": 8, "black": 10, "brown": 5, "gray": 4, "red": 1, "blue": 2, "navy": 2, "beige": 2, "yellow": 1,
    "green": 1,
}  # fmt: skip

# Pattern word in descriptions -> pattern drawn. Words are those the recolor parser maps to the
# same pattern ("striped" -> stripes, "checked" -> checks, "dotted" -> dots).
PATTERN_WORDS = {"plain": "plain", "striped": "stripes", "checked": "checks", "dotted": "dots"}

# Garment kinds: description word -> (LIP label, sleeve length) for the upper body.
UPPER_KINDS: dict[str, tuple[int, str]] = {
    "t-shirt": (UPPER_CLOTHES, "short"),
    "tank top": (UPPER_CLOTHES, "none"),
    "shirt": (UPPER_CLOTHES, "long"),
    "sweater": (UPPER_CLOTHES, "long"),
    "hoodie": (UPPER_CLOTHES, "long"),
    "jacket": (COAT, "long"),
    "coat": (COAT, "long"),
}
LOWER_KINDS: dict[str, int] = {"jeans": PANTS, "trousers": PANTS, "shorts": PANTS, "skirt": SKIRT}
FOOTWEAR_KINDS = ("sneakers", "shoes", "boots")

# Identity colours (never described, never recoloured).
HAIR_RGB: dict[str, tuple[int, int, int]] = {
    "black": (24, 20, 19),
    "dark brown": (58, 38, 26),
    "brown": (104, 68, 38),
    "auburn": (136, 58, 30),
    "blonde": (206, 172, 104),
    "gray": (150, 148, 146),
    "white": (222, 220, 214),
    # dyed: rarer, but large saturated regions a CNN picks up as easily as clothes
    "dyed red": (176, 36, 30),
    "dyed pink": (226, 110, 170),
    "dyed blue": (46, 90, 200),
    "dyed green": (40, 150, 90),
    "dyed purple": (120, 60, 170),
    "platinum": (236, 230, 190),
}
HAIR_STYLES = ("short", "long", "ponytail", "bun", "bald", "curly")
# Skin tones are a continuous ramp between these two ends.
SKIN_LIGHT = (242, 206, 180)
SKIN_DARK = (92, 58, 40)


def contrast_rgb(rgb: tuple[float, float, float]) -> tuple[float, float, float]:
    """The second colour of a pattern when none is named (the recolor backend's rule)."""
    r, g, b = (float(x) for x in contrast_colour(np.asarray(rgb, dtype=np.float64)))
    return (r, g, b)


def rgb01(name: str) -> tuple[float, float, float]:
    r, g, b = CLOTHES_RGB[name]
    return (r / 255.0, g / 255.0, b / 255.0)
