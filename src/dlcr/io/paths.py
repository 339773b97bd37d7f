"""Path helpers that never leave a root folder."""

from __future__ import annotations

import os
from pathlib import Path

from dlcr.errors import UnsafePathError


def safe_join(root: str | os.PathLike, rel: str | os.PathLike, *, lexical: bool = False) -> Path:
    """Join ``rel`` under ``root``; raise :class:`UnsafePathError` if the result leaves ``root``.

    Absolute paths, ``..`` components and symlinks pointing outside are all refused. With
    ``lexical=True`` only the path text is checked (no absolute path, no ``..`` escaping) and
    symlinks are followed: for the user's own dataset, whose folders are often links to other disks
    (``data/LTCC_ReID -> /mnt/...``). Untrusted inputs (archives, manifests) keep the default.
    """
    rel_s = os.fspath(rel)
    if lexical:
        norm = os.path.normpath(rel_s)
        if os.path.isabs(rel_s) or rel_s.startswith(("/", "\\")):
            raise UnsafePathError(f"path {rel_s!r} is absolute; expected a path relative to {root}")
        if norm == ".." or norm.startswith(".." + os.sep) or norm.startswith("../"):
            raise UnsafePathError(f"path {rel_s!r} leaves the root folder {root}")
        return Path(root) / norm
    root_p = Path(root).resolve()
    if os.path.isabs(rel_s) or rel_s.startswith(("/", "\\")):
        raise UnsafePathError(f"path {rel_s!r} is absolute; expected a path relative to {root_p}")
    target = (root_p / rel_s).resolve()
    if target != root_p and root_p not in target.parents:
        raise UnsafePathError(f"path {rel_s!r} leaves the root folder {root_p}")
    return target
