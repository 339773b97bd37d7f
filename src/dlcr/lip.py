"""The LIP label scheme: label ids and names, the clothes label set, other schemes' tables, masks.

Every human parser of this project produces label maps of LIP ids (uint8, same height and width as
the image), and every later stage (describer, inpainting backends, reports) reads them. The label
vocabulary, the clothes label set, the garment parts and the id tables of the other label schemes
are defined in this module and nowhere else. It imports numpy, the standard library and
:mod:`dlcr.errors` (for the exceptions its checks raise) only.

LIP ids::

     0 Background   1 Hat        2 Hair       3 Glove       4 Sunglasses
     5 Upper-clothes 6 Dress     7 Coat       8 Socks       9 Pants
    10 Jumpsuits    11 Scarf     12 Skirt     13 Face       14 Left-arm
    15 Right-arm    16 Left-leg  17 Right-leg 18 Left-shoe  19 Right-shoe

Body parts (:data:`BODY_PARTS`): a dress or a jumpsuit covers both the torso and the legs, so ids 6
and 10 belong to *both* ``upper`` and ``lower``; the parts therefore overlap on those pixels. Socks
go with the shoes (``footwear``). Gloves, sunglasses and scarves (3, 4, 11) are in the clothes mask
but in no part; they are listed as :data:`ACCESSORY_LABELS`.

ATR label maps (18 ids, used by SCHP's ATR model and by many hub checkpoints) are converted with
:data:`ATR_TO_LIP`. Two ATR classes have no LIP counterpart: ``Belt`` becomes ``Pants`` (9), so a
belt stays inside the clothes mask and is repainted with the lower garment, and ``Bag`` becomes
``Background`` (0), since a carried bag is not clothing and must not be repainted. CIHP
(:data:`CIHP_LABELS`) maps through :data:`CIHP_TO_LIP`; Pascal-Person-Part (:data:`PASCAL_LABELS`,
SCHP's third model) has body parts only. Segmenters with other label sets are mapped to LIP by
class name in :mod:`dlcr.generation.label_schemes`.

Masks: :func:`labels_mask` (pixels of a label set), :func:`clothes_mask` (optionally dilated with
:func:`dilate_mask`), :func:`part_masks` (one per body part) and :func:`mask_bbox`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import numpy as np

from dlcr.errors import ConfigError, InputError

# --------------------------------------------------------------------------------------------
# Label vocabularies
# --------------------------------------------------------------------------------------------

LIP_LABELS: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
    "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
    "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip
NUM_LIP_LABELS = len(LIP_LABELS)

#: LIP ids by name.
BACKGROUND, HAT, HAIR, GLOVE, SUNGLASSES = 0, 1, 2, 3, 4
UPPER_CLOTHES, DRESS, COAT, SOCKS, PANTS = 5, 6, 7, 8, 9
JUMPSUITS, SCARF, SKIRT, FACE, LEFT_ARM = 10, 11, 12, 13, 14
RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = 15, 16, 17, 18, 19

ATR_LABELS: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)  # fmt: skip

#: Everything a person wears: the pixels that clothes inpainting may change.
CLOTHES_LABELS: frozenset[int] = frozenset(
    {GLOVE, SUNGLASSES, UPPER_CLOTHES, DRESS, COAT, SOCKS, PANTS, JUMPSUITS, SCARF, SKIRT, LEFT_SHOE, RIGHT_SHOE}
)
#: Worn items that belong to no garment part.
ACCESSORY_LABELS: frozenset[int] = frozenset({GLOVE, SUNGLASSES, SCARF})
#: Garment parts (``upper``/``lower``/``footwear``, the fields of an outfit description). Dress (6)
#: and jumpsuit (10) are in both ``upper`` and ``lower``.
BODY_PARTS: Mapping[str, frozenset[int]] = MappingProxyType(
    {
        "upper": frozenset({UPPER_CLOTHES, DRESS, COAT, JUMPSUITS}),
        "lower": frozenset({DRESS, PANTS, JUMPSUITS, SKIRT}),
        "footwear": frozenset({SOCKS, LEFT_SHOE, RIGHT_SHOE}),
    }
)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


#: ATR id -> LIP id (index with an ATR label map, or use :func:`map_labels`).
ATR_TO_LIP: np.ndarray = _readonly(
    np.array([0, 1, 2, 4, 5, 12, 9, 6, 9, 18, 19, 13, 16, 17, 14, 15, 0, 11], dtype=np.uint8)
)
#: LIP id -> LIP id (identity), for symmetry with :data:`ATR_TO_LIP`.
LIP_TO_LIP: np.ndarray = _readonly(np.arange(NUM_LIP_LABELS, dtype=np.uint8))

#: CIHP id -> LIP id: LIP's ids, except CIHP's ``Torso-skin`` (10), which LIP labels background.
CIHP_TO_LIP: np.ndarray = _readonly(np.where(np.arange(NUM_LIP_LABELS) == 10, 0, np.arange(NUM_LIP_LABELS)).astype(np.uint8))

LABEL_TABLES: Mapping[str, np.ndarray] = MappingProxyType(
    {"lip": LIP_TO_LIP, "atr": ATR_TO_LIP, "cihp": CIHP_TO_LIP}
)


def label_table(name: str | Sequence[int] | np.ndarray) -> np.ndarray:
    """A mapping table (source id -> LIP id) by name (``"lip"``, ``"atr"``, ``"cihp"``) or given explicitly."""
    if isinstance(name, str):
        key = name.lower()
        if key not in LABEL_TABLES:
            raise ConfigError(f"unknown label set {name!r}; known: {', '.join(LABEL_TABLES)}")
        return LABEL_TABLES[key]
    table = np.asarray(name)
    if table.ndim != 1 or table.size == 0 or not np.issubdtype(table.dtype, np.integer):
        raise ConfigError("a label mapping table must be a non-empty 1-D sequence of integers")
    if table.min() < 0 or table.max() >= NUM_LIP_LABELS:
        raise ConfigError(f"a label mapping table must map into LIP ids 0..{NUM_LIP_LABELS - 1}")
    return table.astype(np.uint8)


def map_labels(label_map: np.ndarray, table: str | Sequence[int] | np.ndarray) -> np.ndarray:
    """Convert a label map through ``table`` (``table[old_id] = new_id``) with one lookup.

    ``table`` may be a name (``"atr"``, ``"lip"``) or an explicit sequence. A label with no entry in
    the table raises :class:`InputError`.
    """
    lut = label_table(table)
    labels = np.asarray(label_map)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"label map must hold integers, got dtype {labels.dtype}")
    if labels.size:
        lo, hi = int(labels.min()), int(labels.max())
        if lo < 0 or hi >= lut.size:
            bad = lo if lo < 0 else hi
            raise InputError(f"label {bad} has no entry in the mapping table ({lut.size} entries)")
    return lut[labels]


# --------------------------------------------------------------------------------------------
# Other label schemes' class names
# --------------------------------------------------------------------------------------------

#: CIHP (20 classes): LIP's names except id 10, ``Torso-skin`` (LIP has no skin class for the torso).
CIHP_LABELS: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "UpperClothes", "Dress", "Coat",
    "Socks", "Pants", "Torso-skin", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
    "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip
#: Pascal-Person-Part (7 classes, SCHP's third released model): body parts only, no clothes.
PASCAL_LABELS: tuple[str, ...] = (
    "Background", "Head", "Torso", "Upper Arms", "Lower Arms", "Upper Legs", "Lower Legs",
)  # fmt: skip


# --------------------------------------------------------------------------------------------
# Masks
# --------------------------------------------------------------------------------------------


def _check_label_map(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"a label map must be 2-D (H, W), got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"a label map must hold integers, got dtype {labels.dtype}")
    return labels


def _shift(m: np.ndarray, s: int, axis: int) -> np.ndarray:
    """``m`` moved by ``s`` pixels along ``axis`` (positive = towards higher indices), zero-filled."""
    out = np.zeros_like(m)
    n = m.shape[axis]
    k = min(abs(s), n)
    dst = [slice(None)] * m.ndim
    src = [slice(None)] * m.ndim
    if s >= 0:
        dst[axis], src[axis] = slice(k, n), slice(0, n - k)
    else:
        dst[axis], src[axis] = slice(0, n - k), slice(k, n)
    out[tuple(dst)] = m[tuple(src)]
    return out


def _dilate_axis(m: np.ndarray, radius: int, axis: int) -> np.ndarray:
    """1-D binary dilation by a segment of half-width ``radius``, in O(log radius) passes."""
    out = m
    reach, step = 0, 1
    while reach < radius:
        # `out` is the dilation of half-width `reach`; OR-ing it with copies shifted by s <= 2*reach+1
        # gives the dilation of half-width reach+s without gaps.
        s = min(step, radius - reach)
        out = out | _shift(out, s, axis) | _shift(out, -s, axis)
        reach += s
        step *= 2
    return out


def dilate_mask(mask: np.ndarray, radius: int, kernel: str = "square") -> np.ndarray:
    """Grow a boolean mask by ``radius`` pixels with a ``square`` or ``cross`` structuring element."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise InputError(f"a mask must be 2-D (H, W), got shape {m.shape}")
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or radius < 0:
        raise InputError(f"dilation radius must be a non-negative integer, got {radius!r}")
    if radius == 0:
        return m.copy()
    if kernel == "square":
        return _dilate_axis(_dilate_axis(m, int(radius), 0), int(radius), 1)
    if kernel == "cross":
        return _dilate_axis(m, int(radius), 0) | _dilate_axis(m, int(radius), 1)
    raise InputError(f"unknown dilation kernel {kernel!r}; expected 'square' or 'cross'")


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right) of a boolean mask's bounding box, bottom/right exclusive; None if empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def labels_mask(labels: np.ndarray, label_set: Iterable[int]) -> np.ndarray:
    """Boolean mask of the pixels whose label is in ``label_set``."""
    labels = _check_label_map(labels)
    ids = sorted({int(i) for i in label_set})
    if labels.dtype == np.uint8:
        lut = np.zeros(256, dtype=bool)
        lut[[i for i in ids if 0 <= i < 256]] = True
        return lut[labels]
    return np.isin(labels, ids)


def clothes_mask(
    labels: np.ndarray,
    label_set: Iterable[int] = CLOTHES_LABELS,
    dilate: int = 0,
    kernel: str = "square",
) -> np.ndarray:
    """Boolean (H, W) mask of the clothes pixels of a LIP label map, optionally dilated.

    ``dilate`` grows the mask by that many pixels (``kernel`` ``"square"`` or ``"cross"``), which
    gives an inpainting model some room around the garment edges.
    """
    mask = labels_mask(labels, label_set)
    return dilate_mask(mask, dilate, kernel) if dilate else mask


def part_masks(labels: np.ndarray, dilate: int = 0) -> dict[str, np.ndarray]:
    """One boolean mask per garment part of :data:`BODY_PARTS` (``upper``, ``lower``, ``footwear``)."""
    return {part: clothes_mask(labels, ids, dilate=dilate) for part, ids in BODY_PARTS.items()}

__all__ = [
    "ACCESSORY_LABELS",
    "ATR_LABELS",
    "ATR_TO_LIP",
    "BACKGROUND",
    "BODY_PARTS",
    "CIHP_LABELS",
    "CIHP_TO_LIP",
    "CLOTHES_LABELS",
    "COAT",
    "DRESS",
    "FACE",
    "GLOVE",
    "HAIR",
    "HAT",
    "JUMPSUITS",
    "LABEL_TABLES",
    "LEFT_ARM",
    "LEFT_LEG",
    "LEFT_SHOE",
    "LIP_LABELS",
    "LIP_TO_LIP",
    "NUM_LIP_LABELS",
    "PANTS",
    "PASCAL_LABELS",
    "RIGHT_ARM",
    "RIGHT_LEG",
    "RIGHT_SHOE",
    "SCARF",
    "SKIRT",
    "SOCKS",
    "SUNGLASSES",
    "UPPER_CLOTHES",
    "clothes_mask",
    "dilate_mask",
    "label_table",
    "labels_mask",
    "map_labels",
    "mask_bbox",
    "part_masks",
]
