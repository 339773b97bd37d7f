"""Record types shared by every stage (frozen dataclasses; no positional tuples)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    """One image (or one tracklet, for video datasets) of a CC-ReID dataset.

    ``path`` is relative to the dataset root given by the user (the folder that *contains* the
    benchmark's usual top folder). For video datasets ``path`` is the tracklet folder and
    ``frames`` lists its frame files, relative to the same root.

    ``pid`` and ``clothes_id`` are relabelled to 0..N-1 on the training split; on the test splits
    they keep the dataset's own numbers (only equality matters there). ``clothes_key`` is a
    dataset-wide unique string naming the outfit (e.g. ``"012_3"``), stable across relabelling.
    """

    path: str
    pid: int
    camid: int
    clothes_id: int
    split: str
    clothes_key: str = ""
    tracklet: int = -1
    frames: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["frames"] = list(self.frames)
        return d


@dataclass(frozen=True)
class Outfit:
    """The clothes of one clothes id, as text, per body part."""

    clothes_key: str
    upper: str
    lower: str
    footwear: str

    @property
    def prompt(self) -> str:
        parts = [p for p in (self.upper, self.lower, self.footwear) if p]
        return "a person wearing " + ", ".join(parts) if parts else "a person"


@dataclass(frozen=True)
class EvalProtocol:
    """One evaluation setting of a benchmark: which split queries which, under which rule.

    ``mode`` is ``"standard"``, ``"CC"`` or ``"SC"`` (docs/design.md §8). For example LTCC has
    ``EvalProtocol("standard", "query", "gallery", "standard")`` and
    ``EvalProtocol("cc", "query", "gallery", "CC")``; PRCC has
    ``EvalProtocol("sc", "query_same", "gallery", "standard")`` and
    ``EvalProtocol("cc", "query_diff", "gallery", "standard")``.
    """

    name: str  # "standard" | "sc" | "cc" (key used in metrics.json)
    query: str  # split name
    gallery: str  # split name
    mode: str  # "standard" | "CC" | "SC"
