"""Torch dtype names for the model backends (torch is imported only when a dtype is resolved).

The device counterpart, :func:`dlcr.distributed.env.resolve_device`, lives with the rank detection.
"""

from __future__ import annotations

from typing import Any

from dlcr.errors import ConfigError

_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}  # fmt: skip


def resolve_dtype(dtype: str | None, device: str) -> Any:
    """``None``/``"auto"``: float16 on CUDA, float32 elsewhere; else a name from ``_DTYPES``."""
    import torch

    if dtype in (None, "auto"):
        return torch.float16 if device.startswith("cuda") else torch.float32
    key = str(dtype).lower().replace("torch.", "")
    if key not in _DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use one of {', '.join(sorted(set(_DTYPES)))} or auto")
    return getattr(torch, _DTYPES[key])


__all__ = ["resolve_dtype"]
