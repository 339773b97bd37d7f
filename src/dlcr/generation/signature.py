"""Generation signatures: what produced a stage's outputs, so that other settings never reuse them.

A *signature* is a JSON-ready mapping of everything that changes a stage's outputs: the backend
name, its model (:func:`model_fingerprint`: a local folder's config files hashed, a single weight
file hashed, a hub id with its revision) and every setting that changes pixels or text. Backends
expose theirs as ``signature() -> dict``; the stages record it next to their outputs and refuse a
run whose signature differs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# files of a model folder that describe it (configs, tokenizers, processors, schedulers)
_CONFIG_SUFFIXES = (".json", ".txt", ".yaml", ".yml", ".model", ".jinja", ".py")
_FULL_HASH_LIMIT = 1 << 30  # single files up to 1 GiB are hashed whole; larger ones by size + ends
_CHUNK = 1 << 20


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex sha256 of ``value``'s canonical JSON (sorted keys), the first ``length`` digits."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file (for files over 1 GiB: of its size, first and last MiB)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        if size <= _FULL_HASH_LIMIT:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
        else:
            h.update(str(size).encode())
            h.update(fh.read(_CHUNK))
            fh.seek(size - _CHUNK)
            h.update(fh.read(_CHUNK))
    return h.hexdigest()


def model_fingerprint(model: str | os.PathLike | None, revision: str | None = None) -> dict[str, Any]:
    """What identifies a model argument.

    - a local folder: its path, a hash of every config-like file (relative path + bytes: model
      index, component configs, tokenizer and processor files, scheduler config) and the relative
      path and size of every other file (the weights; hashing GBs of weights on every run would
      cost more than it tells);
    - a local file (e.g. an SCHP checkpoint): its path and sha256;
    - anything else (a hub id): the id and the revision asked for (``None``: the hub's default).
    """
    if model is None:
        return {"model": None}
    p = Path(model).expanduser()
    if p.is_dir():
        h = hashlib.sha256()
        weights: list[list[Any]] = []
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            if f.suffix.lower() in _CONFIG_SUFFIXES:
                h.update(rel.encode() + b"\0")
                h.update(f.read_bytes())
                h.update(b"\0")
            else:
                weights.append([rel, f.stat().st_size])
        return {"model": str(p.resolve()), "config_sha256": h.hexdigest()[:16], "weights": weights}
    if p.is_file():
        return {"model": str(p.resolve()), "sha256": file_sha256(p)[:16]}
    return {"model": str(model), "revision": revision}


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are kept as values)."""
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def signature_diff(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 4) -> str:
    """The settings that differ between two signatures, as ``key: old -> new`` (a few of them)."""
    a, b = flatten(old), flatten(new)
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]

    def short(v: Any) -> str:
        text = json.dumps(v, default=str) if v is not None else "unset"
        return text if len(text) <= 60 else text[:57] + "..."

    parts = [f"{k}: {short(a.get(k))} -> {short(b.get(k))}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return "; ".join(parts)


__all__ = ["file_sha256", "flatten", "model_fingerprint", "signature_diff", "stable_hash"]
