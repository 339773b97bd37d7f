"""Progress bars for every loop over a dataset (tqdm on stderr; off with DLCR_NO_PROGRESS=1 or ``dlcr -q``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from tqdm.auto import tqdm

from dlcr.errors import ConfigError

T = TypeVar("T")


_quiet = False  # set by the CLI's --quiet (dlcr.utils.logging.setup_logging)


def set_quiet(quiet: bool) -> None:
    global _quiet
    _quiet = bool(quiet)


def progress_enabled() -> bool:
    return not _quiet and os.environ.get("DLCR_NO_PROGRESS", "") not in ("1", "true", "yes")


def track(it: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    if total is None:
        try:
            total = len(it)  # type: ignore[arg-type]
        except TypeError:
            total = None
    yield from tqdm(it, desc=desc, total=total, unit=unit, disable=not progress_enabled(),
                    dynamic_ncols=True, leave=False)


def batched(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive slices of ``items`` of ``size`` elements (the last one may be shorter)."""
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]


def track_batches(items: Sequence[T], size: int, desc: str) -> Iterator[Sequence[T]]:
    """``batched(items, size)`` under a progress bar that counts batches."""
    if size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {size}")
    return track(batched(items, size), desc=desc, total=(len(items) + size - 1) // size, unit="batch")
