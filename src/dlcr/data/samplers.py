"""Identity-balanced samplers for re-id training, including DLCR's real/generated pairing.

Every sampler is a pure function of ``(seed, epoch, rank)``: each epoch draws its batches from a
fresh generator seeded with ``(seed, epoch)``, every rank computes the same global list of batches
and keeps every ``num_replicas``-th one starting at ``rank`` (all ranks run the same number of
steps). Ranks therefore see disjoint batches, and a resumed run (``load_state_dict``) reproduces the
epoch exactly. Call ``set_epoch`` before each epoch, as with :class:`torch.utils.data.DistributedSampler`.

P×K batches: ``P = batch_size / num_instances`` chunks of ``K = num_instances`` images of one identity.
Per epoch, each identity's images are shuffled and cut into chunks of K (the incomplete remainder is
dropped; an identity with fewer than K images gets one chunk drawn with replacement). The chunks
then become batches in one of two ways (``batching``):

* ``"cal"`` (default; CAL's ``DistributedRandomIdentitySampler`` in guxinqian/Simple-CCReID
  ``data/samplers.py``, which the released DLCR code trains with): all chunks are shuffled into one
  list, the list is cut to a multiple of ``num_replicas`` and dealt out chunk by chunk (rank ``r``
  gets chunks ``r, r + R, ...``), and each rank groups its consecutive chunks P at a time, dropping
  an incomplete last batch (its ``DataLoader(drop_last=True)``). Every chunk of the epoch is used
  but for that tail, and a batch may hold two chunks of the same identity.
* ``"distinct"`` (BoT / torchreid ``RandomIdentitySampler``): batches are formed by repeatedly
  choosing P *distinct* identities that still have chunks, until fewer than P remain (the chunks
  left then are dropped, so epochs are shorter when identities are unbalanced).

The random generator differs from the reference (numpy's PCG64 seeded with ``(seed, epoch)`` instead
of the global ``random`` / ``numpy.random`` states seeded with ``seed + epoch``), so the index lists
are not the reference's; their structure and lengths are (tests/reference/test_ref_sampler.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
from torch.utils.data import Sampler

from dlcr.errors import ConfigError
from dlcr.utils.partitions import partition_of

Schedule = Literal["progressive", "official", "all"]
Batching = Literal["cal", "distinct"]
BATCHINGS: tuple[str, ...] = ("cal", "distinct")

#: The released DLCR code's curriculum (CroitoruAlin/dlcr, Simple-CCReID/configs/default_img.py,
#: ``CL.THRESHOLDS`` / ``CL.PERCENTAGES``): while the epoch counter is ``<= threshold`` the first
#: ``int(num_variants * percentage)`` variants may be drawn; after the last threshold, all of them.
OFFICIAL_THRESHOLDS: tuple[int, ...] = (5, 10, 15)
OFFICIAL_PERCENTAGES: tuple[float, ...] = (0.25, 0.5, 0.75)


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


def _chunks(groups: dict[int, list[int]], k: int, rng: np.random.Generator) -> dict[int, list[list[int]]]:
    """Each identity's images shuffled and cut into chunks of ``k`` (remainder dropped); an identity
    with fewer than ``k`` images gets one chunk of ``k`` draws with replacement."""
    chunks: dict[int, list[list[int]]] = {}
    for pid, idxs in groups.items():
        arr = np.asarray(idxs, dtype=np.int64)
        arr = rng.choice(arr, size=k, replace=True) if len(arr) < k else rng.permutation(arr)
        n = len(arr) // k
        chunks[pid] = [arr[j * k:(j + 1) * k].tolist() for j in range(n)]
    return chunks


def pk_batches(groups: dict[int, list[int]], p: int, k: int, rng: np.random.Generator) -> list[list[int]]:
    """One epoch of P×K batches of P *distinct* identities (``batching="distinct"``; global, before
    splitting across ranks)."""
    chunks = _chunks(groups, k, rng)
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


def cal_batches(groups: dict[int, list[int]], p: int, k: int, rng: np.random.Generator,
                num_replicas: int = 1) -> list[list[int]]:
    """One epoch of CAL's batches (``batching="cal"``), as a global list whose ``[r::num_replicas]``
    slice is rank ``r``'s batches.

    The shuffled chunk list is cut to ``(L // R) * R`` chunks (``L`` chunks, ``R`` ranks; the
    reference's ``total_size``), rank ``r`` takes chunks ``r::R`` and groups them P at a time
    (incomplete last batch dropped). Rank ``r``'s ``j``-th batch is entry ``j * R + r``.
    """
    per_pid = _chunks(groups, k, rng)
    chunks = [c for pid in groups for c in per_pid[pid]]
    order = rng.permutation(len(chunks))
    chunks = [chunks[i] for i in order]
    r = int(num_replicas)
    per_rank = len(chunks) // r
    chunks = chunks[:per_rank * r]
    dealt = [chunks[rank::r] for rank in range(r)]
    out: list[list[int]] = []
    for j in range(per_rank // p):
        for mine in dealt:
            out.append([i for c in mine[j * p:(j + 1) * p] for i in c])
    return out


def _check_batching(batching: str) -> str:
    if batching not in BATCHINGS:
        raise ConfigError(f"unknown batching {batching!r} ({' or '.join(BATCHINGS)})")
    return batching


def _epoch_batches(groups: dict[int, list[int]], p: int, k: int, rng: np.random.Generator, batching: str,
                   num_replicas: int) -> list[list[int]]:
    if batching == "cal":
        return cal_batches(groups, p, k, rng, num_replicas)
    return pk_batches(groups, p, k, rng)


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

    Use with ``DataLoader(..., sampler=s, batch_size=batch_size, drop_last=True)``. ``batch_size`` is
    this rank's batch; ``batching`` is ``"cal"`` (default, the reference's) or ``"distinct"`` (see the
    module docstring).
    """

    def __init__(self, pids: Sequence[int], batch_size: int, num_instances: int, *, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, batching: Batching = "cal"):
        _EpochSampler.__init__(self, seed, num_replicas, rank)
        self.batching: Batching = _check_batching(batching)  # type: ignore[assignment]
        self.groups = _group_by_pid(pids)
        self.batch_size, self.num_instances = int(batch_size), int(num_instances)
        self.p = _check_pk(self.batch_size, self.num_instances, len(self.groups))

    def _global_batches(self, epoch: int) -> list[list[int]]:
        return _epoch_batches(self.groups, self.p, self.num_instances, _epoch_rng(self.seed, epoch),
                              self.batching, self.num_replicas)

    def num_batches(self) -> int:
        return len(self.rank_batches())

    def __iter__(self) -> Iterator[int]:
        for batch in self.rank_batches():
            yield from batch

    def __len__(self) -> int:
        return self.num_batches() * self.batch_size


def progressive_count(epoch: int, num_partitions: int = 4, every: int = 5) -> int:
    """Number of partitions allowed at 0-based ``epoch``: one more every ``every`` epochs (docs/design.md §8)."""
    return min(num_partitions, 1 + max(0, int(epoch)) // every)


def official_fraction(epoch: int) -> float:
    """The released code's fraction of the variants allowed at 0-based ``epoch``.

    Its dataset keeps an epoch counter that starts at 0 and is incremented after each training epoch
    (``ImageDatasetPrcc.update_epoch_count``), so during our epoch ``e`` it reads ``e``; the fraction
    is the first percentage whose threshold is ``>= e``, else 1: epochs 0-5 → 0.25, 6-10 → 0.5,
    11-15 → 0.75, 16+ → 1.
    """
    e = int(epoch)
    for threshold, fraction in zip(OFFICIAL_THRESHOLDS, OFFICIAL_PERCENTAGES, strict=True):
        if e <= threshold:
            return fraction
    return 1.0


def official_count(epoch: int, num_variants: int = 10) -> int:
    """How many leading variants of an image with ``num_variants`` the released code draws from at
    0-based ``epoch``: ``max(1, int(num_variants * fraction))`` (0 when the image has none)."""
    n = int(num_variants)
    return max(1, int(n * official_fraction(epoch))) if n > 0 else 0


def official_prefix(epoch: int) -> int:
    """:func:`official_count` for the released code's 10 variants per image: 2 / 5 / 7 / 10 variants
    at 0-based epochs 0-5 / 6-10 / 11-15 / 16+."""
    return official_count(epoch, 10)


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
    rule (:func:`dlcr.utils.partitions.partition_of`). Schedules:

    * ``progressive``: partitions ``< min(num_partitions, 1 + epoch // every)`` (0-based epochs);
    * ``official``: the released code's curriculum, the first ``max(1, int(n * f))`` of an image's
      ``n`` variants with ``f`` = 0.25 / 0.5 / 0.75 / 1 at 0-based epochs 0-5 / 6-10 / 11-15 / 16+
      (2 / 5 / 7 / 10 of 10 variants; :func:`official_count`);
    * ``all``: every variant from the first epoch.

    The real half is an :class:`IdentitySampler` epoch over the real items (same ``batching``), as the
    released code draws it with CAL's sampler; the pairing draws from a second stream.
    """

    def __init__(self, real_pids: Sequence[int], variants: Sequence[Sequence[int]],
                 variant_partition: Sequence[Sequence[int]], batch_size: int, num_instances: int, *,
                 schedule: Schedule = "progressive", num_partitions: int = 4, every: int = 5, seed: int = 0,
                 num_replicas: int = 1, rank: int = 0, batching: Batching = "cal"):
        _EpochSampler.__init__(self, seed, num_replicas, rank)
        self.batching: Batching = _check_batching(batching)  # type: ignore[assignment]
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

    def allowed_prefix(self, epoch: int, num_variants: int = 10) -> int | None:
        """Allowed number of leading variants of an image with ``num_variants`` (official), or None
        when not prefix-based."""
        return official_count(epoch, num_variants) if self.schedule == "official" else None

    def allowed(self, epoch: int) -> list[list[int]]:
        """For each real item, the pool indices of the variants it may be paired with at ``epoch``."""
        if self.schedule == "all":
            return [list(v) for v in self.variants]
        if self.schedule == "official":
            return [v[:official_count(epoch, len(v))] for v in self.variants]
        parts = self.allowed_partitions(epoch)
        assert parts is not None
        return [[ix for ix, p in zip(v, ps, strict=True) if p in parts]
                for v, ps in zip(self.variants, self.partitions, strict=True)]

    # -- batches --------------------------------------------------------------------------------

    def _global_batches(self, epoch: int) -> list[list[int]]:
        real = _epoch_batches(self.groups, self.p, self.num_instances, _epoch_rng(self.seed, epoch, 0),
                              self.batching, self.num_replicas)
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
