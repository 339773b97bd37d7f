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
    SLURM, so ranks on one node do not all land on ``cuda:0``), else ``"cpu"``; other values pass
    through."""
    if device not in (None, "auto"):
        return str(device)
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{dist_env().local_rank % torch.cuda.device_count()}"
