"""Atomic writes: write to a temp file in the same folder, fsync, then rename over the target.

A reader (or a resumed run) therefore sees either the old file or the complete new one, never a
partial file. Temp files are named ``.<name>.<random>.tmp`` and removed on any error.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def umask_mode(base: int = 0o666) -> int:
    """The mode ``open()`` (base 0o666) or ``mkdir`` (0o777) gives under the current umask;
    ``mkstemp`` / ``mkdtemp`` always use 0600 / 0700."""
    mask = os.umask(0)
    os.umask(mask)
    return base & ~mask


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yield a file object; on clean exit the data replaces ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        # a shared work folder stays readable by the group / others the umask lets in, as open() would
        with contextlib.suppress(OSError):
            os.fchmod(fd, umask_mode())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def remove_stale_temps(folder: str | os.PathLike, older_than: float | None = None) -> int:
    """Delete temp files left by a killed writer under ``folder``; returns how many.

    ``older_than`` (seconds): keep younger temp files, which a concurrent writer (another rank
    sharing the folder) may still be filling.
    """
    root = Path(folder)
    if not root.is_dir():
        return 0
    n = 0
    now = time.time()
    for p in root.rglob(f".*{TMP_SUFFIX}"):
        with contextlib.suppress(FileNotFoundError):
            if older_than is not None and now - p.stat().st_mtime < older_than:
                continue
            p.unlink()
            n += 1
    return n
