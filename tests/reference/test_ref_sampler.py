"""dlcr's identity sampler against a re-statement of CAL's DistributedRandomIdentitySampler.

Reference: guxinqian/Simple-CCReID ``data/samplers.py`` (``DistributedRandomIdentitySampler``), used
through ``data/__init__.py`` (``DataLoader(sampler=..., batch_size=TRAIN_BATCH, drop_last=True)``) and
``main.py`` (``train_sampler.set_epoch(epoch)`` before every epoch). The released DLCR code draws its
real images with the very same sampler (CroitoruAlin/dlcr ``Simple-CCReID/data/__init__.py``).

Per epoch the reference seeds the global ``random`` and ``numpy.random`` with ``seed + epoch``,
shuffles each identity's images (drawing K with replacement, ``np.random.choice``, when it has fewer
than K), cuts them into chunks of K dropping the remainder, shuffles the chunk list, cuts it to a
multiple of the number of ranks, deals it out chunk by chunk, and the DataLoader groups P = batch / K
consecutive chunks into a batch, dropping an incomplete last one.

Why the index lists are not compared for equality: dlcr draws from numpy's PCG64 seeded with the pair
``(seed, epoch)`` (so that seed s's epoch e+1 is not seed s+1's epoch e, as ``seed + epoch`` makes
it), not from the Mersenne-Twister states the reference uses, and a different generator gives
different permutations by construction. What both must share, and what is compared exactly here, is
everything that does not depend on the generator: the number of batches per epoch and per rank, the
chunk structure of every batch, which images can appear (padding with replacement only below K, no
image twice in an epoch otherwise, every image of an identity whose size is a multiple of K present),
how many chunks of each identity an epoch holds when nothing is cut off, the split of the chunks over
the ranks, and that an epoch is a pure function of (seed, epoch).
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict

import numpy as np
import pytest
from torch.utils.data import DataLoader

from dlcr.data.samplers import IdentitySampler

# ---- re-statement of the reference ------------------------------------------------------------


def ref_epoch_batches(pids: list[int], num_instances: int, batch_size: int, seed: int, epoch: int,
                      num_replicas: int = 1, rank: int = 0) -> list[list[int]]:
    """One epoch of DistributedRandomIdentitySampler + DataLoader(drop_last=True) on one rank.

    ``random.Random(x)`` / ``np.random.RandomState(x)`` are the generators ``random.seed(x)`` /
    ``np.random.seed(x)`` reset globally; local instances give the same streams without side effects.
    """
    py_rng = random.Random(seed + epoch)
    np_rng = np.random.RandomState(seed + epoch)
    k = num_instances
    index_dic: dict[int, list[int]] = defaultdict(list)
    for index, pid in enumerate(pids):
        index_dic[pid].append(index)
    length = 0
    for idxs in index_dic.values():
        num = max(len(idxs), k)
        length += num - num % k
    if length // k % num_replicas != 0:
        num_samples = math.ceil((length // k - num_replicas) / num_replicas) * k
    else:
        num_samples = math.ceil(length / num_replicas)
    total_size = num_samples * num_replicas

    container = []
    for pid in index_dic:
        idxs = list(index_dic[pid])
        if len(idxs) < k:
            idxs = np_rng.choice(idxs, size=k, replace=True).tolist()
        py_rng.shuffle(idxs)
        chunk = []
        for idx in idxs:
            chunk.append(idx)
            if len(chunk) == k:
                container.append(chunk)
                chunk = []
    py_rng.shuffle(container)
    container = container[:total_size // k]
    container = container[rank:total_size // k:num_replicas]
    flat = [i for c in container for i in c]
    return [flat[s:s + batch_size] for s in range(0, len(flat) - batch_size + 1, batch_size)]


def ref_num_batches(pids: list[int], num_instances: int, batch_size: int, num_replicas: int) -> int:
    """len(DataLoader) of the reference: its sampler's __len__ (num_samples) // batch_size."""
    return len(ref_epoch_batches(pids, num_instances, batch_size, 0, 0, num_replicas, 0))


def ours(pids, batch_size, k, seed=0, epoch=0, num_replicas=1, rank=0, **kw) -> list[list[int]]:
    s = IdentitySampler(pids, batch_size, k, seed=seed, num_replicas=num_replicas, rank=rank, **kw)
    s.set_epoch(epoch)
    return [list(b) for b in s.rank_batches()]


# ---- fixed index lists -------------------------------------------------------------------------


def layout(sizes: list[int]) -> list[int]:
    """pids of a training list with ``sizes[p]`` images of person p, persons interleaved."""
    pids = [p for p, n in enumerate(sizes) for _ in range(n)]
    return pids[::3] + pids[1::3] + pids[2::3]


# unbalanced, with identities below K=4, exact multiples of K and remainders
SIZES = [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 6, 4, 11, 3, 20]
PIDS = layout(SIZES)
# every identity a multiple of K=4 (or below it): nothing but the last-chunk tail can be dropped
EXACT_SIZES = [4, 8, 12, 2, 16, 4, 8, 3, 4, 12, 8, 4, 8]
EXACT = layout(EXACT_SIZES)

GRID = [(8, 4, 1), (8, 4, 2), (8, 4, 3), (16, 4, 1), (16, 4, 2), (12, 2, 2), (6, 3, 1), (32, 8, 1), (32, 8, 2)]


def chunks_of(batch: list[int], k: int) -> list[list[int]]:
    assert len(batch) % k == 0
    return [batch[j:j + k] for j in range(0, len(batch), k)]


@pytest.mark.parametrize("batch_size,k,replicas", GRID)
def test_batches_per_epoch_and_rank_equal_the_reference(batch_size, k, replicas):
    for pids in (PIDS, EXACT):
        expect = ref_num_batches(pids, k, batch_size, replicas)
        for rank in range(replicas):
            s = IdentitySampler(pids, batch_size, k, seed=1, num_replicas=replicas, rank=rank)
            for epoch in (0, 3):
                s.set_epoch(epoch)
                assert s.num_batches() == expect
                # what a DataLoader(sampler=s, batch_size, drop_last=True) runs, as the reference's does
                loader = DataLoader(range(len(pids)), sampler=s, batch_size=batch_size, drop_last=True)
                assert len(loader) == expect
                assert len(list(loader)) == expect


def check_structure(batches: list[list[int]], pids: list[int], k: int, batch_size: int) -> None:
    for b in batches:
        assert len(b) == batch_size
        for c in chunks_of(b, k):
            assert len({pids[i] for i in c}) == 1  # a chunk is K images of one identity


def check_images(all_batches: list[list[int]], pids: list[int], k: int) -> None:
    """Padding with replacement only for identities below K; otherwise no image twice in an epoch."""
    sizes = Counter(pids)
    seen: Counter[int] = Counter(i for b in all_batches for i in b)
    for i, n in seen.items():
        if sizes[pids[i]] >= k:
            assert n == 1, f"image {i} of an identity with {sizes[pids[i]]} >= K images drawn {n} times"
    small = {p for p, n in sizes.items() if n < k}
    for b in all_batches:
        for c in chunks_of(b, k):
            if pids[c[0]] in small:
                assert len(set(c)) < k  # K draws from fewer than K images repeat one


@pytest.mark.parametrize("batch_size,k,replicas", GRID)
def test_batch_structure_and_image_use_match_the_reference(batch_size, k, replicas):
    for epoch in (0, 1, 5):
        mine = [ours(PIDS, batch_size, k, seed=2, epoch=epoch, num_replicas=replicas, rank=r) for r in range(replicas)]
        theirs = [ref_epoch_batches(PIDS, k, batch_size, 2, epoch, replicas, r) for r in range(replicas)]
        for side in (mine, theirs):
            for rank_batches in side:
                check_structure(rank_batches, PIDS, k, batch_size)
            check_images([b for rank_batches in side for b in rank_batches], PIDS, k)  # across ranks too
        assert [len(x) for x in mine] == [len(x) for x in theirs]


def per_identity_chunks(all_batches: list[list[int]], pids: list[int], k: int) -> Counter[int]:
    return Counter(pids[c[0]] for b in all_batches for c in chunks_of(b, k))


@pytest.mark.parametrize("batch_size,k,replicas", [(8, 4, 1), (8, 4, 2), (16, 4, 2), (16, 4, 1)])
def test_identity_chunk_counts_equal_the_reference_when_nothing_is_cut(batch_size, k, replicas):
    sizes = Counter(EXACT)
    total_chunks = sum(max(n, k) // k for n in sizes.values())
    assert total_chunks % (replicas * batch_size // k) == 0  # the layout leaves no tail to cut
    expected = Counter({p: max(n, k) // k for p, n in sizes.items()})
    for epoch in (0, 4):
        mine = [b for r in range(replicas)
                for b in ours(EXACT, batch_size, k, seed=0, epoch=epoch, num_replicas=replicas, rank=r)]
        theirs = [b for r in range(replicas) for b in ref_epoch_batches(EXACT, k, batch_size, 0, epoch, replicas, r)]
        assert per_identity_chunks(mine, EXACT, k) == expected == per_identity_chunks(theirs, EXACT, k)
        # every image of an identity with a multiple of K images appears exactly once
        full = {i for i, p in enumerate(EXACT) if sizes[p] >= k}
        for side in (mine, theirs):
            assert Counter(i for b in side for i in b if i in full) == Counter(full)


def test_a_batch_may_hold_two_chunks_of_one_identity_like_the_reference():
    # the reference groups consecutive chunks of a shuffled list: nothing keeps two chunks of the same
    # person apart. Two big identities and two small ones make that frequent.
    pids = layout([24, 24, 4, 4])
    def repeats(batches):
        return sum(1 for b in batches if len({pids[c[0]] for c in chunks_of(b, 4)}) < 2)
    mine = sum(repeats(ours(pids, 8, 4, seed=0, epoch=e)) for e in range(10))
    theirs = sum(repeats(ref_epoch_batches(pids, 4, 8, 0, e)) for e in range(10))
    assert mine > 0 and theirs > 0
    # the non-default 'distinct' batching (BoT / torchreid RandomIdentitySampler) never does
    assert sum(repeats(ours(pids, 8, 4, seed=0, epoch=e, batching="distinct")) for e in range(10)) == 0


def test_ranks_split_the_chunks_of_one_epoch_like_the_reference():
    k, bs, replicas = 4, 8, 3
    for side in ("ours", "ref"):
        per_rank = [ours(EXACT, bs, k, seed=4, epoch=2, num_replicas=replicas, rank=r) if side == "ours"
                    else ref_epoch_batches(EXACT, k, bs, 4, 2, replicas, r) for r in range(replicas)]
        assert len({len(b) for b in per_rank}) == 1  # every rank runs the same number of steps
        sets = [{i for b in rb for i in b if Counter(EXACT)[EXACT[i]] >= k} for rb in per_rank]
        for a in range(replicas):
            for b in range(a + 1, replicas):
                assert not sets[a] & sets[b]  # no image of an identity with >= K images on two ranks


def test_an_epoch_is_a_pure_function_of_seed_and_epoch():
    s = IdentitySampler(PIDS, 8, 4, seed=7)
    history = []
    for epoch in range(4):
        s.set_epoch(epoch)
        history.append(list(s))
    fresh = IdentitySampler(PIDS, 8, 4, seed=7)
    fresh.set_epoch(3)
    assert list(fresh) == history[3]  # as the reference: set_epoch alone decides the epoch
    assert len({tuple(h) for h in history}) == 4  # a new shuffle every epoch
    # the reference seeds with seed + epoch (seed 7's epoch 1 is seed 8's epoch 0) ...
    assert ref_epoch_batches(PIDS, 4, 8, 7, 1) == ref_epoch_batches(PIDS, 4, 8, 8, 0)
    # ... dlcr with the pair, so neighbouring seeds do not replay each other's epochs
    assert ours(PIDS, 8, 4, seed=7, epoch=1) != ours(PIDS, 8, 4, seed=8, epoch=0)
