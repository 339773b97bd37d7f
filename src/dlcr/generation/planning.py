"""Planning of the inpainting jobs: which target outfit each generated image gets.

For every training image, ``plan_jobs`` draws ``k`` target clothes ids uniformly *without
replacement* from the other clothes ids of the training set (never the image's own outfit; by
default never another outfit of the same person either). Variant ``v`` of an image belongs to
progressive partition ``p`` when ``floor(k*p/P) <= v < floor(k*(p+1)/P)`` (P = ``num_partitions``):
consecutive, as equal as possible, with the larger parts last. For k=10 and P=4 the partitions hold
2, 3, 2, 3 variants, so the prefixes 2/5/7/10 of the released schedule line up with them.

Determinism: the random generator of one image is seeded from ``(seed, dataset, source path)``
only, so adding or removing other images or outfits never changes which targets an unaffected image
gets (as long as its own candidate list is unchanged). ``job_id`` is a short SHA-1 of
``(dataset, source, target clothes key, variant, generator, plan seed)``: the same on every run,
machine and execution engine. Each job's own seed (for the diffusion noise / pattern phase) is
derived from the plan seed and the ``job_id``.

Too few candidates (fewer than ``k`` eligible outfits for some image) is an error by default;
``strict=False`` clamps that image's variant count to the candidates available and logs a warning.

``prompt_source="vocabulary"`` (the paper's Table A3 row 1, "random clothing prompts") draws each
target from a fixed garment vocabulary instead of the dataset's described outfits: per variant one
colour (and, one time in three, a pattern) and one garment for each part (upper / lower / footwear),
from :data:`VOCABULARY` (words the ``recolor`` backend parses), seeded per image like the outfit
draw (``image_rng(seed, dataset, "vocabulary:" + source)``). Such a target's clothes key is
``vocab-<sha1 of its prompt>``; a drawn prompt equal to the image's own described outfit, or to another
variant of the same image, is drawn again.

Outfits in which the describer found no garment (an :class:`~dlcr.types.Outfit` with empty
``upper``, ``lower`` and ``footwear``, whose prompt is just "a person") are never drawn as targets:
they would ask the inpainter to paint nothing in particular. A warning counts them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from operator import attrgetter
from typing import Any

import numpy as np
import pyarrow as pa

from dlcr.errors import ConfigError, InputError
from dlcr.io.tables import column_values, read_arrow, write_table
from dlcr.types import Outfit, Sample
from dlcr.utils.logging import get_logger
from dlcr.utils.partitions import partition_of

log = get_logger(__name__)

JOB_KINDS = ("train", "query")
PROMPT_SOURCES = ("dataset", "vocabulary")

#: The random-prompt vocabulary (``prompt_source="vocabulary"``): one synonym per colour, garments
#: per part, patterns; every word is one the ``recolor`` backend parses (tested).
VOCABULARY: dict[str, tuple[str, ...]] = {
    "colour": ("black", "white", "gray", "silver", "red", "maroon", "pink", "orange", "yellow", "gold", "beige",
               "cream", "khaki", "tan", "brown", "olive", "green", "teal", "cyan", "blue", "navy", "purple",
               "lavender"),
    "pattern": ("striped", "checked", "dotted"),
    "upper": ("t-shirt", "shirt", "blouse", "sweater", "hoodie", "jacket", "coat", "cardigan", "polo", "blazer"),
    "lower": ("jeans", "trousers", "shorts", "skirt", "leggings", "chinos", "joggers"),
    "footwear": ("sneakers", "boots", "shoes", "sandals", "loafers"),
}
VOCAB_KEY_PREFIX = "vocab-"


@dataclass(frozen=True)
class Job:
    """One image to generate: a source image repainted with a target outfit."""

    job_id: str
    kind: str  # "train" (data expansion) or "query" (refinement variants)
    dataset: str
    source: str  # image path relative to the dataset root
    source_clothes_key: str
    pid: int
    target_clothes_key: str
    variant: int  # 0..k-1 within its source image
    partition: int  # progressive-learning part, 0..num_partitions-1
    prompt: str  # the target outfit's prompt
    seed: int  # per-job seed (diffusion noise, pattern phase)
    generator: str  # backend name the plan was made for (part of the job id)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Job:
        names = {f.name for f in fields(cls)}
        missing = names - set(row)
        if missing:
            raise InputError(f"job record lacks column(s) {sorted(missing)}")
        return cls(**{n: row[n] for n in names})


def _sha1(*parts: object) -> str:
    h = hashlib.sha1()
    for p in parts:
        h.update(str(p).encode("utf-8"))
        h.update(b"\x1f")  # unit separator: ("ab","c") and ("a","bc") hash differently
    return h.hexdigest()


def make_job_id(
    dataset: str, source: str, target_clothes_key: str, variant: int, generator: str, seed: int
) -> str:
    """Stable 16-hex-digit id of a job (identical across runs, machines and engines)."""
    return _sha1("job", dataset, source, target_clothes_key, int(variant), generator, int(seed))[:16]


def job_seed(plan_seed: int, job_id: str) -> int:
    """The per-job seed, a non-negative 31-bit integer derived from the plan seed and the job id."""
    return int(_sha1("seed", int(plan_seed), job_id)[:8], 16) & 0x7FFFFFFF


def image_rng(seed: int, dataset: str, source: str) -> np.random.Generator:
    """The random generator used to draw one image's targets."""
    digest = _sha1("rng", dataset, source)
    words = [int(digest[i : i + 8], 16) for i in range(0, 32, 8)]
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *words]))


def clothes_key_of(sample: Sample) -> str:
    """A sample's clothes key (its ``clothes_key``, else its ``clothes_id`` as a string)."""
    return sample.clothes_key or str(sample.clothes_id)


def prompt_of(outfit: str | Outfit) -> str:
    return outfit.prompt if isinstance(outfit, Outfit) else str(outfit)


NO_GARMENT_PROMPT = Outfit("", "", "", "").prompt  # "a person"


def has_garment(outfit: str | Outfit) -> bool:
    """Whether an outfit names at least one garment (a bare "a person" prompt does not)."""
    if isinstance(outfit, Outfit):
        return bool(outfit.upper or outfit.lower or outfit.footwear)
    return str(outfit).strip() not in ("", NO_GARMENT_PROMPT)


def target_keys(outfits: Mapping[str, str | Outfit]) -> list[str]:
    """The outfit keys that may be drawn as targets (sorted): those that name a garment."""
    keys = sorted(outfits)
    bare = [k for k in keys if not has_garment(outfits[k])]
    if bare:
        log.warning(
            "%d of %d outfits name no garment (prompt %r, e.g. clothes id %s); they are not used as targets",
            len(bare), len(keys), NO_GARMENT_PROMPT, ", ".join(bare[:3]),
        )  # fmt: skip
    return [k for k in keys if has_garment(outfits[k])]


def _check_common(k: int, outfits: Mapping[str, str | Outfit]) -> list[str]:
    if k < 1:
        raise ConfigError(f"the number of variants per image must be >= 1, got {k}")
    if not outfits:
        raise InputError("no outfits to draw target clothes from (is outfits.parquet empty?)")
    keys = target_keys(outfits)
    if not keys:
        raise InputError(
            f"none of the {len(outfits)} outfits names a garment (all prompts are {NO_GARMENT_PROMPT!r}); "
            "check the describe stage's captions"
        )
    return keys


def _once(samples: Iterable[Sample], what: str) -> Iterator[Sample]:
    """The samples in order; an image listed twice is an :class:`InputError` when it is reached."""
    seen: set[str] = set()
    for s in samples:
        if s.path in seen:
            raise InputError(f"image {s.path!r} is listed twice in the {what}")
        seen.add(s.path)
        yield s


def _draw(
    rng: np.random.Generator, candidates: Sequence[str], k: int, source: str, strict: bool
) -> list[str]:
    if len(candidates) < k:
        if strict:
            raise InputError(
                f"image {source!r} has only {len(candidates)} eligible target outfit(s) but k={k}; "
                "lower k, allow the same person's outfits, or plan with strict=False to clamp"
            )
        log.warning(
            "image %s: only %d eligible target outfits, using %d variants instead of %d",
            source,
            len(candidates),
            len(candidates),
            k,
        )
        k = len(candidates)
    idx = rng.choice(len(candidates), size=k, replace=False)
    return [candidates[i] for i in idx]


def vocabulary_prompt(rng: np.random.Generator) -> str:
    """One random outfit prompt from :data:`VOCABULARY` (a colour, sometimes a pattern, and a garment
    per part), e.g. ``"a person wearing red striped hoodie, navy jeans, white sneakers"``."""
    phrases = []
    for part in ("upper", "lower", "footwear"):
        words = [str(rng.choice(VOCABULARY["colour"]))]
        if part != "footwear" and rng.random() < 1 / 3:
            words.append(str(rng.choice(VOCABULARY["pattern"])))
        words.append(str(rng.choice(VOCABULARY[part])))
        phrases.append(" ".join(words))
    return "a person wearing " + ", ".join(phrases)


def vocabulary_key(prompt: str) -> str:
    """The clothes key of a vocabulary target: ``vocab-`` + 12 hex digits of its prompt's SHA-1."""
    return VOCAB_KEY_PREFIX + _sha1("vocab", prompt)[:12]


def _draw_vocabulary(rng: np.random.Generator, k: int, own_prompt: str | None) -> dict[str, str]:
    """``k`` distinct vocabulary prompts (key -> prompt), none equal to ``own_prompt``."""
    out: dict[str, str] = {}
    own = (own_prompt or "").strip().lower()
    for _ in range(1000 * k):
        if len(out) == k:
            break
        prompt = vocabulary_prompt(rng)
        if prompt.lower() == own:
            continue
        out.setdefault(vocabulary_key(prompt), prompt)
    return out


def _make_jobs(
    kind: str,
    sample: Sample,
    targets: list[str],
    outfits: Mapping[str, str | Outfit],
    *,
    seed: int,
    dataset: str,
    generator: str,
    num_partitions: int,
) -> list[Job]:
    out = []
    for v, key in enumerate(targets):
        jid = make_job_id(dataset, sample.path, key, v, generator, seed)
        out.append(
            Job(
                job_id=jid,
                kind=kind,
                dataset=dataset,
                source=sample.path,
                source_clothes_key=clothes_key_of(sample),
                pid=int(sample.pid),
                target_clothes_key=key,
                variant=v,
                partition=partition_of(v, len(targets), num_partitions) if kind == "train" else 0,
                prompt=prompt_of(outfits[key]),
                seed=job_seed(seed, jid),
                generator=generator,
            )
        )
    return out


def plan_jobs(
    samples: Iterable[Sample],
    outfits: Mapping[str, str | Outfit],
    *,
    k: int = 10,
    seed: int = 0,
    allow_same_person: bool = False,
    num_partitions: int = 4,
    dataset: str = "",
    generator: str = "recolor",
    strict: bool = True,
    prompt_source: str = "dataset",
) -> list[Job]:
    """Plan ``k`` inpainting jobs per training image (see the module docstring for the rules).

    ``outfits`` maps clothes key -> prompt (or :class:`Outfit`); the candidate targets of an image
    are the outfit keys other than its own, minus the keys worn by the same person in ``samples``
    unless ``allow_same_person``, and minus the outfits that name no garment. Returns the jobs in
    sample order, variants in order. ``prompt_source="vocabulary"`` draws the targets from
    :data:`VOCABULARY` instead (``outfits`` then only names each image's own outfit, never drawn).
    """
    samples = list(samples)
    if prompt_source not in PROMPT_SOURCES:
        raise ConfigError(f"unknown prompt source {prompt_source!r}; known: {', '.join(PROMPT_SOURCES)}")
    if prompt_source == "vocabulary":
        return _plan_vocabulary(samples, outfits, k=k, seed=seed, num_partitions=num_partitions, dataset=dataset,
                                generator=generator)
    keys = _check_common(k, outfits)
    worn_by: dict[int, set[str]] = {}
    for s in samples:
        worn_by.setdefault(int(s.pid), set()).add(clothes_key_of(s))
    jobs: list[Job] = []
    for s in _once(samples, "samples"):
        own = clothes_key_of(s)
        banned = {own} if allow_same_person else worn_by[int(s.pid)] | {own}
        candidates = [c for c in keys if c not in banned]
        targets = _draw(image_rng(seed, dataset, s.path), candidates, k, s.path, strict)
        jobs.extend(
            _make_jobs(
                "train",
                s,
                targets,
                outfits,
                seed=seed,
                dataset=dataset,
                generator=generator,
                num_partitions=num_partitions,
            )
        )
    return jobs


def _plan_vocabulary(samples: list[Sample], outfits: Mapping[str, str | Outfit], *, k: int, seed: int,
                     num_partitions: int, dataset: str, generator: str) -> list[Job]:
    if k < 1:
        raise ConfigError(f"the number of variants per image must be >= 1, got {k}")
    jobs: list[Job] = []
    for s in _once(samples, "samples"):
        own = outfits.get(clothes_key_of(s))
        drawn = _draw_vocabulary(image_rng(seed, dataset, "vocabulary:" + s.path), k,
                                 prompt_of(own) if own is not None else None)
        jobs.extend(_make_jobs("train", s, list(drawn), drawn, seed=seed, dataset=dataset, generator=generator,
                               num_partitions=num_partitions))
    return jobs


def plan_query_jobs(
    query_samples: Iterable[Sample],
    outfits: Mapping[str, str | Outfit],
    *,
    l: int = 6,  # noqa: E741 - the paper's name
    seed: int = 0,
    dataset: str = "",
    generator: str = "recolor",
    strict: bool = True,
) -> list[Job]:
    """Plan ``l`` clothes-changed variants per query image for prediction refinement.

    Targets are drawn (uniformly, without replacement) from ``outfits``, which should be the
    TRAINING outfits; a query's own clothes key is excluded if it happens to be among them. The
    query jobs have ``kind="query"`` and partition 0.
    """
    keys = _check_common(l, outfits)
    jobs: list[Job] = []
    for s in _once(query_samples, "query samples"):
        own = clothes_key_of(s)
        candidates = [c for c in keys if c != own]
        targets = _draw(image_rng(seed, dataset, "query:" + s.path), candidates, l, s.path, strict)
        jobs.extend(
            _make_jobs(
                "query",
                s,
                targets,
                outfits,
                seed=seed,
                dataset=dataset,
                generator=generator,
                num_partitions=1,
            )
        )
    return jobs


def write_jobs(path: str | os.PathLike, jobs: Iterable[Job]) -> None:
    """Write jobs to a Parquet table (``jobs.parquet``), atomically."""
    jobs = list(jobs)
    ids = [j.job_id for j in jobs]
    if len(set(ids)) != len(ids):
        raise InputError("duplicate job ids in the plan")
    if not jobs:
        write_table(path, [])
        return
    # column-wise: the same table as one dict per job (types inferred per column), built faster
    write_table(path, pa.Table.from_pydict({f.name: list(map(attrgetter(f.name), jobs)) for f in fields(Job)}))


def read_jobs(path: str | os.PathLike) -> list[Job]:
    """The jobs of a table written by :func:`write_jobs` (read column-wise; equal strings are shared)."""
    table = read_arrow(path)
    if not table.num_rows:
        return []
    names = [f.name for f in fields(Job)]
    missing = set(names) - set(table.column_names)
    if missing:
        raise InputError(f"job record lacks column(s) {sorted(missing)}")
    return [Job(*row) for row in zip(*(column_values(table.column(n)) for n in names), strict=True)]
