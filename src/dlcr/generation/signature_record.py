"""Recording and checking generation signatures (what goes into a signature is
:mod:`dlcr.generation.signature`): a signature's canonical JSON (:func:`jsonable`) and hash
(:func:`stable_hash`, :func:`signature_hash`), where it is recorded next to a stage's outputs
(:func:`signature_file`), :func:`record_signature` / :func:`read_signature`, the check a stage
makes before any work (:func:`check_signature`, with the differing settings named by
:func:`signature_diff`), the upstream chain (:func:`check_inputs_current`) and the wait of a rank
other than 0 (:func:`wait_for_signature`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dlcr.errors import ConfigError


def stable_hash(value: Any, length: int = 16) -> str:
    """Hex sha256 of ``value``'s canonical JSON (sorted keys), the first ``length`` digits."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON data (paths and other objects as strings, tuples and sets as lists)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


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


SIGNATURE_FILE = "signature.json"


def signature_file(output: str | os.PathLike) -> Path:
    """Where the signature of ``output`` lives: ``<folder>/signature.json`` for an output folder,
    ``<name>.signature.json`` next to an output table (``jobs.parquet`` -> ``jobs.signature.json``)."""
    p = Path(output)
    if p.suffix:
        return p.with_name(f"{p.stem}.signature.json")
    return p / SIGNATURE_FILE


def signature_hash(sig: Mapping[str, Any] | None) -> str | None:
    """A short hash of a signature (``None`` stays ``None``)."""
    return None if sig is None else stable_hash(jsonable(sig))


def read_signature(path: str | os.PathLike) -> dict[str, Any] | None:
    """The signature recorded at ``path`` (``None``: none, or unreadable)."""
    p = Path(path)
    if not p.is_file():
        return None
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    sig = data.get("signature") if isinstance(data, dict) else None
    return sig if isinstance(sig, dict) else None


def recorded_hash(output: str | os.PathLike) -> str | None:
    """The hash of the signature recorded for ``output`` (a folder or a table), or ``None``."""
    return signature_hash(read_signature(signature_file(output)))


def record_signature(path: str | os.PathLike, sig: Mapping[str, Any]) -> None:
    """Write ``sig`` (and its hash) to ``path`` atomically."""
    from dlcr.io.atomic import atomic_write_json

    clean = jsonable(sig)
    atomic_write_json(path, {"signature": clean, "hash": stable_hash(clean)})


def check_signature(
    path: str | os.PathLike,
    sig: Mapping[str, Any],
    *,
    what: str,
    committed: int,
    overwrite: bool = False,
    remove: Callable[[], Any] | None = None,
    record: bool = True,
) -> str:
    """Compare ``sig`` with the signature recorded at ``path`` before a stage does any work.

    - the same: ``"same"`` (resume);
    - nothing committed yet: the new signature is recorded, ``"new"``;
    - different, or outputs without a signature (an older dlcr): with ``overwrite``, ``remove()``
      deletes the stage's outputs and the new signature is recorded (``"overwritten"``); without
      it a one-line :class:`~dlcr.errors.ConfigError` names what differs and what to do.

    ``what`` is the plural subject of that message ("label maps", "jobs of the plan jobs.parquet":
    "<what> in <folder> were made with other settings ..." / "... have no signature ...").
    ``record=False`` only checks (a torchrun rank other than 0 leaves recording to rank 0; a
    pre-check before a backend is built records nothing either).
    """
    new = jsonable(sig)
    old = read_signature(path)
    if old is not None and stable_hash(old) == stable_hash(new):
        return "same"
    if committed > 0 and not overwrite:
        todo = f"use a new --work folder, or pass --overwrite to replace its {committed} committed outputs"
        where = Path(path).parent
        if old is None:
            raise ConfigError(
                f"{what} in {where} have no signature (made by an older dlcr or changed by hand), so what made "
                f"them is unknown; {todo}"
            )
        raise ConfigError(f"{what} in {where} were made with other settings ({signature_diff(old, new)}); {todo}")
    if committed > 0 and remove is not None:
        remove()
    if record:
        record_signature(path, new)
    return "overwritten" if committed > 0 else "new"


def check_inputs_current(
    output: str | os.PathLike,
    upstream: Mapping[str, tuple[str | os.PathLike, str]],
    *,
    name: str | None = None,
    made_by: str | None = None,
    _seen: frozenset[str] = frozenset(),
) -> None:
    """Check that the upstream outputs ``output`` was made from are still the ones recorded now.

    ``output``'s recorded signature holds, under ``"inputs"``, the signature hash of each upstream
    output it was made from; ``upstream`` maps such an input name (``masks``, ``captions``,
    ``outfits``) to ``(path of that output, the stage that makes it)``. Every input is checked
    recursively, the earliest stage first, against that output's current recorded hash
    (:func:`recorded_hash`); a mismatch is a one-line :class:`~dlcr.errors.ConfigError` naming
    the stale output, what changed and the stage to re-run. Outputs without a signature, inputs
    not in ``upstream`` (e.g. a plan's content hash) and upstream outputs without a recorded
    signature are left to the stages' other checks. ``name`` / ``made_by`` name ``output`` and its
    stage in that message (default: its file name, and nothing to re-run).
    """
    out = Path(output)
    sig = read_signature(signature_file(out))
    inputs = sig.get("inputs") if isinstance(sig, dict) else None
    if not isinstance(inputs, dict):
        return
    label = name or out.name
    for key, made_with in sorted(inputs.items()):
        if key not in upstream or key in _seen:
            continue
        up_path, up_stage = upstream[key]
        check_inputs_current(up_path, upstream, name=Path(up_path).name, made_by=up_stage, _seen=_seen | {key})
        current = recorded_hash(up_path)
        if current is not None and current != made_with:
            todo = f"re-run `dlcr generate {made_by}` (with --overwrite)" if made_by else "make it again"
            raise ConfigError(f"{label} is out of date: {Path(up_path).name} changed since it was made; {todo}")


def wait_for_signature(path: str | os.PathLike, sig: Mapping[str, Any], timeout: float = 600.0) -> None:
    """Wait until ``path`` records ``sig`` (another process is replacing the outputs); a
    :class:`~dlcr.errors.ConfigError` after ``timeout`` seconds."""
    want = stable_hash(jsonable(sig))
    deadline = time.monotonic() + timeout
    while True:
        old = read_signature(path)
        if old is not None and stable_hash(old) == want:
            return
        if time.monotonic() > deadline:
            raise ConfigError(f"timed out waiting for rank 0 to record the new signature at {path}")
        time.sleep(0.5)
