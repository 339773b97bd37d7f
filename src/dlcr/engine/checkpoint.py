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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import re
import shutil
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcr.errors import CheckpointError, UnsafePathError, first_line, weights_only_error
from dlcr.io.atomic import TMP_SUFFIX, atomic_write_bytes, atomic_write_text
from dlcr.io.paths import safe_join

FORMAT = "dlcr-checkpoint"
VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl")
PREV = ".prev"  # suffix of the name under which a checkpoint survives its own re-save
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------------------------
# JSON encoding of nested states (tensors go to a side table)


def _encode(obj: Any, key: str, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, Counter):
        return {"__counter__": [[_encode(k, f"{key}.k{i}", tensors), v] for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {"__items__": [[_encode(k, f"{key}.k{i}", tensors), _encode(v, f"{key}.{k}", tensors)]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return {"__float__": repr(obj)}
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot store a {type(obj).__name__} at {key!r} in a checkpoint")


def _decode(obj: Any, tensors: Mapping[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        name = obj["__tensor__"]
        if name not in tensors:
            raise CheckpointError(f"checkpoint state references a missing tensor {name!r}")
        return tensors[name]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=obj["dtype"])
    if "__counter__" in obj:
        return Counter({_decode(k, tensors): v for k, v in obj["__counter__"]})
    if "__items__" in obj:
        return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__items__"]}
    if "__tuple__" in obj:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if "__float__" in obj:
        return float(obj["__float__"])
    return {k: _decode(v, tensors) for k, v in obj.items()}


# ---------------------------------------------------------------------------------------------
# RNG states


def _rng_state(tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    tensors["rng.torch"] = torch.get_rng_state()
    n_cuda = 0
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s.cpu()
        n_cuda = torch.cuda.device_count()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, pstate, gauss = random.getstate()
    return {"torch": {"__tensor__": "rng.torch"}, "cuda_devices": n_cuda,
            "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(pstate), gauss]}


def _restore_rng(state: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng.torch"].to(torch.uint8))
    n = int(state.get("cuda_devices", 0))
    if n and torch.cuda.is_available() and torch.cuda.device_count() == n:
        torch.cuda.set_rng_state_all([tensors[f"rng.cuda.{i}"] for i in range(n)])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, pstate, gauss = state["python"]
    random.setstate((version, tuple(pstate), gauss))


# ---------------------------------------------------------------------------------------------
# Helpers


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside DDP / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(module, nn.parallel.DistributedDataParallel | nn.DataParallel):
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod  # type: ignore[assignment]
        else:
            return module


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _weights_of(module: nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {f"{prefix}{k}": v.detach().cpu().contiguous().clone() for k, v in unwrap(module).state_dict().items()}


def _check_keys(own: Mapping[str, torch.Tensor], saved: Mapping[str, torch.Tensor], prefix: str,
                source: str) -> None:
    for k, v in own.items():
        sk = prefix + k
        if sk not in saved:
            raise CheckpointError(f"{source}: checkpoint has no key {sk!r} (different architecture?)")
        if tuple(saved[sk].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: shape mismatch at {sk!r}: checkpoint {tuple(saved[sk].shape)} "
                                  f"vs model {tuple(v.shape)}")
    extra = [k for k in saved if k.startswith(prefix) and k[len(prefix):] not in own]
    if extra:
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r} in checkpoint (different architecture?)")


def _load_module(module: nn.Module, saved: Mapping[str, torch.Tensor], prefix: str, source: str) -> None:
    m = unwrap(module)
    _check_keys(m.state_dict(), saved, prefix, source)
    m.load_state_dict({k[len(prefix):]: v for k, v in saved.items() if k.startswith(prefix)}, strict=True)


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


def _canonical_safetensors(data: bytes) -> bytes:
    """``data`` (a safetensors file) with its header rewritten in a fixed order.

    safetensors keeps the metadata in a Rust hash map whose iteration order changes from one save to
    the next, so identical tensors gave files with different bytes (and sha256). The header is
    re-serialised with the metadata keys sorted and the tensor entries in file order; the tensor
    bytes are untouched (their offsets are relative to the end of the header).
    """
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    fixed: dict[str, Any] = {}
    meta = header.pop("__metadata__", None)
    if meta:
        fixed["__metadata__"] = dict(sorted(meta.items()))
    for k, v in sorted(header.items(), key=lambda kv: (list(kv[1]["data_offsets"]), kv[0])):
        fixed[k] = v
    text = json.dumps(fixed, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)  # the alignment safetensors itself pads to
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


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
