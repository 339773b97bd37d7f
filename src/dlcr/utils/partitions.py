"""The progressive partition rule shared by the job planner (:mod:`dlcr.generation.planning`) and the
paired sampler (:mod:`dlcr.data.samplers`), which sit side by side in one layer and import nothing from
each other."""

from __future__ import annotations

from dlcr.errors import ConfigError, InputError


def partition_of(variant: int, k: int, num_partitions: int) -> int:
    """Progressive partition of variant ``variant`` out of ``k``: the ``p`` with
    ``floor(k*p/P) <= v < floor(k*(p+1)/P)`` (P = ``num_partitions``; consecutive, as equal as possible,
    the larger parts last)."""
    if num_partitions < 1:
        raise ConfigError(f"num_partitions must be >= 1, got {num_partitions}")
    if not 0 <= variant < k:
        raise InputError(f"variant {variant} outside 0..{k - 1}")
    for p in range(num_partitions):
        if variant < (k * (p + 1)) // num_partitions:
            return p
    return num_partitions - 1  # unreachable: the last bound is k
