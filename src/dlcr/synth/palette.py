"""Colour and garment vocabulary of the synthetic world.

Clothes colours use the *names and RGB values* of the ``recolor`` inpainter's colour table, so an
outfit description such as ``"red striped t-shirt"`` means the same colour to the renderer and to the
recolouring backend: a recoloured image can then look exactly like another person's real outfit,
which is what the clothes-changing augmentation needs. Garment and pattern words are also taken
from the words that backend understands (tests check both).
"""

from __future__ import annotations

# RGB 0..255 of the clothes colours the world uses (same values as recolor.COLOURS).
CLOTHES_RGB: dict[str, tuple[int, int, int]] = {
    "black": (22, 22, 24),
    "white": (236, 236, 232),
    "gray": (128, 128, 130),
    "silver": (190, 190, 195),
    "red": (190, 32, 38),
    "maroon": (112, 22, 36),
    "pink": (236, 132, 170),
    "orange": (238, 128, 32),
    "yellow": (238, 208, 44),
    "beige": (218, 198, 162),
    "khaki": (190, 174, 120),
    "brown": (118, 74, 40),
    "olive": (108, 114, 42),
    "green": (40, 138, 60),
    "teal": (22, 126, 128),
    "cyan": (44, 188, 200),
    "blue": (36, 76, 188),
    "navy": (26, 36, 92),
    "denim": (68, 98, 146),
    "purple": (108, 50, 150),
    "lavender": (180, 160, 220),
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
    "t-shirt": (5, "short"),
    "tank top": (5, "none"),
    "shirt": (5, "long"),
    "sweater": (5, "long"),
    "hoodie": (5, "long"),
    "jacket": (7, "long"),
    "coat": (7, "long"),
}
LOWER_KINDS: dict[str, int] = {"jeans": 9, "trousers": 9, "shorts": 9, "skirt": 12}
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
    """The second colour of a pattern when none is named (same rule as the recolor backend)."""
    y = rgb[0] * 0.299 + rgb[1] * 0.587 + rgb[2] * 0.114
    return (0.93, 0.93, 0.92) if y < 0.45 else (0.1, 0.1, 0.12)


def rgb01(name: str) -> tuple[float, float, float]:
    r, g, b = CLOTHES_RGB[name]
    return (r / 255.0, g / 255.0, b / 255.0)
