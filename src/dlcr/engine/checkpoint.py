"""Training checkpoints: safetensors for tensors, JSON for everything else, no pickle.

A checkpoint named ``NAME`` in folder ``DIR`` is three files:

* ``NAME.safetensors`` — module weights, keys prefixed ``model.`` and ``clothes.``;
* ``NAME.optim.safetensors`` — every tensor of the optimizer / scheduler states and the torch RNG state;
* ``NAME.json`` — epoch, architecture, sizes, config, optimizer / scheduler states with their
  tensors replaced by references into the file above, sampler state, numpy / python RNG states, and
  the name, size and sha256 of both tensor files.

Each file is written atomically and the JSON last (an existing JSON of the same name is removed
first), so a checkpoint is complete exactly when its JSON exists; a crash mid-save leaves an
incomplete checkpoint that :func:`latest_checkpoint` skips. While a checkpoint is replaced, its
previous complete version stays loadable as ``NAME.prev`` (hard links, removed once the new one is
complete), so a crash mid-save falls back to it instead of leaving no checkpoint at all. Loading verifies sizes and hashes, so a
truncated or swapped file is a :class:`CheckpointError`, as is any key or shape mismatch with the
model (the message names the first mismatched key). Pickled ``.pt``/``.pth`` files are refused
unless ``allow_pickle=True``, and even then read with ``torch.load(weights_only=True)``.

The encoding lives in :mod:`dlcr.engine.checkpoint_codec`, the reading and verification of the
records in :mod:`dlcr.engine.checkpoint_files`; their names are importable from here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcr.engine.checkpoint_codec import (
    _canonical_safetensors,
    _decode,
    _encode,
    _load_module,
    _restore_rng,
    _rng_state,
    _sha256,
    _weights_of,
    unwrap,
)
from dlcr.engine.checkpoint_files import (
    FORMAT,
    VERSION,
    _file_of,
    _is_complete,
    _read_meta,
    _read_verified,
    latest_checkpoint,
    read_checkpoint_meta,
    verify_checkpoint,
)
from dlcr.errors import CheckpointError, first_line, weights_only_error
from dlcr.io.atomic import TMP_SUFFIX, atomic_write_bytes, atomic_write_text

__all__ = ["PICKLE_SUFFIXES", "PREV", "load_checkpoint", "resume_checkpoint", "save_checkpoint"]

PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")
PREV = ".prev"  # suffix of the name under which a checkpoint survives its own re-save
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# Save


def save_checkpoint(directory: str | os.PathLike, *, model: nn.Module, clothes_classifier: nn.Module | None = None,
                    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
                    schedulers: Mapping[str, Any] | None = None, sampler: Any = None, epoch: int,
                    config: Mapping[str, Any] | None = None, extra: Mapping[str, Any] | None = None,
                    name: str = "last") -> Path:
    """Write checkpoint ``name`` into ``directory``; returns the path of its JSON file."""
    from safetensors.torch import save as st_save

    if not _NAME_RE.match(name) or name.endswith((".json", ".safetensors")):
        raise ValueError(f"invalid checkpoint name {name!r}")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    json_path = d / f"{name}.json"
    for tmp in d.glob(f".{name}.*{TMP_SUFFIX}"):  # temp files of a save that was killed mid-write
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    if _keep_previous(d, name) is None and not _is_complete(d / f"{name}{PREV}.json")[0]:
        _drop_previous(d, name)  # leftovers of an interrupted clean-up
    with contextlib.suppress(FileNotFoundError):  # the old checkpoint of this name is now incomplete
        json_path.unlink()

    m = unwrap(model)
    weights = _weights_of(m, "model.")
    num_clothes = None
    if clothes_classifier is not None:
        weights.update(_weights_of(clothes_classifier, "clothes."))
        num_clothes = getattr(unwrap(clothes_classifier), "num_clothes", None)
    state_tensors: dict[str, torch.Tensor] = {}
    opt_state = {k: _encode(o.state_dict(), f"optim.{k}", state_tensors) for k, o in (optimizers or {}).items()}
    sched_state = {k: _encode(s.state_dict(), f"sched.{k}", state_tensors) for k, s in (schedulers or {}).items()}
    rng = _rng_state(state_tensors)

    files = {}
    for role, fname, tensors in (("weights", f"{name}.safetensors", weights),
                                 ("state", f"{name}.optim.safetensors", state_tensors)):
        data = _canonical_safetensors(st_save(tensors, metadata={"format": FORMAT, "role": role}))
        atomic_write_bytes(d / fname, data)
        files[role] = {"file": fname, "bytes": len(data), "sha256": _sha256(data)}

    meta = {
        "format": FORMAT, "version": VERSION, "name": name, "epoch": int(epoch),
        "arch": getattr(m, "arch", type(m).__name__), "num_pids": getattr(m, "num_pids", None),
        "num_clothes": num_clothes, "feat_dim": getattr(m, "feat_dim", None),
        "torch_version": torch.__version__,
        "files": files,
        "config": _encode(dict(config or {}), "config", {}),
        "optimizers": opt_state, "schedulers": sched_state,
        "sampler": _encode(sampler.state_dict(), "sampler", {}) if sampler is not None else None,
        "rng": rng,
        "extra": _encode(dict(extra or {}), "extra", {}),
    }
    atomic_write_text(json_path, json.dumps(meta, indent=1) + "\n")
    _drop_previous(d, name)
    return json_path


def _keep_previous(d: Path, name: str) -> Path | None:
    """Make the complete checkpoint ``name`` (if any) loadable as ``name.prev`` before it is replaced.

    The old JSON has to go before its tensor files are overwritten (it would describe the wrong
    bytes), so without this copy a crash during the save would leave no checkpoint of this name and a
    resumed run would start over. Hard links cost nothing; a plain copy where links do not work.
    """
    old = d / f"{name}.json"
    ok, meta = _is_complete(old)
    if not ok:
        return None
    prev = f"{name}{PREV}"
    files = {}
    for role, entry in meta["files"].items():
        src = _file_of(old, meta, role)
        rest = src.name[len(name):] if src.name.startswith(f"{name}.") else f".{role}.safetensors"
        dst = d / f"{prev}{rest}"
        with contextlib.suppress(FileNotFoundError):
            dst.unlink()
        try:
            os.link(src, dst)
        except OSError:
            shutil.copyfile(src, dst)
        files[role] = {**entry, "file": dst.name}
    prev_json = d / f"{prev}.json"
    atomic_write_text(prev_json, json.dumps({**meta, "name": prev, "files": files}, indent=1) + "\n")
    return prev_json


def _drop_previous(d: Path, name: str) -> None:
    """Remove ``name.prev`` (its JSON first, so it is never complete with a missing tensor file)."""
    prev = f"{name}{PREV}"
    for p in [d / f"{prev}.json", *sorted(d.glob(f"{prev}.*safetensors"))]:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


# ---------------------------------------------------------------------------------------------
# Load


def resume_checkpoint(directory: str | os.PathLike) -> tuple[Path | None, str | None]:
    """The checkpoint a resumed run continues from, and a note when it is a fallback.

    A damaged ``last`` (its JSON exists but it does not verify) is never skipped silently: the kept
    previous version ``last.prev`` is used when it verifies (the note says so), otherwise this is a
    :class:`CheckpointError`. Without a ``last.json`` (a save killed after it removed the old one),
    the newest complete checkpoint is used, as :func:`latest_checkpoint` finds it; None when there is
    none.
    """
    d = Path(directory)
    last = d / "last.json"
    if last.exists():
        why = verify_checkpoint(last)
        if why is not None:
            prev = d / f"last{PREV}.json"
            if prev.is_file() and verify_checkpoint(prev) is None:
                epoch = int(_read_meta(prev).get("epoch", -1))
                return prev, (f"checkpoint {last.name} is damaged ({why}); resuming from the kept previous "
                              f"checkpoint {prev.name} (after epoch {epoch + 1})")
            raise CheckpointError(f"cannot resume: {why}; no intact previous checkpoint to fall back to "
                                  f"(move {d.parent} away to start the run over)")
    return latest_checkpoint(d), None


def _load_pickle(path: Path, model: nn.Module | None, map_location: Any) -> dict[str, Any]:
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise CheckpointError(f"cannot load {path} with weights_only=True: {weights_only_error(e)}") from None
    state = obj
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            state = obj[key]
            break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if model is not None:
        _load_module(model, state, "", str(path))
    epoch = obj.get("epoch") if isinstance(obj, Mapping) else None
    return {"format": "pickle", "path": path, "epoch": epoch, "model_state": dict(state)}


def load_checkpoint(dir_or_json: str | os.PathLike, *, model: nn.Module | None = None,
                    clothes_classifier: nn.Module | None = None,
                    optimizers: Mapping[str, torch.optim.Optimizer] | None = None,
                    schedulers: Mapping[str, Any] | None = None, sampler: Any = None,
                    map_location: Any = "cpu", allow_pickle: bool = False, restore_rng: bool = True) -> dict[str, Any]:
    """Load a checkpoint (a folder → its latest complete one) into the given objects.

    Returns the state: ``epoch``, ``arch``, ``num_pids``, ``num_clothes``, ``feat_dim``, ``config``,
    ``extra``, ``sampler`` (its saved state), ``path`` (the JSON), ``model_state`` / ``clothes_state``
    (tensors on ``map_location``). RNG states are restored unless ``restore_rng=False``.
    """
    path = Path(dir_or_json)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise CheckpointError(f"refusing to load pickle file {path}; convert it to safetensors or pass "
                                  "allow_pickle=True (it is then read with weights_only=True)")
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} not found")
        return _load_pickle(path, model, map_location)
    json_path, meta = read_checkpoint_meta(path)
    weights = _read_verified(json_path, meta, "weights")
    # the optimiser/RNG tensors (about twice the weights with Adam) only when something needs them
    needs_state = bool(optimizers or schedulers or (restore_rng and meta.get("rng")))
    state_tensors = _read_verified(json_path, meta, "state") if needs_state else {}
    src = json_path.name

    if model is not None:
        m = unwrap(model)
        arch = getattr(m, "arch", None)
        if arch and meta.get("arch") and arch != meta["arch"]:
            raise CheckpointError(f"{src}: checkpoint is for architecture {meta['arch']!r}, model is {arch!r}")
        _load_module(m, weights, "model.", src)
    if clothes_classifier is not None:
        if not any(k.startswith("clothes.") for k in weights):
            raise CheckpointError(f"{src}: checkpoint has no clothes classifier")
        _load_module(clothes_classifier, weights, "clothes.", src)
    for kind, objs in (("optimizers", optimizers), ("schedulers", schedulers)):
        saved = meta.get(kind) or {}
        for key, obj in (objs or {}).items():
            if key not in saved:
                raise CheckpointError(f"{src}: no saved state for {kind[:-1]} {key!r} "
                                      f"(saved: {', '.join(saved) or 'none'})")
            try:
                obj.load_state_dict(_decode(saved[key], state_tensors))
            except (ValueError, KeyError, RuntimeError, TypeError) as e:
                msg = first_line(e)
                raise CheckpointError(f"{src}: cannot restore {kind[:-1]} {key!r}: {msg}") from None
    if sampler is not None and meta.get("sampler") is not None:
        sampler.load_state_dict(_decode(meta["sampler"], {}))
    if restore_rng and meta.get("rng"):
        _restore_rng(meta["rng"], state_tensors)

    def moved(prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix):]: v.to(map_location) for k, v in weights.items() if k.startswith(prefix)}

    return {
        "path": json_path, "epoch": meta.get("epoch"), "arch": meta.get("arch"), "num_pids": meta.get("num_pids"),
        "num_clothes": meta.get("num_clothes"), "feat_dim": meta.get("feat_dim"),
        "config": _decode(meta.get("config"), {}), "extra": _decode(meta.get("extra"), {}),
        "sampler": _decode(meta.get("sampler"), {}),
        "model_state": moved("model."), "clothes_state": moved("clothes."),
    }
