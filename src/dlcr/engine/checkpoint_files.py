"""Reading a checkpoint's records: its JSON (format and version checked), its tensor files with their
recorded size and sha256 verified, completeness, the latest complete checkpoint of a folder. Used by
:mod:`dlcr.engine.checkpoint`; import the names from here."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dlcr.engine.checkpoint_codec import _sha256
from dlcr.errors import CheckpointError, UnsafePathError
from dlcr.io.paths import safe_join

FORMAT = "dlcr-checkpoint"
VERSION = 1


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a dlcr checkpoint")
    if int(meta.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {meta.get('version')}; this dlcr reads "
                              f"up to {VERSION}")
    return meta


def _file_of(json_path: Path, meta: Mapping[str, Any], role: str) -> Path:
    entry = meta.get("files", {}).get(role)
    if not isinstance(entry, dict) or "file" not in entry:
        raise CheckpointError(f"{json_path}: no {role} file recorded")
    try:
        return safe_join(json_path.parent, entry["file"])
    except UnsafePathError as e:
        raise CheckpointError(f"{json_path}: {e}") from None


def _read_verified(json_path: Path, meta: Mapping[str, Any], role: str) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load as st_load

    entry = meta["files"][role]
    p = _file_of(json_path, meta, role)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise CheckpointError(f"cannot read {p}: {e.strerror or e}") from None
    if len(data) != int(entry["bytes"]):
        raise CheckpointError(f"{p} is truncated or was replaced: {len(data)} bytes, expected {entry['bytes']}")
    if _sha256(data) != entry["sha256"]:
        raise CheckpointError(f"{p} is corrupt: sha256 does not match {json_path.name}")
    try:
        return dict(st_load(data))
    except (SafetensorError, ValueError) as e:
        raise CheckpointError(f"cannot parse {p}: {e}") from None


def _is_complete(json_path: Path) -> tuple[bool, dict[str, Any]]:
    try:
        meta = _read_meta(json_path)
        for role in ("weights", "state"):
            p = _file_of(json_path, meta, role)
            if not p.is_file() or p.stat().st_size != int(meta["files"][role]["bytes"]):
                return False, meta
    except (CheckpointError, KeyError, TypeError, ValueError):
        return False, {}
    return True, meta


def latest_checkpoint(directory: str | os.PathLike) -> Path | None:
    """JSON path of the complete checkpoint with the highest epoch in ``directory`` (newest on ties)."""
    d = Path(directory)
    if not d.is_dir():
        return None
    best: tuple[int, float, str] | None = None
    best_path = None
    for p in d.glob("*.json"):
        if p.name.startswith("."):
            continue
        ok, meta = _is_complete(p)
        if not ok:
            continue
        key = (int(meta.get("epoch", -1)), p.stat().st_mtime, p.name)
        if best is None or key > best:
            best, best_path = key, p
    return best_path


def verify_checkpoint(json_path: str | os.PathLike) -> str | None:
    """None when the checkpoint is intact (its JSON reads, both tensor files have the recorded size
    and sha256); otherwise one line saying what is wrong. Reads both files."""
    json_path = Path(json_path)
    try:
        meta = _read_meta(json_path)
        for role in ("weights", "state"):
            entry = meta["files"][role]
            p = _file_of(json_path, meta, role)
            h = hashlib.sha256()
            size = 0
            try:
                with open(p, "rb") as fh:
                    while chunk := fh.read(1 << 24):
                        h.update(chunk)
                        size += len(chunk)
            except OSError as e:
                return f"cannot read {p}: {e.strerror or e}"
            if size != int(entry["bytes"]):
                return f"{p} is truncated or was replaced: {size} bytes, expected {entry['bytes']}"
            if h.hexdigest() != entry["sha256"]:
                return f"{p} is corrupt: sha256 does not match {json_path.name}"
    except CheckpointError as e:
        return str(e)
    except (KeyError, TypeError, ValueError, AttributeError):
        return f"{json_path} is not a complete checkpoint record"
    return None


def _resolve(path: Path) -> Path:
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise CheckpointError(f"no complete checkpoint in {path}")
        return found
    if path.suffix == ".safetensors":
        stem = path.name[: -len(".safetensors")].removesuffix(".optim")
        path = path.with_name(f"{stem}.json")
    if path.suffix != ".json":
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} not found")
        raise CheckpointError(f"{path}: expected a checkpoint folder, .json or .safetensors file")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found or incomplete (its JSON is written last)")
    return path


def read_checkpoint_meta(dir_or_json: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """``(json path, metadata)`` of a checkpoint (a folder → its latest complete one; a
    ``.safetensors`` file → its JSON), without reading any tensors."""
    json_path = _resolve(Path(dir_or_json))
    return json_path, _read_meta(json_path)
