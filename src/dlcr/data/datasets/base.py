"""What every CC-ReID dataset parser shares.

A parser turns a benchmark's on-disk layout into :class:`~dlcr.types.Sample` lists, one per split,
wrapped in a :class:`CCReIDDataset`. Rules common to all parsers:

- ids are read from the *file name* (or, where the benchmark stores them there, the immediate
  folder name or its list file), never from the whole path, so a root such as ``/data/run_c3``
  cannot leak into a camera id;
- the training split is relabelled to 0..N-1 (persons and outfits in sorted order of their
  original ids / keys) because classifiers need dense labels;
- test splits keep the benchmark's person ids, and their clothes ids are relabelled over all the
  splits of one evaluation together, so a query and a gallery image of the same outfit share a
  clothes id (the CC and SC rules compare them);
- a file that breaks the naming pattern stops the parse (``strict=True``) or is skipped, counted
  and reported in one warning; nothing is dropped silently.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import numpy as np
import pyarrow as pa

from dlcr.data.datasets.files import Rejects
from dlcr.errors import DatasetError, ImageError
from dlcr.io.tables import write_table
from dlcr.registry import Registry
from dlcr.types import EvalProtocol, Sample
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

T = TypeVar("T")

log = get_logger("dlcr.data.datasets")

#: name -> factory ``(root, *, strict=True, check_images=False, **options) -> CCReIDDataset``
DATASETS: Registry = Registry("dataset")

#: query -> gallery under the three rules of docs/design.md §8 (LTCC, VC-Clothes, CCVID, synthcc, custom)
STANDARD_SC_CC: tuple[EvalProtocol, ...] = (
    EvalProtocol("standard", "query", "gallery", "standard"),
    EvalProtocol("sc", "query", "gallery", "SC"),
    EvalProtocol("cc", "query", "gallery", "CC"),
)
STANDARD_ONLY: tuple[EvalProtocol, ...] = (EvalProtocol("standard", "query", "gallery", "standard"),)


@dataclass(frozen=True)
class Record:
    """One parsed image or tracklet before relabelling: original person id, outfit as a key."""

    path: str  # relative to the dataset root, posix
    pid: int
    camid: int
    clothes_key: str
    tracklet: int = -1
    frames: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class CCReIDDataset:
    """A parsed benchmark: samples per split plus the evaluation protocols that use them."""

    name: str
    root: Path
    splits: dict[str, list[Sample]]
    video: bool = False
    protocols: tuple[EvalProtocol, ...] = ()
    skipped: int = 0  # files skipped with strict=False

    def split(self, name: str) -> list[Sample]:
        if name not in self.splits:
            hint = ""
            if name == "query" and "query_same" in self.splits:
                hint = " (PRCC queries are 'query_same' and 'query_diff')"
            raise DatasetError(
                f"dataset {self.name!r} has no {name!r} split{hint}; it has: {', '.join(self.splits)}"
            )
        return self.splits[name]

    @property
    def train(self) -> list[Sample]:
        return self.split("train")

    @property
    def query(self) -> list[Sample]:
        return self.split("query")

    @property
    def gallery(self) -> list[Sample]:
        return self.split("gallery")

    @property
    def val_query(self) -> list[Sample]:
        return self.split("val_query")

    @property
    def val_gallery(self) -> list[Sample]:
        return self.split("val_gallery")

    @property
    def num_train_pids(self) -> int:
        return len({s.pid for s in self.splits.get("train", ())})

    @property
    def num_train_clothes(self) -> int:
        return len(self.clothes_keys)

    @cached_property
    def clothes_keys(self) -> list[str]:
        """Training clothes id -> clothes key."""
        keys: dict[int, str] = {}
        for s in self.splits.get("train", ()):
            keys.setdefault(s.clothes_id, s.clothes_key)
        if sorted(keys) != list(range(len(keys))):
            raise DatasetError(f"training clothes ids of {self.name!r} are not 0..N-1")
        return [keys[i] for i in range(len(keys))]

    @cached_property
    def pid2clothes(self) -> np.ndarray:
        """(num_train_pids, num_train_clothes) float32; 1 where the person wears that outfit in train.

        The clothes-based adversarial loss (CAL) uses it to know which outfits belong to a person.
        """
        m = np.zeros((self.num_train_pids, self.num_train_clothes), dtype=np.float32)
        for s in self.splits.get("train", ()):
            m[s.pid, s.clothes_id] = 1.0
        return m

    def all_samples(self) -> Iterable[Sample]:
        for samples in self.splits.values():
            yield from samples


# ---------------------------------------------------------------- parsing helpers


def relabel_train(records: Sequence[Record], split: str = "train") -> list[Sample]:
    """Dense labels: persons and outfits numbered 0..N-1 in sorted order of original id / key."""
    pid_map = {p: i for i, p in enumerate(sorted({r.pid for r in records}))}
    key_map = {k: i for i, k in enumerate(sorted({r.clothes_key for r in records}))}
    return [
        Sample(path=r.path, pid=pid_map[r.pid], camid=r.camid, clothes_id=key_map[r.clothes_key], split=split,
               clothes_key=r.clothes_key, tracklet=r.tracklet, frames=r.frames)
        for r in records
    ]


def relabel_test(groups: dict[str, Sequence[Record]]) -> dict[str, list[Sample]]:
    """Keep person ids; number outfits over all ``groups`` together so query/gallery agree."""
    keys = sorted({r.clothes_key for recs in groups.values() for r in recs})
    key_map = {k: i for i, k in enumerate(keys)}
    return {
        split: [
            Sample(path=r.path, pid=r.pid, camid=r.camid, clothes_id=key_map[r.clothes_key], split=split,
                   clothes_key=r.clothes_key, tracklet=r.tracklet, frames=r.frames)
            for r in recs
        ]
        for split, recs in groups.items()
    }


def finish(name: str, root: Path, splits: dict[str, list[Sample]], rejects: Rejects, *,
           protocols: tuple[EvalProtocol, ...], video: bool = False, check_images: bool = False) -> CCReIDDataset:
    rejects.warn()
    ds = CCReIDDataset(name=name, root=root, splits=splits, video=video, protocols=protocols,
                       skipped=rejects.count)
    if check_images:
        verify_images(ds)
    return ds


def verify_images(ds: CCReIDDataset, *, show: int = 5) -> None:
    """Decode every image (every frame for video); raise :class:`ImageError` listing unreadable ones."""
    from dlcr.io.images import read_pil_rgb

    files: list[str] = []
    for s in ds.all_samples():
        files.extend(s.frames if s.frames else (s.path,))
    bad: list[str] = []
    for f in track(files, desc=f"check {ds.name}", unit="img"):
        try:
            read_pil_rgb(ds.root / f)
        except ImageError:
            bad.append(f)
    if bad:
        more = " ..." if len(bad) > show else ""
        raise ImageError(
            f"{len(bad)} of {len(files)} images of {ds.name} are unreadable: {', '.join(bad[:show])}{more}"
        )


def split_stats(samples: Sequence[Sample], video: bool = False) -> dict[str, int]:
    """#ids, #images (video: #tracklets and #frames), #clothes, #cameras of one split."""
    out = {"ids": len({s.pid for s in samples})}
    if video:
        out["tracklets"] = len(samples)
        out["frames"] = sum(len(s.frames) for s in samples)
    else:
        out["images"] = len(samples)
    out["clothes"] = len({s.clothes_id for s in samples})
    out["cameras"] = len({s.camid for s in samples})
    return out


# ---------------------------------------------------------------- samples.parquet

SAMPLES_SCHEMA = pa.schema([
    ("split", pa.string()),
    ("path", pa.string()),  # the image (video: tracklet folder) relative to the dataset root
    ("pid", pa.int64()),
    ("camid", pa.int64()),
    ("clothes_key", pa.string()),
    ("clothes_id", pa.int64()),
    ("tracklet", pa.int64()),
    ("frames", pa.list_(pa.string())),
])
_META = b"dlcr.dataset"
#: the image-path column's name in tables written before it was ``path`` (still read)
_OLD_PATH_COLUMN = "rel_path"


def write_samples(dataset: CCReIDDataset, path: str | os.PathLike) -> Path:
    """Write every split of ``dataset`` to a Parquet table (atomically); returns the path.

    The dataset name, video flag and protocols travel in the schema metadata so that
    :func:`dataset_from_samples` can rebuild the dataset without the raw files' names.
    """
    rows = [
        {"split": s.split, "path": s.path, "pid": s.pid, "camid": s.camid, "clothes_key": s.clothes_key,
         "clothes_id": s.clothes_id, "tracklet": s.tracklet, "frames": list(s.frames)}
        for s in dataset.all_samples()
    ]
    meta = {
        "name": dataset.name,
        "video": dataset.video,
        "splits": list(dataset.splits),
        "protocols": [[p.name, p.query, p.gallery, p.mode] for p in dataset.protocols],
    }
    table = pa.Table.from_pylist(rows, schema=SAMPLES_SCHEMA)
    table = table.replace_schema_metadata({_META: json.dumps(meta).encode()})
    out = Path(path)
    write_table(out, table)
    return out


def _read(path: str | os.PathLike) -> pa.Table:
    import pyarrow.parquet as pq

    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"samples table {p} not found (write it with `dlcr data prepare`)")
    try:
        table = pq.read_table(p)
    except (pa.ArrowInvalid, OSError) as e:
        raise DatasetError(f"cannot read samples table {p}: {e}") from None
    if "path" not in table.column_names and _OLD_PATH_COLUMN in table.column_names:
        names = ["path" if c == _OLD_PATH_COLUMN else c for c in table.column_names]
        table = table.rename_columns(names).replace_schema_metadata(table.schema.metadata)  # renaming drops it
    missing = [c for c in SAMPLES_SCHEMA.names if c not in table.column_names]
    if missing:
        raise DatasetError(f"samples table {p} lacks column(s) {', '.join(missing)}")
    return table


def read_samples(path: str | os.PathLike) -> dict[str, list[Sample]]:
    """Read a table written by :func:`write_samples`: split -> samples, in the written order."""
    table = _read(path)
    out: dict[str, list[Sample]] = {split: [] for split in _meta(table).get("splits", [])}
    for r in table.to_pylist():
        out.setdefault(r["split"], []).append(Sample(
            path=r["path"], pid=int(r["pid"]), camid=int(r["camid"]), clothes_id=int(r["clothes_id"]),
            split=r["split"], clothes_key=r["clothes_key"] or "", tracklet=int(r["tracklet"]),
            frames=tuple(r["frames"] or ()),
        ))
    return out


def _meta(table: pa.Table) -> dict:
    raw = (table.schema.metadata or {}).get(_META)
    return json.loads(raw) if raw else {}


def dataset_from_samples(path: str | os.PathLike, root: str | os.PathLike) -> CCReIDDataset:
    """Rebuild a :class:`CCReIDDataset` from ``samples.parquet`` (no re-parse of the raw files)."""
    meta = _meta(_read(path))
    return CCReIDDataset(
        name=meta.get("name", "custom"), root=Path(root), splits=read_samples(path),
        video=bool(meta.get("video", False)),
        protocols=tuple(EvalProtocol(*p) for p in meta.get("protocols", [])),
    )


__all__ = [
    "DATASETS", "STANDARD_ONLY", "STANDARD_SC_CC", "CCReIDDataset", "Record", "dataset_from_samples", "read_samples",
    "relabel_test", "relabel_train", "split_stats", "verify_images", "write_samples",
]
