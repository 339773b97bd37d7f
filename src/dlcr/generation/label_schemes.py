"""Segmenters' class names -> LIP ids: the name tables and the matching used by the parser backends.

A semantic-segmentation checkpoint names its classes (``config.id2label``); :func:`lip_table_for_labels`
maps them to LIP ids (:mod:`dlcr.lip`) by name: LIP, ATR, CIHP, Fashionpedia
(:data:`FASHIONPEDIA_LABELS`) class names and common garment words, case-, space- and
punctuation-insensitively (:func:`normalize_label_name`, :func:`lip_id_for_name`);
``generate.parser_label_map`` ({name: LIP id}) completes or overrides the mapping. A segmenter
none of whose classes is clothes (e.g. SCHP's Pascal-Person-Part model,
:data:`dlcr.lip.PASCAL_LABELS`) is refused (:func:`require_clothes_classes`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from types import MappingProxyType

import numpy as np

from dlcr.errors import ConfigError
from dlcr.lip import ATR_LABELS, ATR_TO_LIP, CLOTHES_LABELS, LIP_LABELS, NUM_LIP_LABELS

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

#: LIP id -> the class names (any scheme above and common garment words) that map to it, compared
#: after :func:`normalize_label_name`. Garments go to the clothes set (LIP 3-12, 18, 19):
#: tops -> Upper-clothes (5), outerwear -> Coat (7), legwear -> Pants (9), footwear -> Left-shoe (18).
#: Fashionpedia's garment parts and decorations (sleeve, collar, pocket, zipper, ...) lie on a
#: garment and are labelled Upper-clothes (5), so that they stay inside the clothes mask (the
#: part split upper/lower may then be off for a pocket on trousers). Worn items that are not
#: clothes in the paper's sense go to their LIP class (hat 1, sunglasses 4) or to Background
#: (bags, umbrellas, watches: LIP labels them background).
_CLASS_NAMES_BY_LIP: Mapping[int, tuple[str, ...]] = MappingProxyType({
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
    for lip, names in _CLASS_NAMES_BY_LIP.items():
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
    ``_CLASS_NAMES_BY_LIP``), matched case-, space- and punctuation-insensitively, singular or plural.
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


__all__ = [
    "FASHIONPEDIA_LABELS",
    "lip_id_for_name",
    "lip_table_for_labels",
    "normalize_label_name",
    "require_clothes_classes",
]
