"""Saving and loading a :class:`~dlcr.generation.guidance.model.LatentDiscriminator`: a safetensors
weights file and a JSON metadata file next to it (architecture, training settings, SHA-256 of the
weights); any problem on loading is a one-line :class:`~dlcr.errors.CheckpointError`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from dlcr.errors import CheckpointError, ConfigError, first_line
from dlcr.generation.guidance.model import LatentDiscriminator
from dlcr.io.atomic import atomic_write_bytes, atomic_write_json

FORMAT = "dlcr-latent-discriminator"
FORMAT_VERSION = 1
_MODEL_PREFIX = "model."


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


def save_discriminator(disc: LatentDiscriminator, path: str | os.PathLike) -> Path:
    """Write ``<path>.safetensors`` (weights, incl. the schedule buffer) and ``<path>.json`` atomically.

    The JSON holds the architecture, what it was trained for and the SHA-256 of the weights file; it
    is written last, so a killed save never leaves a pair that loads.
    """
    from safetensors.torch import save

    weights, meta = _paths(path)
    tensors = {_MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in disc.state_dict().items()}
    blob = save(tensors)
    atomic_write_bytes(weights, blob)
    atomic_write_json(meta, {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "architecture": disc.config,
        **disc.info,
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    })
    return weights


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentDiscriminator:
    """Load a discriminator saved by :func:`save_discriminator`; any problem is a one-line
    :class:`CheckpointError` (missing files, damaged or mismatched weights)."""
    from safetensors.torch import load

    weights, meta_path = _paths(path)
    for p, what in ((weights, "weights"), (meta_path, "metadata")):
        if not p.is_file():
            raise CheckpointError(f"discriminator {what} not found: {p}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(f"format version {meta['version']} is newer than this dlcr ({FORMAT_VERSION})")
        arch = meta["architecture"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"bad discriminator metadata {meta_path}: {e}") from None
    blob = weights.read_bytes()
    if meta.get("weights_sha256") and hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(f"discriminator weights {weights} do not match {meta_path.name} (damaged or replaced)")
    try:
        tensors = load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read discriminator weights {weights}: {first_line(e)}") from None
    try:
        disc = LatentDiscriminator(arch["in_channels"], arch["channels"], arch["time_dim"], arch["mask_mode"],
                                   arch["num_train_timesteps"], arch["data_std"])
        state = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
        disc.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"discriminator {weights} does not fit its architecture: "
                              f"{first_line(e)}") from None
    skip = {"format", "version", "architecture", "weights", "weights_sha256"}
    disc.info = {k: v for k, v in meta.items() if k not in skip}
    return disc.to(device).eval()
