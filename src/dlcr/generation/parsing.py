"""Human parsing: LIP label maps, clothes masks, and the common interface of the parser backends.

Every parser turns an RGB image into a label map of LIP ids (uint8, same height and width as the
image). The label vocabulary, the clothes label set and the per-garment groups are defined here
once; later stages (describer, inpainting backends) import them from this module.

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
``Background`` (0), since a carried bag is not clothing and must not be repainted.

Segmenters with other label sets are mapped by class name (:func:`lip_table_for_labels`): LIP,
ATR, CIHP (:data:`CIHP_LABELS`), Fashionpedia (:data:`FASHIONPEDIA_LABELS`) and common garment
words, case- and punctuation-insensitively; ``generate.parser_label_map`` ({name: LIP id}) completes
or overrides the mapping. A segmenter none of whose classes is clothes (e.g. SCHP's
Pascal-Person-Part model, :data:`PASCAL_LABELS`) is refused (:func:`require_clothes_classes`).

Backends (:data:`PARSERS`, :func:`create_parser`): ``schp`` (SCHP ResNet-101 loading the official
LIP, ATR or Pascal-Person-Part checkpoint), ``hf`` (any transformers semantic-segmentation checkpoint), ``folder`` (precomputed
label maps), ``synthcc`` (the synthetic world's ground truth) and ``pose`` (mediapipe's bundled pose and
person-segmentation models -> LIP labels by body geometry; real photos offline). The model backends live in
:mod:`dlcr.generation.parsers` and import torch / transformers only when created.
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from dlcr.distributed.env import resolve_device  # noqa: F401  (part of this module's API)
from dlcr.errors import ConfigError, DlcrError, InputError
from dlcr.io.atomic import remove_stale_temps
from dlcr.io.images import read_label_map, read_rgb, write_png
from dlcr.io.paths import safe_join
from dlcr.io.tables import read_table, write_table
from dlcr.registry import Registry, lazy_attributes
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

log = get_logger(__name__)

# --------------------------------------------------------------------------------------------
# Label vocabularies
# --------------------------------------------------------------------------------------------

LIP_LABELS: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Glove", "Sunglasses", "Upper-clothes", "Dress", "Coat",
    "Socks", "Pants", "Jumpsuits", "Scarf", "Skirt", "Face", "Left-arm", "Right-arm",
    "Left-leg", "Right-leg", "Left-shoe", "Right-shoe",
)  # fmt: skip
NUM_LIP_LABELS = len(LIP_LABELS)

ATR_LABELS: tuple[str, ...] = (
    "Background", "Hat", "Hair", "Sunglasses", "Upper-clothes", "Skirt", "Pants", "Dress", "Belt",
    "Left-shoe", "Right-shoe", "Face", "Left-leg", "Right-leg", "Left-arm", "Right-arm", "Bag", "Scarf",
)  # fmt: skip

#: Everything a person wears: the pixels that clothes inpainting may change.
CLOTHES_LABELS: frozenset[int] = frozenset({3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 18, 19})
#: Worn items that belong to no garment part.
ACCESSORY_LABELS: frozenset[int] = frozenset({3, 4, 11})
#: Garment parts (``upper``/``lower``/``footwear``, the fields of an outfit description). Dress (6)
#: and jumpsuit (10) are in both ``upper`` and ``lower``.
BODY_PARTS: Mapping[str, frozenset[int]] = MappingProxyType(
    {
        "upper": frozenset({5, 6, 7, 10}),
        "lower": frozenset({6, 9, 10, 12}),
        "footwear": frozenset({8, 18, 19}),
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
# Model label names -> LIP ids (hub segmentation checkpoints, SCHP's datasets)
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
#: Fashionpedia's 46 categories (27 garments and accessories, then 19 garment parts and
#: decorations). Segmenters trained on it have these 46 classes or a background class first (47).
FASHIONPEDIA_LABELS: tuple[str, ...] = (
    "shirt, blouse", "top, t-shirt, sweatshirt", "sweater", "cardigan", "jacket", "vest", "pants",
    "shorts", "skirt", "coat", "dress", "jumpsuit", "cape", "glasses", "hat",
    "headband, head covering, hair accessory", "tie", "glove", "watch", "belt", "leg warmer",
    "tights, stockings", "sock", "shoe", "bag, wallet", "scarf", "umbrella", "hood", "collar",
    "lapel", "epaulette", "sleeve", "pocket", "neckline", "buckle", "zipper", "applique", "bead",
    "bow", "flower", "fringe", "ribbon", "rivet", "ruffle", "sequin", "tassel",
)  # fmt: skip

#: Class names (any scheme above and common garment words) -> LIP id, keyed by
#: :func:`normalize_label_name`. Garments go to the clothes set (LIP 3-12, 18, 19):
#: tops -> Upper-clothes (5), outerwear -> Coat (7), legwear -> Pants (9), footwear -> Left-shoe (18).
#: Fashionpedia's garment parts and decorations (sleeve, collar, pocket, zipper, ...) lie on a
#: garment and are labelled Upper-clothes (5), so that they stay inside the clothes mask (the
#: part split upper/lower may then be off for a pocket on trousers). Worn items that are not
#: clothes in the paper's sense go to their LIP class (hat 1, sunglasses 4) or to Background
#: (bags, umbrellas, watches: LIP labels them background).
_GARMENT_NAMES: Mapping[int, tuple[str, ...]] = MappingProxyType({
    0: ("background", "bg", "unlabeled", "unlabelled", "none", "everything else", "other", "others",
        "bag", "wallet", "purse", "handbag", "backpack", "umbrella", "watch"),
    1: ("hat", "cap", "beanie", "helmet", "headband", "head covering", "hair accessory", "headwear"),
    2: ("hair",),
    3: ("glove", "mitten"),
    4: ("sunglasses", "glasses", "eyeglasses", "eyewear", "spectacles"),
    5: ("upper clothes", "upper clothing", "upper", "upper body", "top", "shirt", "t shirt", "tee",
        "blouse", "sweater", "sweatshirt", "hoodie", "jumper", "pullover", "polo", "tank top",
        "vest", "tie", "hood", "collar", "lapel", "epaulette", "sleeve", "pocket", "neckline",
        "buckle", "zipper", "applique", "bead", "bow", "flower", "fringe", "ribbon", "rivet",
        "ruffle", "sequin", "tassel"),
    6: ("dress", "gown"),
    7: ("coat", "jacket", "cardigan", "blazer", "cape", "outerwear", "parka", "overcoat", "raincoat"),
    8: ("sock", "stockings", "leg warmer"),
    9: ("pants", "trousers", "jeans", "shorts", "leggings", "tights", "lower clothes", "lower",
        "belt"),
    10: ("jumpsuit", "jumpsuits", "overall", "romper", "playsuit"),
    11: ("scarf", "shawl"),
    12: ("skirt",),
    13: ("face", "head"),
    14: ("left arm",),
    15: ("right arm",),
    16: ("left leg",),
    17: ("right leg",),
    18: ("left shoe", "shoe", "footwear", "left foot", "boot", "sneaker", "trainer", "sandal",
         "slipper", "heels"),
    19: ("right shoe", "right foot"),
})  # fmt: skip


def normalize_label_name(name: str) -> str:
    """Lower-case a class name and drop everything but letters and digits (``T-Shirt`` -> ``tshirt``)."""
    return re.sub(r"[^0-9a-z]+", "", str(name).lower())


def _name_index() -> dict[str, int]:
    index: dict[str, int] = {}
    for i, n in enumerate(LIP_LABELS):
        index[normalize_label_name(n)] = i
    for atr_id, n in enumerate(ATR_LABELS):
        index.setdefault(normalize_label_name(n), int(ATR_TO_LIP[atr_id]))
    for lip, names in _GARMENT_NAMES.items():
        for n in names:
            index.setdefault(normalize_label_name(n), lip)
    return index


_NAME_TO_LIP = _name_index()


def _word_forms(key: str) -> Iterator[str]:
    """``key`` and its singular / plural spellings (``shoes`` <-> ``shoe``, ``sunglass`` -> ``sunglasses``)."""
    yield key
    if key.endswith("es"):
        yield key[:-2]
    if key.endswith("s"):
        yield key[:-1]
    yield key + "s"
    yield key + "es"


def lip_id_for_name(name: str) -> int | None:
    """The LIP id of a class name, or None when it names nothing known.

    Known are the LIP, ATR, CIHP, Fashionpedia class names and common garment words (see
    ``_GARMENT_NAMES``), matched case-, space- and punctuation-insensitively, singular or plural.
    A name listing several items (``"shirt, blouse"``, ``"top / t-shirt"``) takes the id of its
    first item that is known.
    """
    candidates = [str(name)] + [p for p in re.split(r"[,;/|]| or ", str(name)) if p.strip()]
    for cand in candidates:
        key = normalize_label_name(cand)
        for form in _word_forms(key):
            if form in _NAME_TO_LIP:
                return _NAME_TO_LIP[form]
    return None


def lip_table_for_labels(
    id2label: Mapping[int | str, str], overrides: Mapping[str, int] | None = None
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Build a lookup table model id -> LIP id from a model's ``id2label``.

    Names are matched with :func:`lip_id_for_name`; ``overrides`` (``generate.parser_label_map``)
    maps model class names (compared after :func:`normalize_label_name`) to LIP ids and wins.
    Returns ``(table, unmapped)``: classes that matched nothing map to 0 (background) and are
    listed in ``unmapped``. An override naming no class of the model raises :class:`ConfigError`.
    """
    try:
        items = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        raise ConfigError("id2label keys must be integer class ids") from None
    if not items or min(items) < 0:
        raise ConfigError("id2label must map non-negative class ids to names")
    by_name: dict[str, list[int]] = {}
    for i, n in items.items():
        by_name.setdefault(normalize_label_name(n), []).append(i)
    table = np.zeros(max(items) + 1, dtype=np.uint8)
    resolved: set[int] = set()
    for key, value in (overrides or {}).items():
        ids = by_name.get(normalize_label_name(key))
        if ids is None:
            raise ConfigError(
                f"label_map names {key!r}, which is not a class of the model; "
                f"its classes are: {', '.join(items[i] for i in sorted(items))}"
            )
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < NUM_LIP_LABELS:
            raise ConfigError(f"label_map[{key!r}] = {value!r} is not a LIP id 0..{NUM_LIP_LABELS - 1}")
        for i in ids:
            table[i] = int(value)
            resolved.add(i)
    unmapped = []
    for i in sorted(items):
        if i in resolved:
            continue
        lip = lip_id_for_name(items[i])
        if lip is None:
            unmapped.append(items[i])
        else:
            table[i] = lip
    return table, tuple(unmapped)


def require_clothes_classes(
    table: np.ndarray, id2label: Mapping[int, str], model: str, hint: str = ""
) -> None:
    """Refuse a parser whose classes map to no clothes label: its every mask would be empty.

    Raises :class:`ConfigError` naming the model's classes and where each went; ``hint`` is
    appended (e.g. what the model is and which model to use instead).
    """
    if any(int(v) in CLOTHES_LABELS for v in np.asarray(table).tolist()):
        return
    names = ", ".join(
        f"{id2label[i]}->{LIP_LABELS[int(table[i])]}" for i in sorted(id2label) if i < len(table)
    )
    raise ConfigError(
        f"segmenter {model} has no clothes class, so every clothes mask would be empty; its labels "
        f"map to LIP as: {names}. {hint + ' ' if hint else ''}Map its clothes classes to LIP ids "
        f"with generate.parser_label_map={{name: lip_id}} (clothes ids: "
        f"{', '.join(str(i) for i in sorted(CLOTHES_LABELS))}; 5 Upper-clothes, 9 Pants, 18 Left-shoe)."
    )


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


# --------------------------------------------------------------------------------------------
# Parser interface
# --------------------------------------------------------------------------------------------


def check_images(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Validate a batch of RGB uint8 (H, W, 3) arrays; raise :class:`InputError` on the first bad one."""
    out = []
    for i, img in enumerate(images):
        a = np.asarray(img)
        if a.dtype != np.uint8 or a.ndim != 3 or a.shape[2] != 3 or a.shape[0] == 0 or a.shape[1] == 0:
            raise InputError(
                f"image {i} must be an RGB uint8 array of shape (H, W, 3), got {a.dtype} {a.shape}"
            )
        out.append(a)
    return out


_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}  # fmt: skip


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """``None``/``"auto"``: float16 on CUDA, float32 elsewhere; else a name from ``_DTYPES``."""
    import torch

    if dtype in (None, "auto"):
        return torch.float16 if device.startswith("cuda") else torch.float32
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(set(_DTYPES)))} or auto")
    return getattr(torch, _DTYPES[key])


def batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def track_batches(items: Sequence[Any], size: int, desc: str) -> Iterator[Sequence[Any]]:
    """``batched(items, size)`` under a progress bar that counts batches."""
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size}")
    return track(batched(items, size), desc=desc, total=(len(items) + size - 1) // size, unit="batch")


class HumanParser(ABC):
    """A human parser: RGB images in, LIP label maps (uint8, same H x W as each image) out.

    Subclasses implement :meth:`parse`, which processes its input in batches of ``batch_size``.
    :meth:`parse_files` reads images given relative to a root folder; backends that work from files
    (precomputed label maps) override it instead.
    """

    name: ClassVar[str] = "parser"
    batch_size: int = 8

    @abstractmethod
    def parse(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Label maps (uint8 LIP ids, (H, W) of each input) for RGB uint8 (H, W, 3) images."""

    def parse_files(self, rel_paths: Sequence[str], root: str | os.PathLike) -> list[np.ndarray]:
        """Label maps for images given as paths relative to ``root``."""
        images = [read_rgb(safe_join(root, p, lexical=True)) for p in rel_paths]
        labels = self.parse(images)
        for p, img, lab in zip(rel_paths, images, labels, strict=True):
            if lab.shape != img.shape[:2]:
                raise DlcrError(
                    f"parser {self.name!r} returned a {lab.shape} label map for {p!r} of size {img.shape[:2]}"
                )
        return labels

    @property
    def description(self) -> str:
        """A short identification of the backend and its model, recorded next to the outputs."""
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"


PARSERS: Registry = Registry("parser")


@PARSERS.register("schp")
def _create_schp(
    checkpoint: str | os.PathLike,
    num_classes: int | None = None,
    input_size: int | None = None,
    label_map: Mapping[str, int] | None = None,
    labels: Sequence[str] | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> HumanParser:
    """SCHP; ``num_classes`` is read from the checkpoint and ``input_size`` follows its dataset when unset."""
    from dlcr.generation.parsers.schp import SCHPParser

    return SCHPParser.from_checkpoint(
        checkpoint,
        num_classes=num_classes,
        input_size=input_size,
        labels=labels,
        label_map=label_map,
        batch_size=batch_size,
        device=device,
    )


PARSERS.register_lazy("hf", "dlcr.generation.parsers.hf_segmentation:HFSegmentationParser")


@PARSERS.register("folder")
def _create_folder(labels_dir: str | os.PathLike, label_set: str = "lip") -> HumanParser:
    from dlcr.generation.parsers.folder import FolderParser

    return FolderParser(labels_dir, label_set=label_set)


@PARSERS.register("synthcc")
def _create_synthcc() -> HumanParser:
    from dlcr.generation.parsers.folder import SynthCCParser

    return SynthCCParser()


@PARSERS.register("pose")
def _create_pose(
    min_detection_confidence: float = 0.5,
    min_visibility: float = 0.5,
    mask_threshold: float = 0.5,
    batch_size: int = 16,
) -> HumanParser:
    from dlcr.generation.parsers.pose import PoseParser

    return PoseParser(
        min_detection_confidence=min_detection_confidence,
        min_visibility=min_visibility,
        mask_threshold=mask_threshold,
        batch_size=batch_size,
    )


def create_parser(name: str, **kwargs: Any) -> HumanParser:
    """Create a parser backend by name (``schp``, ``hf``, ``folder``, ``synthcc``, ``pose``).

    Unknown names and unknown options raise a :class:`DlcrError` that lists what is accepted.
    """
    return PARSERS.create(name, **kwargs)


# lazy access to the backend classes (torch-free import)
__getattr__ = lazy_attributes(__name__, {
    "SCHPParser": "dlcr.generation.parsers.schp",
    "SCHPNet": "dlcr.generation.parsers.schp",
    "HFSegmentationParser": "dlcr.generation.parsers.hf_segmentation",
    "FolderParser": "dlcr.generation.parsers.folder",
    "SynthCCParser": "dlcr.generation.parsers.folder",
    "PoseParser": "dlcr.generation.parsers.pose",
})


# --------------------------------------------------------------------------------------------
# Parsing a dataset
# --------------------------------------------------------------------------------------------

MASKS_TABLE = "masks.parquet"

MASKS_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("clothes_pixels", pa.int64()),
        ("empty", pa.bool_()),
    ]
)


@dataclass(frozen=True)
class MaskRecord:
    """One row of ``masks.parquet``: an image (path relative to the dataset root) and its mask size."""

    path: str
    height: int
    width: int
    clothes_pixels: int
    empty: bool


@dataclass(frozen=True)
class ParseReport:
    """What :func:`parse_dataset` did; ``empty_paths`` are the images later stages must skip."""

    total: int  # distinct images asked for
    done: int  # parsed and written by this run
    skipped_existing: int  # label map already present (an earlier run)
    empty: int  # images whose clothes mask is empty (this run and earlier ones)
    empty_paths: tuple[str, ...]
    table: str  # path of masks.parquet
    parser: str
    fallbacks: int = 0  # images of this run the parser labelled by a fallback (e.g. pose: no pose found)

    replaced: int = 0  # label maps of another signature removed first (``overwrite``)

    def summary(self, examples: int = 3) -> str:
        """One line: the counts and at most ``examples`` of the images with an empty clothes mask."""
        eg = ""
        if self.empty_paths and examples > 0:
            more = len(self.empty_paths) - examples
            eg = " (e.g. " + ", ".join(self.empty_paths[:examples]) + (f", and {more} more" if more > 0 else "") + ")"
        return (
            (f"replaced {self.replaced} label maps made with other settings; " if self.replaced else "")
            + f"{self.total} images: parsed {self.done}, already done {self.skipped_existing}, "
            f"empty clothes mask {self.empty}{eg}"
            + (f", parser fallback {self.fallbacks}" if self.fallbacks else "")
        )


def label_path(labels_dir: str | os.PathLike, rel_path: str) -> Path:
    """Where the label map of image ``rel_path`` lives: ``<labels_dir>/<rel_path with .png suffix>``."""
    rel = PurePosixPath(str(rel_path).replace("\\", "/"))
    if not rel.name or rel.name in (".", ".."):
        raise InputError(f"{rel_path!r} is not an image path")
    return safe_join(labels_dir, rel.with_suffix(".png"))


def _record(path: str, labels: np.ndarray, label_set: Iterable[int]) -> MaskRecord:
    n = int(np.count_nonzero(labels_mask(labels, label_set)))
    h, w = labels.shape
    return MaskRecord(path=path, height=int(h), width=int(w), clothes_pixels=n, empty=n == 0)


def _check_output(parser: HumanParser, path: str, labels: Any) -> np.ndarray:
    if not isinstance(labels, np.ndarray) or labels.dtype != np.uint8 or labels.ndim != 2:
        got = f"{labels.dtype} {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise DlcrError(
            f"parser {parser.name!r} returned {got} for {path!r}; expected a uint8 (H, W) label map"
        )
    if labels.size and int(labels.max()) >= NUM_LIP_LABELS:
        raise DlcrError(
            f"parser {parser.name!r} returned label {int(labels.max())} for {path!r}; LIP ids are 0..{NUM_LIP_LABELS - 1}"
        )
    return labels


def _old_rows(table: Path) -> dict[str, MaskRecord]:
    if not table.is_file():
        return {}
    try:
        rows = read_table(table)
        return {r["path"]: MaskRecord(**{k: r[k] for k in MASKS_SCHEMA.names}) for r in rows}
    except Exception as e:  # a damaged table is rebuilt from the label maps on disk
        log.warning("ignoring unreadable %s (%s); rebuilding it from the label maps", table, e)
        return {}


def _label_maps(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.png") if p.is_file()] if out.is_dir() else []


def _remove_masks(out: Path) -> None:
    """Delete the label maps and the table of a masks folder (``overwrite``), and emptied folders."""
    for p in _label_maps(out):
        p.unlink()
    (out / MASKS_TABLE).unlink(missing_ok=True)
    for d in sorted((q for q in out.rglob("*") if q.is_dir()), key=lambda q: len(q.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def parse_dataset(
    parser: HumanParser,
    image_paths: Iterable[str],
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    batch_size: int | None = None,
    label_set: Iterable[int] = CLOTHES_LABELS,
    signature: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> ParseReport:
    """Parse every image (paths relative to ``root``) into ``out_dir/<rel_path>.png``, resumably.

    Label maps already on disk are kept (a re-run parses only the missing ones). Each image's
    clothes-pixel count is recorded in ``out_dir/masks.parquet`` (path, height, width,
    clothes_pixels, empty); images with an empty clothes mask are counted, logged and flagged there
    so that later stages skip them.

    ``signature`` (the masks stage's, see :func:`dlcr.generation.stages.masks_signature`) is checked
    against ``out_dir/signature.json`` before any work: label maps made with another one are an
    error, or with ``overwrite`` are all removed first. Without a signature nothing is checked.
    """
    root = Path(root)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    bs = int(batch_size or parser.batch_size)
    if bs < 1:
        raise ConfigError(f"batch_size must be at least 1, got {bs}")
    label_ids = frozenset(int(i) for i in label_set)
    replaced = 0
    if signature is not None:
        from dlcr.generation.signature import check_signature, signature_file

        committed = len(_label_maps(out))
        state = check_signature(signature_file(out), signature, what="label maps", committed=committed,
                                overwrite=overwrite, remove=lambda: _remove_masks(out))
        replaced = committed if state == "overwritten" else 0

    paths: list[str] = []
    targets: dict[str, Path] = {}
    owner: dict[Path, str] = {}
    for p in image_paths:
        p = str(p).replace("\\", "/")
        if p in targets:
            continue
        safe_join(root, p, lexical=True)  # refuse escaping paths before any work
        t = label_path(out, p)
        if t in owner:
            raise InputError(f"images {owner[t]!r} and {p!r} would share the label map {t}")
        owner[t] = p
        targets[p] = t
        paths.append(p)

    table_path = out / MASKS_TABLE
    # rows of an earlier run are reused for label maps already on disk (their pixel counts are only
    # valid for the default clothes label set; another set re-reads the maps)
    old = _old_rows(table_path) if label_ids == CLOTHES_LABELS else {}
    records: dict[str, MaskRecord] = {}
    pending: list[str] = []
    for p in paths:
        if targets[p].is_file():
            rec = old.get(p)
            records[p] = rec if rec is not None else _record(p, read_label_map(targets[p]), label_ids)
        else:
            pending.append(p)
    skipped = len(records)

    # backends with a fallback path (``pose``) count its use in ``fallback_count``
    fallbacks_before = int(getattr(parser, "fallback_count", 0) or 0)
    for chunk in track_batches(pending, bs, f"parse [{parser.name}]"):
        outputs = parser.parse_files(list(chunk), root)
        if len(outputs) != len(chunk):
            raise DlcrError(
                f"parser {parser.name!r} returned {len(outputs)} label maps for {len(chunk)} images"
            )
        for p, labels in zip(chunk, outputs, strict=True):
            labels = _check_output(parser, p, labels)
            write_png(targets[p], labels)
            records[p] = _record(p, labels, label_ids)

    rows = [records[p] for p in paths]
    # keep rows of earlier runs for images not asked for this time (a run over one split must not
    # drop what another split's run recorded)
    rows += [r for k, r in old.items() if k not in records and label_path(out, k).is_file()]
    write_table(table_path, rows, schema=MASKS_SCHEMA)

    empty_paths = tuple(r.path for r in rows[: len(paths)] if r.empty)
    if empty_paths:
        log.warning(
            "%d of %d images have an empty clothes mask (e.g. %s); later stages skip them (see %s)",
            len(empty_paths), len(paths), ", ".join(empty_paths[:3]), table_path,
        )  # fmt: skip
    return ParseReport(
        total=len(paths),
        done=len(pending),
        skipped_existing=skipped,
        empty=len(empty_paths),
        empty_paths=empty_paths,
        table=str(table_path),
        parser=parser.description,
        fallbacks=int(getattr(parser, "fallback_count", 0) or 0) - fallbacks_before,
        replaced=replaced,
    )


__all__ = [
    "ACCESSORY_LABELS",
    "ATR_LABELS",
    "ATR_TO_LIP",
    "BODY_PARTS",
    "CIHP_LABELS",
    "CIHP_TO_LIP",
    "CLOTHES_LABELS",
    "FASHIONPEDIA_LABELS",
    "LIP_LABELS",
    "LIP_TO_LIP",
    "MASKS_TABLE",
    "NUM_LIP_LABELS",
    "PARSERS",
    "PASCAL_LABELS",
    "HumanParser",
    "MaskRecord",
    "ParseReport",
    "check_images",
    "clothes_mask",
    "create_parser",
    "dilate_mask",
    "label_path",
    "label_table",
    "labels_mask",
    "lip_id_for_name",
    "lip_table_for_labels",
    "map_labels",
    "normalize_label_name",
    "parse_dataset",
    "part_masks",
    "require_clothes_classes",
    "resolve_device",
]
