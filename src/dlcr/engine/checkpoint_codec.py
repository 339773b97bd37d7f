"""How a checkpoint's contents are encoded: nested states as JSON with their tensors in a side table,
the RNG states, module weights (unwrapped from DDP / compile wrappers) with key and shape checks, and
the canonical safetensors header. Used by :mod:`dlcr.engine.checkpoint`; import the names from here."""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from dlcr.errors import CheckpointError

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
