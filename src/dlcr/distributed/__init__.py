"""Multi-process helpers: rank/world detection, devices and DDP (env); nothing here imports the generation code
(the Ray Data driver of the generation runner is :mod:`dlcr.generation.ray_driver`)."""

from dlcr.distributed.env import DistEnv, dist_env, shard

__all__ = ["DistEnv", "dist_env", "shard"]
