"""Rank / world detection from the environment (torchrun, SLURM, or nothing = single process)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from dlcr.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def _int(env: Mapping[str, str], name: str) -> int | None:
    v = env.get(name)
    if v is None or v == "":
        return None
    try:
        return int(v)
    except ValueError:
        raise ConfigError(f"environment variable {name}={v!r} is not an integer") from None


def dist_env(env: Mapping[str, str] | None = None) -> DistEnv:
    """Rank, world size and local rank: torchrun's ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``,
    else SLURM's ``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID``, else a single process."""
    env = os.environ if env is None else env
    rank, world = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    local = _int(env, "LOCAL_RANK")
    if rank is None and world is None:
        rank, world = _int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS")
        local = _int(env, "SLURM_LOCALID")
    rank = 0 if rank is None else rank
    world = 1 if world is None else world
    local = rank if local is None else local
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"invalid distributed environment: rank {rank}, world size {world}")
    return DistEnv(rank=rank, world_size=world, local_rank=local)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The static share ``items[rank::world_size]`` of one rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ConfigError(f"invalid shard: rank {rank} of world size {world_size}")
    return list(items[rank::world_size])


def resolve_device(device: str | None = None) -> str:
    """``None`` / ``"auto"``: this process's GPU when one is visible (the local rank's under torchrun /
    SLURM, so ranks on one node do not all land on ``cuda:0``), else ``"cpu"``. Other values must name
    a device torch knows (``cpu``, ``cuda``, ``cuda:1``, ``mps`` ...) that this machine has; anything
    else is a :class:`ConfigError`, not a traceback from deep inside the first ``.to(device)``."""
    import torch

    if device in (None, "auto"):
        if not torch.cuda.is_available():
            return "cpu"
        return f"cuda:{dist_env().local_rank % torch.cuda.device_count()}"
    name = str(device).strip()
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:<index> or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} was asked for, but this machine has no usable CUDA GPU "
                              "(use --device cpu or auto)")
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ConfigError(f"device {name!r} does not exist: this machine has {count} CUDA GPU(s)")
    elif dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device {name!r} was asked for, but MPS is not available on this machine")
    elif dev.type != "cpu":
        raise ConfigError(f"device {name!r} is not supported (use auto, cpu, cuda, cuda:<index> or mps)")
    return name
