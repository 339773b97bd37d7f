"""Import / export of the DLCR released format of generated data.

The released data hold, for every source image of a dataset, in the same relative folder as the
dataset's image:

- ``<image stem>.png``: its K generated variants side by side (a horizontal strip; every tile has
  the source image's size, variant 0 on the left);
- ``<image stem>.txt``: K lines, line ``v`` describing variant ``v``'s target outfit as
  ``upper| lower| footwear``.

``export_released`` writes that layout from a generation output folder (its ``manifest.parquet``);
``import_released`` reads such a folder back into a generation output folder (tiles written as
separate images, records committed and consolidated into ``manifest.parquet``), so released data
can train a model exactly like locally generated data. Every path is checked with ``safe_join``:
``..``, absolute paths and symlinks that leave the root raise :class:`UnsafePathError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from dlcr.errors import DatasetError, ImageError, UnsafePathError
from dlcr.generation.outputs import (
    STATUS_OK,
    GeneratedRecord,
    commit_part,
    consolidate_manifest,
    output_relpath,
    read_manifest,
)
from dlcr.generation.planning import Job, clothes_key_of, job_seed, make_job_id, partition_of
from dlcr.io.atomic import atomic_write_text
from dlcr.io.images import read_rgb, write_png
from dlcr.io.paths import safe_join
from dlcr.types import Outfit, Sample
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

log = get_logger(__name__)

SEP = "| "
RELEASED_BACKEND = "released"


def describe_line(upper: str, lower: str, footwear: str) -> str:
    """One txt line: ``upper| lower| footwear`` (no line breaks or '|' inside a field)."""
    clean = [" ".join(str(x).replace("|", "/").split()) for x in (upper, lower, footwear)]
    return SEP.join(clean)


def parse_line(line: str) -> tuple[str, str, str]:
    """Inverse of :func:`describe_line`; missing fields are empty strings."""
    fields = [f.strip() for f in line.rstrip("\r\n").split("|")]
    fields += [""] * (3 - len(fields))
    if len(fields) > 3:  # extra separators belong to the last field
        fields = fields[:2] + ["|".join(fields[2:])]
    return fields[0], fields[1], fields[2]


def parts_from_prompt(prompt: str) -> tuple[str, str, str]:
    """Best-effort (upper, lower, footwear) of a prompt made by ``Outfit.prompt``."""
    text = prompt.strip()
    prefix = "a person wearing "
    if text.lower().startswith(prefix):
        text = text[len(prefix) :]
    elif text.lower() == "a person":
        text = ""
    parts = [p.strip() for p in text.split(",")] if text else []
    if len(parts) > 3:
        parts = parts[:2] + [", ".join(parts[2:])]
    parts += [""] * (3 - len(parts))
    return parts[0], parts[1], parts[2]


def _stem(rel: str) -> str:
    p = PurePosixPath(rel.replace("\\", "/"))
    return (p.with_suffix("") if p.suffix else p).as_posix()


def export_released(
    out_dir: str | os.PathLike,
    dest_root: str | os.PathLike,
    *,
    records: Sequence[GeneratedRecord] | None = None,
    outfits: Mapping[str, Outfit] | None = None,
    kind: str = "train",
) -> list[Path]:
    """Write the released layout under ``dest_root`` from the records of generation folder ``out_dir``.

    Records default to ``out_dir/manifest.parquet``; only ``kind`` records are exported. Text lines
    come from ``outfits[target_clothes_key]`` when given, else from splitting the prompt. Returns the
    strip files written.
    """
    out = Path(out_dir)
    recs = [r for r in (read_manifest(out) if records is None else records) if r.kind == kind]
    by_source: dict[str, list[GeneratedRecord]] = {}
    for r in recs:
        by_source.setdefault(r.source, []).append(r)
    written = []
    for source, group in track(sorted(by_source.items()), desc="export released"):
        group = sorted(group, key=lambda r: r.variant)
        stem = _stem(source)
        strip_path = safe_join(dest_root, stem + ".png")
        txt_path = safe_join(dest_root, stem + ".txt")
        tiles = [read_rgb(safe_join(out, r.file)) for r in group]
        if len({t.shape for t in tiles}) != 1:
            raise ImageError(
                f"variants of {source!r} have different sizes {sorted({t.shape for t in tiles})}"
            )
        lines = []
        for r in group:
            o = outfits.get(r.target_clothes_key) if outfits else None
            lines.append(
                describe_line(o.upper, o.lower, o.footwear)
                if o
                else describe_line(*parts_from_prompt(r.prompt))
            )
        write_png(strip_path, np.concatenate(tiles, axis=1))
        atomic_write_text(txt_path, "\n".join(lines) + "\n")
        written.append(strip_path)
    return written


def find_pairs(src_root: str | os.PathLike, trust_root: str | os.PathLike | None = None) -> list[str]:
    """Relative POSIX paths of strip PNGs under ``src_root`` that have a sibling txt (symlinked folders
    are not followed; one that resolves outside ``trust_root``, default ``src_root``, is an error)."""
    src = Path(src_root)
    check = _checker(src, trust_root)
    rels = []
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        for d in dirnames:  # symlinked folders are not followed, but one leaving the root is an error
            check(Path(dirpath, d).relative_to(src).as_posix())
        names = set(filenames)
        for name in filenames:
            if name.lower().endswith(".png") and name[:-4] + ".txt" in names:
                rels.append(Path(dirpath, name).relative_to(src).as_posix())
    return sorted(rels)


def _checker(src: Path, trust_root: str | os.PathLike | None) -> Callable[[str], Path]:
    """``rel`` under ``src`` -> its resolved path, refused (:class:`UnsafePathError`) when it leaves
    ``trust_root`` (default ``src``). A hub snapshot's files are links into the cache's ``blobs/``
    folder beside the snapshot, so its trust root is the cached repository's folder."""
    if trust_root is None:
        return lambda rel: safe_join(src, rel)
    trust = Path(trust_root).resolve()
    try:
        prefix = src.resolve().relative_to(trust).as_posix()
    except ValueError:
        raise UnsafePathError(f"released data folder {src} is not inside {trust}") from None
    return lambda rel: safe_join(trust, rel if prefix == "." else f"{prefix}/{rel}")


def match_samples(rels: Sequence[str], samples: Sequence[Sample]) -> dict[str, Sample]:
    """The sample each released strip (relative path) stands for, matched by path without extension.

    A strip whose whole path is no sample's is matched by its longest trailing part (``001/A_x``)
    that ends exactly one sample's path: released folders mirror the dataset's own, but may sit under
    another prefix (``PRCC/train/...`` for ``prcc/rgb/train/...``). A trailing part shared by several
    samples, or a sample claimed by two strips, leaves the strip unmatched.
    """
    exact = {_stem(s.path): s for s in samples}
    by_tail: dict[tuple[str, ...], list[Sample]] = {}
    for s in samples:
        parts = tuple(_stem(s.path).split("/"))
        for k in range(1, len(parts) + 1):
            by_tail.setdefault(parts[-k:], []).append(s)
    found: dict[str, Sample] = {}
    for rel in rels:
        stem = _stem(rel)
        if stem in exact:
            found[rel] = exact[stem]
            continue
        parts = tuple(stem.split("/"))
        cands = next((c for k in range(len(parts), 0, -1) if (c := by_tail.get(parts[-k:]))), [])
        if len(cands) == 1:
            found[rel] = cands[0]
    claimed: dict[str, int] = {}
    for s in found.values():
        claimed[s.path] = claimed.get(s.path, 0) + 1
    return {rel: s for rel, s in found.items() if claimed[s.path] == 1}


def _variant_job(line: str, v: int, k: int, *, dataset: str, source: str, sample: Sample | None,
                 num_partitions: int, generator: str) -> Job:
    """The job variant ``v`` of ``k`` of a released strip stands for (txt line ``line``)."""
    upper, lower, footwear = parse_line(line)
    jid = make_job_id(dataset, source, "", v, generator, 0)
    return Job(
        job_id=jid,
        kind="train",
        dataset=dataset,
        source=source,
        source_clothes_key=clothes_key_of(sample) if sample else "",
        pid=int(sample.pid) if sample else -1,
        target_clothes_key="",
        variant=v,
        partition=partition_of(v, k, num_partitions),
        prompt=Outfit("", upper, lower, footwear).prompt,
        seed=job_seed(0, jid),
        generator=generator,
    )


def import_released(
    src_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    dataset: str = "",
    samples: Sequence[Sample] | None = None,
    num_partitions: int = 4,
    generator: str = RELEASED_BACKEND,
    trust_root: str | os.PathLike | None = None,
) -> list[GeneratedRecord]:
    """Read released strips + txt files under ``src_root`` into the generation folder ``out_dir``.

    With ``samples``, each strip is matched to its sample by :func:`match_samples` (its real path,
    person id and clothes key are used; strips without a sample are skipped with a warning);
    without, the strip's own relative path stands for the source and ``pid`` is -1. The number of
    variants K is the number of non-empty txt lines; the strip width must be K times the tile width.
    Every file must resolve inside ``trust_root`` (default ``src_root``; see :func:`find_pairs`).
    Returns the imported records (also consolidated into ``out_dir/manifest.parquet``).
    """
    src = Path(src_root)
    if not src.is_dir():
        raise DatasetError(f"released data folder not found: {src}")
    check = _checker(src, trust_root)
    out = Path(out_dir)
    records: list[GeneratedRecord] = []
    unmatched = 0
    # refuse a crafted archive (a member symlinked out of the root) before writing anything
    pairs = [(rel, check(rel), check(rel[:-4] + ".txt")) for rel in find_pairs(src, trust_root)]
    matched = match_samples([rel for rel, _, _ in pairs], samples) if samples is not None else None
    for rel, strip_path, txt_path in track(pairs, desc="import released"):
        sample = None
        if matched is not None:
            sample = matched.get(rel)
            if sample is None:
                unmatched += 1
                continue
        lines = [ln for ln in txt_path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if not lines:
            raise DatasetError(f"{txt_path} has no description lines")
        strip = read_rgb(strip_path)
        k = len(lines)
        h, w = strip.shape[:2]
        if w % k:
            raise ImageError(f"{strip_path}: width {w} is not a multiple of its {k} variants (txt lines)")
        tw = w // k
        source = sample.path if sample else rel
        rows = []
        for v, line in enumerate(lines):
            job = _variant_job(line, v, k, dataset=dataset, source=source, sample=sample,
                               num_partitions=num_partitions, generator=generator)
            file = output_relpath(job)
            write_png(safe_join(out, file), np.ascontiguousarray(strip[:, v * tw : (v + 1) * tw]))
            rec = GeneratedRecord.from_job(
                job, file=file, width=tw, height=h, backend=RELEASED_BACKEND, model=f"released:{src.name}"
            )
            records.append(rec)
            rows.append({**rec.to_dict(), "status": STATUS_OK})
        commit_part(out, rows)
    if unmatched:
        log.warning("%d released strip(s) match no sample and were skipped", unmatched)
    consolidate_manifest(out)
    return records
