"""Progress bars for every loop over a dataset (tqdm on stderr; off with DLCR_NO_PROGRESS=1 or ``dlcr -q``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

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
