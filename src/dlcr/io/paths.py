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


def local_model_missing(name: str) -> bool:
    """True when ``name`` (a model argument: hub id or folder) can only mean a local folder and there
    is none: it starts with ``.``, ``/`` or ``~``, holds a backslash, or has more than one ``/``
    (hub ids are ``name`` or ``org/name``). Loaders then say "folder not found" instead of letting the
    hub client fail with a confusing repository-id error."""
    s = str(name)
    looks_local = s.startswith((".", "/", "~")) or "\\" in s or s.count("/") > 1
    return looks_local and not Path(s).expanduser().is_dir()
