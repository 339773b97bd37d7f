"""Finding a benchmark's files: its base folder, its images (by extension, to a depth), the names that
break its naming pattern (:class:`Rejects`: an error, or skipped and reported in one warning).
The parsers import them from here."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from dlcr.errors import DatasetError
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

T = TypeVar("T")

log = get_logger("dlcr.data.datasets")

IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})


class Rejects:
    """Collects files that break a naming pattern: raise when strict, else count and warn once."""

    def __init__(self, dataset: str, strict: bool):
        self.dataset = dataset
        self.strict = strict
        self.count = 0
        self.examples: list[str] = []
        self.reason = ""

    def __call__(self, rel: str, expected: str) -> None:
        if self.strict:
            raise DatasetError(
                f"{self.dataset}: {rel!r} does not match {expected} (strict=False / --no-strict skips such files)"
            )
        if not self.count:
            self.reason = expected
        self.count += 1
        if len(self.examples) < 3:
            self.examples.append(rel)

    def warn(self) -> None:
        if self.count:
            log.warning(
                "%s: skipped %d file(s) not matching %s, e.g. %s",
                self.dataset, self.count, self.reason, ", ".join(self.examples),
            )


def find_base(root: str | os.PathLike, top: str, required: Sequence[str], layout: str) -> tuple[Path, Path]:
    """Check ``root/top/<required...>`` exist; return (root, root/top). Errors name the layout."""
    root_p = Path(root).expanduser()
    if not root_p.is_dir():
        raise DatasetError(f"dataset root {root_p} does not exist or is not a folder; expected {layout}")
    base = root_p / top
    if not base.is_dir():
        hint = ""
        if root_p.name == top or (required and all((root_p / r).is_dir() for r in required)):
            hint = f" ({root_p} looks like the {top}/ folder itself: pass its parent as the root)"
        raise DatasetError(f"{top}/ not found under {root_p}; expected {layout}{hint}")
    for r in required:
        if not (base / r).is_dir():
            raise DatasetError(f"missing folder {base / r}; expected {layout}")
    return root_p, base


def is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTS


def list_images(folder: Path, *, depth: int = 0) -> list[Path]:
    """Image files in ``folder`` (and sub-folders down to ``depth`` levels), sorted; hidden files skipped."""
    out: list[Path] = []
    stack = [(folder, 0)]
    while stack:
        d, level = stack.pop()
        with os.scandir(d) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    if level < depth:
                        stack.append((Path(e.path), level + 1))
                elif is_image(e.name) and e.is_file():
                    out.append(Path(e.path))
    return sorted(out)


def list_dirs(folder: Path) -> list[Path]:
    with os.scandir(folder) as it:
        return sorted(Path(e.path) for e in it if e.is_dir() and not e.name.startswith("."))


def rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def require_nonempty(files: Sequence[object], folder: Path, layout: str) -> None:
    if not files:
        raise DatasetError(f"no images found in {folder}; expected {layout}")


def named_images(root: Path, folder: Path, rejects: Rejects, parse: Callable[[str], T | None], *,
                 name_text: str, layout: str, desc: str, depth: int = 0) -> list[tuple[str, T]]:
    """``(path relative to root, parse(file name))`` for the images in ``folder`` (see ``list_images``).

    A name that ``parse`` rejects (returns None) goes to ``rejects`` as not matching ``name_text``;
    a folder without images is an error naming ``layout``.
    """
    files = list_images(folder, depth=depth)
    require_nonempty(files, folder, layout)
    out: list[tuple[str, T]] = []
    for f in track(files, desc=desc, unit="img"):
        r = rel(root, f)
        got = parse(f.name)
        if got is None:
            rejects(r, name_text)
        else:
            out.append((r, got))
    return out
