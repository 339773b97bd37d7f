from collections import Counter

import pytest

from dlcr.data.samplers import (
    IdentitySampler,
    PairedSampler,
    official_prefix,
    progressive_count,
)
from dlcr.errors import ConfigError

# 12 identities with 2..9 images each, in a shuffled order
PIDS = [p for p in range(12) for _ in range(2 + (p * 5) % 8)]
PIDS = PIDS[::2] + PIDS[1::2]


def chunks(seq, n):
    return [seq[i:i + n] for i in range(0, len(seq), n)]


def test_identity_sampler_pk_structure():
    s = IdentitySampler(PIDS, batch_size=8, num_instances=4, seed=3, batching="distinct")
    flat = list(s)
    assert len(flat) == len(s) > 0 and len(flat) % 8 == 0
    for batch in chunks(flat, 8):
        counts = Counter(PIDS[i] for i in batch)
        assert len(counts) == 2 and set(counts.values()) == {4}
    # an identity with 2 images still fills K=4 slots (with replacement)
    small_id = next(p for p in set(PIDS) if PIDS.count(p) < 4)
    drawn = [i for i in flat if PIDS[i] == small_id]
    assert len(drawn) in (0, 4)


def test_identity_sampler_deterministic_and_epoch_dependent():
    a = IdentitySampler(PIDS, 8, 4, seed=1)
    b = IdentitySampler(PIDS, 8, 4, seed=1)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(IdentitySampler(PIDS, 8, 4, seed=2)) != list(IdentitySampler(PIDS, 8, 4, seed=1))


def test_identity_sampler_ddp_disjoint():
    full = IdentitySampler(PIDS, 8, 4, seed=5, batching="distinct")
    ranks = [IdentitySampler(PIDS, 8, 4, seed=5, num_replicas=2, rank=r, batching="distinct") for r in range(2)]
    for s in (full, *ranks):
        s.set_epoch(4)
    parts = [chunks(list(s), 8) for s in ranks]
    assert len(parts[0]) == len(parts[1]) == len(full.rank_batches()) // 2
    assert len(ranks[0]) == len(ranks[1])
    # interleaved, the ranks' batches are exactly the single-process batches (truncated to even)
    merged = [b for pair in zip(*parts, strict=True) for b in pair]
    assert merged == full.rank_batches()[:len(merged)]
    # an image goes to at most one rank (ids with >= K images are never repeated within an epoch)
    many = {p for p in set(PIDS) if PIDS.count(p) >= 4}
    seen = [{i for b in p for i in b if PIDS[i] in many} for p in parts]
    assert not seen[0] & seen[1]


def test_identity_sampler_state_roundtrip():
    a = IdentitySampler(PIDS, 8, 4, seed=9)
    a.set_epoch(7)
    b = IdentitySampler(PIDS, 8, 4, seed=0)
    b.load_state_dict(a.state_dict())
    assert b.epoch == 7 and list(a) == list(b)
    with pytest.raises(ConfigError):
        PairedSampler([0, 0], [[], []], [[], []], 2, 2).load_state_dict(a.state_dict())


def test_identity_sampler_config_errors():
    with pytest.raises(ConfigError, match="multiple"):
        IdentitySampler(PIDS, 10, 4)
    with pytest.raises(ConfigError, match="only 12"):
        IdentitySampler(PIDS, 4 * 13, 4)
    with pytest.raises(ConfigError):
        IdentitySampler(PIDS, 8, 4, num_replicas=2, rank=2)


# ---- paired sampler ----------------------------------------------------------------------------

N_REAL = len(PIDS)


def make_pool(k: int = 8, skip_every: int = 5, partitions: str = "given"):
    """Real items 0..N_REAL-1, then k variants for each real item except every ``skip_every``-th."""
    variants, parts = [], []
    nxt = N_REAL
    for i in range(N_REAL):
        if skip_every and i % skip_every == 0:
            variants.append([])
            parts.append([])
            continue
        variants.append(list(range(nxt, nxt + k)))
        nxt += k
        parts.append([j * 4 // k for j in range(k)] if partitions == "given" else [-1] * k)
    return variants, parts


def check_pairing(s: PairedSampler, epoch: int):
    s.set_epoch(epoch)
    allowed = s.allowed(epoch)
    selfs = 0
    batches = list(s)
    assert len(batches) == len(s) > 0
    for b in batches:
        assert len(b) == 2 * s.batch_size
        real, gen = b[:s.batch_size], b[s.batch_size:]
        assert all(i < N_REAL for i in real)
        counts = Counter(PIDS[i] for i in real)
        assert len(counts) == s.batch_size // s.num_instances and set(counts.values()) == {s.num_instances}
        for r, g in zip(real, gen, strict=True):
            if allowed[r]:
                assert g in allowed[r]
            else:
                assert g == r
                selfs += 1
    assert s.self_paired == selfs
    return batches


def test_progressive_allowed_partitions_per_epoch():
    variants, parts = make_pool()
    s = PairedSampler(PIDS, variants, parts, 8, 4, schedule="progressive", every=5)
    expect = {0: {0}, 4: {0}, 5: {0, 1}, 9: {0, 1}, 10: {0, 1, 2}, 14: {0, 1, 2}, 15: {0, 1, 2, 3}, 60: {0, 1, 2, 3}}
    for epoch, allowed_parts in expect.items():
        assert s.allowed_partitions(epoch) == allowed_parts
        assert progressive_count(epoch) == len(allowed_parts)
        per_item = s.allowed(epoch)
        for i, v in enumerate(variants):
            assert per_item[i] == [ix for ix, p in zip(v, parts[i], strict=True) if p in allowed_parts]
    assert [len(x) for x in s.allowed(0)][1] == 2  # 8 variants / 4 partitions
    assert s.allowed_prefix(0) is None


def test_official_and_all_schedules():
    variants, parts = make_pool(k=10)
    off = PairedSampler(PIDS, variants, parts, 8, 4, schedule="official")
    for epoch, n in {0: 2, 5: 2, 6: 5, 10: 5, 11: 7, 15: 7, 16: 10, 59: 10}.items():
        assert official_prefix(epoch) == n == off.allowed_prefix(epoch)
        assert off.allowed(epoch)[1] == variants[1][:n]
    assert off.allowed_partitions(3) is None
    al = PairedSampler(PIDS, variants, parts, 8, 4, schedule="all")
    assert al.allowed(0) == variants


@pytest.mark.parametrize("schedule", ["progressive", "official", "all"])
def test_pairing_contract(schedule):
    variants, parts = make_pool()
    s = PairedSampler(PIDS, variants, parts, 8, 4, schedule=schedule, seed=1, batching="distinct")
    for epoch in (0, 7, 16):
        check_pairing(s, epoch)
    assert s.self_paired > 0  # every 5th real item has no variant at all


def test_pairing_draws_all_allowed_variants_uniformly():
    variants, parts = make_pool(k=4, skip_every=0)
    s = PairedSampler(PIDS, variants, parts, 8, 4, schedule="all", seed=0, batching="distinct")
    pos = Counter()
    for epoch in range(300):
        for b in check_pairing(s, epoch):
            for r, g in zip(b[:8], b[8:], strict=True):
                pos[variants[r].index(g)] += 1
    total = sum(pos.values())
    assert set(pos) == {0, 1, 2, 3}
    assert all(abs(c / total - 0.25) < 0.02 for c in pos.values()), pos


def test_real_part_independent_of_schedule_and_deterministic():
    variants, parts = make_pool()
    a = PairedSampler(PIDS, variants, parts, 8, 4, schedule="progressive", seed=4)
    b = PairedSampler(PIDS, variants, parts, 8, 4, schedule="all", seed=4)
    c = PairedSampler(PIDS, variants, parts, 8, 4, schedule="progressive", seed=4)
    for s in (a, b, c):
        s.set_epoch(2)
    assert [x[:8] for x in a] == [x[:8] for x in b]
    assert list(a) == list(c)
    d = PairedSampler(PIDS, variants, parts, 8, 4, schedule="progressive", seed=0)
    d.load_state_dict(a.state_dict())
    assert list(d) == list(a)


def test_paired_ddp_disjoint():
    variants, parts = make_pool()
    ranks = [PairedSampler(PIDS, variants, parts, 8, 4, seed=2, num_replicas=2, rank=r, batching="distinct")
             for r in range(2)]
    full = PairedSampler(PIDS, variants, parts, 8, 4, seed=2, batching="distinct")
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == len(full) // 2
    assert [x for pair in zip(b0, b1, strict=True) for x in pair] == list(full)[:2 * len(b0)]
    many = {p for p in set(PIDS) if PIDS.count(p) >= 4}
    r0 = {i for b in b0 for i in b[:8] if PIDS[i] in many}
    r1 = {i for b in b1 for i in b[:8] if PIDS[i] in many}
    assert not r0 & r1


def test_partitions_derived_from_position_and_checked():
    variants, _ = make_pool()
    _, derived = make_pool(partitions="derived")
    s = PairedSampler(PIDS, variants, derived, 8, 4)
    assert s.partitions[1] == [0, 0, 1, 1, 2, 2, 3, 3]
    # K=10 splits 2/3/2/3, as the planner does, so the released 2/5/7/10 prefixes line up
    ten = [[len(PIDS) + j for j in range(10)]] + [[] for _ in PIDS[1:]]
    s10 = PairedSampler(PIDS, ten, [[-1] * 10] + [[] for _ in PIDS[1:]], 8, 4)
    assert s10.partitions[0] == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    bad = [[7] * len(v) for v in variants]
    with pytest.raises(ConfigError, match="num_partitions"):
        PairedSampler(PIDS, variants, bad, 8, 4)
    with pytest.raises(ConfigError, match="one entry per real item"):
        PairedSampler(PIDS, variants[:-1], derived, 8, 4)


def test_concat_sampler_uses_generated_items_as_more_images():
    class It:
        def __init__(self, pid):
            self.pid = pid

    variants, _ = make_pool()
    pool_pids = list(PIDS) + [PIDS[i] for i, v in enumerate(variants) for _ in v]
    s = IdentitySampler([It(p).pid for p in pool_pids], 8, 4, seed=0, batching="distinct")
    flat = list(s)
    assert any(i >= N_REAL for i in flat)
    for batch in chunks(flat, 8):
        assert set(Counter(pool_pids[i] for i in batch).values()) == {4}
