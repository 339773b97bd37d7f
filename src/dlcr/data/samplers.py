"""Identity-balanced samplers for re-id training, including DLCR's real/generated pairing.

Every sampler is a pure function of ``(seed, epoch, rank)``: each epoch draws its batches from a
fresh generator seeded with ``(seed, epoch)``, every rank computes the same global list of batches
and keeps every ``num_replicas``-th one starting at ``rank`` (the list is truncated to a multiple of
``num_replicas`` so all ranks run the same number of steps). Ranks therefore see disjoint batches,
and a resumed run (``load_state_dict``) reproduces the epoch exactly. Call ``set_epoch`` before each
epoch, as with :class:`torch.utils.data.DistributedSampler`.

P×K batches: ``P = batch_size / num_instances`` distinct identities, ``K = num_instances`` images each.
Per epoch, each identity's images are shuffled and cut into chunks of K (the incomplete remainder is
dropped; an identity with fewer than K images gets one chunk drawn with replacement); batches are
then formed by repeatedly choosing P identities that still have chunks, until fewer than P remain.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from torch.utils.data import Sampler

from dlcr.errors import ConfigError
from dlcr.generation.planning import partition_of

Schedule = Literal["progressive", "official", "all"]

#: The released DLCR code's schedule: (first 1-based epoch, number of variants allowed from then on).
OFFICIAL_SCHEDULE: tuple[tuple[int, int], ...] = ((1, 2), (6, 5), (11, 7), (16, 10))


def _epoch_rng(seed: int, epoch: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(epoch), int(stream)])


def _check_pk(batch_size: int, num_instances: int, num_ids: int) -> int:
    if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
        raise ConfigError(f"sampler batch_size ({batch_size}) must be a positive multiple of "
                          f"num_instances ({num_instances})")
    p = batch_size // num_instances
    if num_ids < p:
        raise ConfigError(f"a batch needs {p} identities (batch_size {batch_size} / num_instances "
                          f"{num_instances}) but the training set has only {num_ids}")
    return p


def _group_by_pid(pids: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for i, pid in enumerate(pids):
        groups.setdefault(int(pid), []).append(i)
    return dict(sorted(groups.items()))


def pk_batches(groups: dict[int, list[int]], p: int, k: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of P×K batches (global, before splitting across ranks)."""
    chunks: dict[int, list[list[int]]] = {}
    for pid, idxs in groups.items():
        arr = np.asarray(idxs, dtype=np.int64)
        arr = rng.choice(arr, size=k, replace=True) if len(arr) < k else rng.permutation(arr)
        n = len(arr) // k
        chunks[pid] = [arr[j * k:(j + 1) * k].tolist() for j in range(n)]
    avail = [pid for pid in groups if chunks[pid]]
    batches: list[list[int]] = []
    while len(avail) >= p:
        pick = rng.choice(len(avail), size=p, replace=False)
        batch: list[int] = []
        for j in pick:
            batch += chunks[avail[j]].pop()
        batches.append(batch)
        avail = [pid for pid in avail if chunks[pid]]
    return batches


class _EpochSampler:
    """Shared state handling: seed, epoch, rank split, state_dict."""

    def __init__(self, seed: int, num_replicas: int, rank: int):
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ConfigError(f"invalid rank {rank} for {num_replicas} replicas")
        self.seed = int(seed)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.epoch = 0
        self._cache: tuple[tuple[int, int], list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": type(self).__name__, "seed": self.seed, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        kind = state.get("kind", type(self).__name__)
        if kind != type(self).__name__:
            raise ConfigError(f"sampler state is for a {kind}, not a {type(self).__name__}")
        self.seed = int(state["seed"])
        self.epoch = int(state["epoch"])
        self._cache = None

    def _global_batches(self, epoch: int) -> list[list[int]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self._cache is None or self._cache[0] != (epoch, self.seed):
            self._cache = ((epoch, self.seed), self._global_batches(epoch))
        batches = self._cache[1]
        n = len(batches) - len(batches) % self.num_replicas
        return batches[self.rank:n:self.num_replicas]


class IdentitySampler(_EpochSampler, Sampler[int]):
    """P×K identity sampler yielding flat indices (``batch_size`` consecutive ones form a batch).

    Use with ``DataLoader(..., sampler=s, batch_size=batch_size, drop_last=True)``.
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, *, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        _EpochSampler.__init__(self, seed, num_replicas, rank)
        self.groups = _group_by_pid(pids)
        self.batch_size, self.num_instances = int(batch_size), int(num_instances)
        self.p = _check_pk(self.batch_size, self.num_instances, len(self.groups))

    def _global_batches(self, epoch: int) -> list[list[int]]:
        return pk_batches(self.groups, self.p, self.num_instances, _epoch_rng(self.seed, epoch))

    def num_batches(self) -> int:
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[int]:
        for batch in self.rank_batches():
            yield from batch

    def __len__(self) -> int:
        return self.num_batches() * self.batch_size


class ConcatSampler(IdentitySampler):
    """Ablation baseline ("concat"): generated images are just more images of their source's identity.

    A plain :class:`IdentitySampler` over the whole pool (real + generated items, each with its pid).
    """

    @classmethod
    def from_items(cls, items: Sequence[Any], batch_size: int, num_instances: int, **kwargs: Any) -> ConcatSampler:
        """Build from pool items (anything with a ``pid`` attribute, e.g. :class:`dlcr.data.loaders.Item`)."""
        return cls([it.pid for it in items], batch_size, num_instances, **kwargs)


def progressive_count(epoch: int, num_partitions: int = 4, every: int = 5) -> int:
    """Number of partitions allowed at 0-based ``epoch``: one more every ``every`` epochs (DESIGN §8)."""
    return min(num_partitions, 1 + max(0, int(epoch)) // every)


def official_prefix(epoch: int) -> int:
    """Number of variants (a prefix in variant order) the released code allows at 0-based ``epoch``.

    The released code counts epochs from 1 and switches at epochs 6/11/16; our epoch ``e`` is its
    epoch ``e + 1``: 0-4 → 2 variants, 5-9 → 5, 10-14 → 7, 15+ → 10.
    """
    e1 = int(epoch) + 1
    n = OFFICIAL_SCHEDULE[0][1]
    for start, count in OFFICIAL_SCHEDULE:
        if e1 >= start:
            n = count
    return n


class PairedSampler(_EpochSampler, Sampler[list[int]]):
    """DLCR's batches: ``batch_size`` real images (P×K over the real items) followed by, for each of
    them in order, one of *its own* generated variants allowed at this epoch (uniformly chosen).

    A real image with no allowed variant is paired with itself; those are counted in
    :attr:`self_paired` (for this rank's current epoch). Use as ``DataLoader(batch_sampler=s)``;
    every batch has ``2 * batch_size`` pool indices.

    Real item ``i`` is pool index ``i`` (``add_generated`` keeps the real items first, in order);
    ``variants[i]`` lists the pool indices of real item ``i``'s variants in variant order (as
    :func:`dlcr.data.loaders.add_generated` returns them) and ``variant_partition[i]`` their
    partitions; a negative partition is derived from the variant's position by the planner's own
    rule (:func:`dlcr.generation.planning.partition_of`). Schedules:

    * ``progressive``: partitions ``< min(num_partitions, 1 + epoch // every)`` (0-based epochs);
    * ``official``: the first 2/5/7/10 variants, switching at 0-based epochs 5/10/15 (the released
      code's 1-based epochs 6/11/16);
    * ``all``: every variant from the first epoch.
    """

    def __init__(self, real_pids: Sequence[int], variants: Sequence[Sequence[int]],
                 variant_partition: Sequence[Sequence[int]], batch_size: int, num_instances: int, *,
                 schedule: Schedule = "progressive", num_partitions: int = 4, every: int = 5, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0):
        _EpochSampler.__init__(self, seed, num_replicas, rank)
        if schedule not in ("progressive", "official", "all"):
            raise ConfigError(f"unknown schedule {schedule!r} (progressive, official or all)")
        if len(variants) != len(real_pids) or len(variant_partition) != len(real_pids):
            raise ConfigError(f"variants ({len(variants)}) and variant_partition ({len(variant_partition)}) "
                              f"must have one entry per real item ({len(real_pids)})")
        if num_partitions < 1 or every < 1:
            raise ConfigError("num_partitions and every must be positive")
        self.schedule: Schedule = schedule
        self.num_partitions, self.every = int(num_partitions), int(every)
        self.batch_size, self.num_instances = int(batch_size), int(num_instances)
        self.groups = _group_by_pid(real_pids)
        self.p = _check_pk(self.batch_size, self.num_instances, len(self.groups))
        self.variants = [list(map(int, v)) for v in variants]
        self.partitions: list[list[int]] = []
        for i, (v, parts) in enumerate(zip(self.variants, variant_partition, strict=True)):
            if len(parts) != len(v):
                raise ConfigError(f"real item {i}: {len(v)} variants but {len(parts)} partitions")
            row = []
            for pos, part in enumerate(parts):
                part = int(part)
                if part < 0:
                    part = partition_of(pos, len(v), self.num_partitions)
                if part >= self.num_partitions:
                    raise ConfigError(f"real item {i}: variant partition {part} is not below "
                                      f"num_partitions={self.num_partitions}")
                row.append(part)
            self.partitions.append(row)
        self.self_paired = 0

    # -- schedule -------------------------------------------------------------------------------

    def allowed_partitions(self, epoch: int) -> frozenset[int] | None:
        """Allowed partitions (progressive), or None when the schedule is not partition-based."""
        if self.schedule != "progressive":
            return None
        return frozenset(range(progressive_count(epoch, self.num_partitions, self.every)))

    def allowed_prefix(self, epoch: int) -> int | None:
        """Allowed number of leading variants (official), or None when not prefix-based."""
        return official_prefix(epoch) if self.schedule == "official" else None

    def allowed(self, epoch: int) -> list[list[int]]:
        """For each real item, the pool indices of the variants it may be paired with at ``epoch``."""
        if self.schedule == "all":
            return [list(v) for v in self.variants]
        if self.schedule == "official":
            n = official_prefix(epoch)
            return [v[:n] for v in self.variants]
        parts = self.allowed_partitions(epoch)
        assert parts is not None
        return [[ix for ix, p in zip(v, ps, strict=True) if p in parts]
                for v, ps in zip(self.variants, self.partitions, strict=True)]

    # -- batches --------------------------------------------------------------------------------

    def _global_batches(self, epoch: int) -> list[list[int]]:
        real = pk_batches(self.groups, self.p, self.num_instances, _epoch_rng(self.seed, epoch, 0))
        # pairing uses its own stream, so the real part of an epoch does not depend on the schedule
        rng = _epoch_rng(self.seed, epoch, 1)
        allowed = self.allowed(epoch)
        out = []
        for batch in real:
            gen = []
            for i in batch:
                options = allowed[i]
                gen.append(options[int(rng.integers(len(options)))] if options else i)
            out.append(batch + gen)
        return out

    def rank_batches(self, epoch: int | None = None) -> list[list[int]]:
        batches = super().rank_batches(epoch)
        self.self_paired = sum(1 for b in batches for r, g in zip(b[:self.batch_size], b[self.batch_size:],
                                                                  strict=True) if r == g)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.rank_batches()

    def __len__(self) -> int:
        return len(self.rank_batches())

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "schedule": self.schedule}
