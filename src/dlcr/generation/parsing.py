"""Human parsing: the parser interface and the masks stage's driver (:func:`parse_dataset`).

Every parser turns an RGB image into a label map of LIP ids (uint8, same height and width as the
image). The LIP label scheme (label ids and names, the clothes label set, the body parts, the ATR /
CIHP id tables) and the mask helpers (``clothes_mask``, ``part_masks``, ``labels_mask``, ``mask_bbox``)
are defined once, in :mod:`dlcr.lip`, and the mapping of other segmenters' class names to LIP ids
(:func:`~dlcr.generation.label_schemes.lip_table_for_labels`) in :mod:`dlcr.generation.label_schemes`;
import them from there.

:class:`HumanParser` is the interface of the backends. The backends and their registry
(``PARSERS``, ``create_parser``) are :mod:`dlcr.generation.parsers`: ``schp`` (SCHP ResNet-101
loading the official LIP, ATR or Pascal-Person-Part checkpoint), ``hf`` (any transformers
semantic-segmentation checkpoint), ``folder`` (precomputed label maps), ``synthcc`` (the synthetic
world's ground truth) and ``pose`` (mediapipe's bundled pose and person-segmentation models -> LIP
labels by body geometry; real photos offline). The model backends import torch / transformers only
when created.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from dlcr.errors import ConfigError, DlcrError, InputError, examples_note
from dlcr.io.atomic import remove_stale_temps
from dlcr.io.images import read_label_map, read_rgb, write_png
from dlcr.io.parts_table import PartsTable
from dlcr.io.paths import safe_join
from dlcr.lip import CLOTHES_LABELS, NUM_LIP_LABELS, labels_mask
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track_batches

log = get_logger(__name__)

# --------------------------------------------------------------------------------------------
# Parser interface
# --------------------------------------------------------------------------------------------


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
        eg = examples_note(self.empty_paths, examples)
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


def masks_table(out: str | os.PathLike) -> PartsTable:
    """``out/masks.parquet``, committed batch by batch in ``out/.masks.parts/``
    (:class:`~dlcr.io.parts_table.PartsTable`; one writer; an unreadable file is ignored with a
    warning and its rows are rebuilt from the label maps)."""
    return PartsTable(out, MASKS_TABLE, MASKS_SCHEMA, "path", on_damage="skip")


def _old_records(out: Path) -> dict[str, MaskRecord]:
    """The records committed in ``out`` (table and parts) by earlier, possibly killed, runs."""
    return {k: MaskRecord(**r) for k, r in masks_table(out).load().items()}


def _label_maps(out: Path) -> list[Path]:
    return [p for p in out.rglob("*.png") if p.is_file()] if out.is_dir() else []


def _remove_masks(out: Path) -> None:
    """Delete the label maps and the table of a masks folder (``overwrite``), and emptied folders."""
    for p in _label_maps(out):
        p.unlink()
    masks_table(out).remove()
    for d in sorted((q for q in out.rglob("*") if q.is_dir()), key=lambda q: len(q.parts), reverse=True):
        if not any(d.iterdir()):
            d.rmdir()


def _check_masks_signature(out: Path, signature: Mapping[str, Any], overwrite: bool) -> int:
    """Check the masks stage's ``signature`` against ``out``'s; how many label maps it replaced."""
    from dlcr.generation.signature_record import check_signature, signature_file

    committed = len(_label_maps(out))
    state = check_signature(signature_file(out), signature, what="label maps", committed=committed,
                            overwrite=overwrite, remove=lambda: _remove_masks(out))
    return committed if state == "overwritten" else 0


def _label_targets(image_paths: Iterable[str], root: Path, out: Path) -> tuple[list[str], dict[str, Path]]:
    """The distinct image paths (``/``-separated, in order) and their label map paths under ``out``;
    an escaping path or two images sharing a label map is an :class:`InputError` before any work."""
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
    return paths, targets


def _parse_pending(
    parser: HumanParser,
    pending: list[str],
    root: Path,
    targets: Mapping[str, Path],
    bs: int,
    label_ids: frozenset[int],
    records: dict[str, MaskRecord],
    table: PartsTable | None,
) -> None:
    """Parse ``pending`` in batches of ``bs``, write each label map and record it in ``records``;
    every batch's records are committed to ``table`` (if any) once its label maps are written."""
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
        if table is not None:
            table.write_part([asdict(records[p]) for p in chunk])


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
    so that later stages skip them. The counts are committed after every batch (parts in
    ``out_dir/.masks.parts/``, merged into the table at the end), so a killed run's counts are
    reused; a label map without a count (a folder of an older version) is read again.

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
    replaced = _check_masks_signature(out, signature, overwrite) if signature is not None else 0
    paths, targets = _label_targets(image_paths, root, out)

    table = masks_table(out)
    # rows of an earlier run are reused for label maps already on disk (their pixel counts are only
    # valid for the default clothes label set; another set re-reads the maps)
    old = _old_records(out) if label_ids == CLOTHES_LABELS else {}
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
    # only counts of the default label set are reused by a resumed run, so only they are committed
    _parse_pending(parser, pending, root, targets, bs, label_ids, records,
                   table if label_ids == CLOTHES_LABELS else None)

    rows = [records[p] for p in paths]
    # keep rows of earlier runs for images not asked for this time (a run over one split must not
    # drop what another split's run recorded)
    rows += [r for k, r in old.items() if k not in records and label_path(out, k).is_file()]
    table.consolidate(rows=[asdict(r) for r in rows])
    table_path = table.path

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


__all__ = ["MASKS_SCHEMA", "MASKS_TABLE", "HumanParser", "MaskRecord", "ParseReport", "label_path", "parse_dataset"]
