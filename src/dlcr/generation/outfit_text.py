"""Outfit text: free text (captions, prompts, LLM answers) -> per-part garment phrases -> one outfit.

The description stage (:mod:`dlcr.generation.describe`) keeps, per body part (upper / lower /
footwear), the most frequent garment phrase over the images of one clothes id. The text side of
that lives here, shared by every summariser: :func:`clean_generated_text` (model output made safe
to store and parse), :func:`split_outfit_text` (one text -> ``{part: phrase}``), :func:`vote_parts`
(the per-part majority) and :func:`outfit_from_texts` (both, into an :class:`~dlcr.types.Outfit`;
the ``vote`` summariser and the ``hf`` one's answers use it). The paper's two prompts
(:data:`DEFAULT_CAPTION_PROMPT`, :data:`DEFAULT_SUMMARY_PROMPT`) are the model backends' defaults.
The words come from :mod:`dlcr.vocabulary`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

from dlcr.types import Outfit
from dlcr.vocabulary import COLOURS, GARMENT_WORDS_BY_PART, MODIFIERS, NOT_GARMENTS, PARTS, PATTERNS

DEFAULT_CAPTION_PROMPT = "What clothes is the person wearing?"
DEFAULT_SUMMARY_PROMPT = "Extract the clothing items from the following text: "

# --------------------------------------------------------------------------------------------
# Splitting free text into per-part phrases
# --------------------------------------------------------------------------------------------

_COLOUR_WORDS = frozenset(COLOURS) | frozenset(MODIFIERS) | frozenset(PATTERNS)
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")
# leading words that carry no description ("and a pair of", "the person is wearing", ...)
_FILLER = re.compile(
    r"^(?:(?:and|also|plus|with|a|an|the|some|one|two|pair|pairs|of|is|are|wearing|wears|"
    r"he|she|they|person|man|woman|it|has|have|on|in|dressed)\s+)+"
)
# clause and list separators: punctuation, line breaks, bullets and list numbers
_SEPARATORS = re.compile(r"[\n\r,;:.!?()\[\]\"•]+|(?:^|\s)[-*](?=\s)|\b\d+[.)]")
_CONJUNCTION = re.compile(r"\s+(?:and|&|plus|as well as|along with|paired with|together with)\s+")
_CANONICAL = (("grey", "gray"), ("tshirt", "t-shirt"), ("t shirt", "t-shirt"), ("tee shirt", "t-shirt"))


# line breaks of every kind, then characters that carry no text: other control and format characters,
# U+FFFD (what a byte-level tokenizer decodes a cut multi-byte character to), private use, unassigned
_LINE_BREAKS = re.compile(r"\r\n|[\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_HORIZONTAL_SPACE = re.compile(r"[^\S\n]+")
_LINE_RUNS = re.compile(r" ?\n[ \n]*")


def clean_generated_text(text: str) -> str:
    """Model output made safe to store and parse: every line break becomes ``\\n``; other control
    characters, U+FFFD and private-use / unassigned code points become a space; zero-width and
    other format characters are dropped; runs of spaces become one space and runs of line breaks
    (with the spaces around them) one ``\\n``; the ends are stripped. Line breaks are kept because
    list answers (``"red t-shirt\\nblue jeans"``) are split at them."""
    import unicodedata

    s = _LINE_BREAKS.sub("\n", str(text))
    out = []
    for ch in s:
        if ch == "\n" or ch == "\t":
            out.append(ch)
            continue
        cat = unicodedata.category(ch)
        if cat == "Cf":
            continue
        out.append(" " if cat in ("Cc", "Cs", "Co", "Cn") or ch == "\ufffd" else ch)
    s = _HORIZONTAL_SPACE.sub(" ", "".join(out))
    return _LINE_RUNS.sub("\n", s).strip()


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def garment_part(text: str) -> str | None:
    """The body part of the first garment word in ``text`` (plural forms allowed), or None."""
    for w in _words(text):
        for cand in (w, w[:-1] if w.endswith("s") else w, w[:-2] if w.endswith("es") else w):
            for part in PARTS:
                if cand in GARMENT_WORDS_BY_PART[part]:
                    return part
    return None


def clean_phrase(text: str) -> str:
    """Lower-case, strip filler words in front and punctuation around, canonical spellings."""
    s = " ".join(text.lower().replace("\u2019", "'").split())
    s = s.strip(" -*'\"`")
    s = _FILLER.sub("", s + " ").strip()
    for old, new in _CANONICAL:
        s = re.sub(rf"\b{old}\b", new, s)
    return s


def _phrases(text: str) -> list[str]:
    out: list[str] = []
    for chunk in _SEPARATORS.split(text):
        pieces = [p for p in _CONJUNCTION.split(chunk) if p.strip()]
        current = ""
        for piece in pieces:
            # "A and B" splits only when both name a garment ("red and white shirt" stays whole)
            if current and garment_part(current) and garment_part(piece):
                out.append(current)
                current = piece
            else:
                current = f"{current} and {piece}" if current else piece
        if current.strip():
            out.append(current)
    return [c for c in (clean_phrase(p) for p in out) if c]


def split_outfit_text(text: str) -> dict[str, str]:
    """Per-part garment phrases (``upper``/``lower``/``footwear``) found in free text.

    Works on captions (``"a person wearing a red striped t-shirt, blue pants and white shoes"``),
    prompts and LLM answers (lists, bullets, sentences). The text after the first ``wearing`` is
    used when no garment is named before it. It is split at punctuation, line breaks, bullets, list numbers, and at
    ``and`` / ``plus`` / ``along with``... between two garment phrases. A phrase goes to the part its
    first garment word names; the first phrase of a part wins. A phrase without a garment word but
    with a colour or pattern fills the next free part (upper, lower, footwear), unless it names
    something that is not a garment (hair, bag, background...). Phrases are cleaned with
    :func:`clean_phrase`; parts not mentioned are absent.
    """
    low = text.lower()
    m = re.search(r"\bwear(?:ing|s)\b", low)
    if m and garment_part(low[: m.start()]) is None:  # drop "the person in the image is wearing"
        low = low[m.end() :]
    out: dict[str, str] = {}
    unplaced: list[str] = []
    for phrase in _phrases(low):
        part = garment_part(phrase)
        words = set(_words(phrase))
        if part is None:
            if words & _COLOUR_WORDS and not words & NOT_GARMENTS:
                unplaced.append(phrase)
        elif part not in out:
            out[part] = phrase
    for phrase in unplaced:
        free = [p for p in PARTS if p not in out]
        if not free:
            break
        out[free[0]] = phrase
    return {p: out[p] for p in PARTS if p in out}


# --------------------------------------------------------------------------------------------
# Voting
# --------------------------------------------------------------------------------------------


def vote_parts(parsed: Iterable[Mapping[str, str]]) -> dict[str, str]:
    """The most frequent phrase per part over several parsed captions.

    Captions that do not mention a part do not vote for it; a part no caption mentions is ``""``.
    Ties go to the phrase seen first (in the order of ``parsed``), which is deterministic because
    :func:`~dlcr.generation.describe.describe_dataset` orders each clothes id's captions by image path.
    """
    counts: dict[str, Counter[str]] = {p: Counter() for p in PARTS}
    first: dict[str, dict[str, int]] = {p: {} for p in PARTS}
    for i, parts in enumerate(parsed):
        for part in PARTS:
            phrase = parts.get(part, "")
            if phrase:
                counts[part][phrase] += 1
                first[part].setdefault(phrase, i)
    return {
        part: (min(counts[part], key=lambda s, p=part: (-counts[p][s], first[p][s])) if counts[part] else "")
        for part in PARTS
    }


def outfit_from_texts(clothes_key: str, texts: Iterable[str]) -> Outfit:
    """Split every text with :func:`split_outfit_text` and vote per part."""
    voted = vote_parts(split_outfit_text(t) for t in texts)
    return Outfit(clothes_key, voted["upper"], voted["lower"], voted["footwear"])


__all__ = [
    "DEFAULT_CAPTION_PROMPT",
    "DEFAULT_SUMMARY_PROMPT",
    "clean_generated_text",
    "clean_phrase",
    "garment_part",
    "outfit_from_texts",
    "split_outfit_text",
    "vote_parts",
]
