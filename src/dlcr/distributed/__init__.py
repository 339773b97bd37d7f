"""Multi-process helpers: rank/world detection (env), DDP and the Ray Data driver (ray_backend)."""

from dlcr.distributed.env import DistEnv, dist_env, shard

__all__ = ["DistEnv", "dist_env", "shard"]
