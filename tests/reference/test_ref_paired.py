"""DLCR's paired real/generated batches and its curriculum against the released code.

References: CroitoruAlin/dlcr

* ``Simple-CCReID/data/dataloader_prcc.py`` (``ImageDatasetPrcc``): each training image comes with its
  strip of 10 generated variants; ``__getitem__`` returns the real image and *one* variant of that
  same image, drawn uniformly among the first ``max(1, int(10 * p))`` where ``p`` is
  ``_decide_percentage()``: the first ``CL.PERCENTAGES[i]`` whose ``CL.THRESHOLDS[i] >= epoch_count``,
  else 1. (The file calls ``random.choice(list(random.range(...)))``; ``random`` has no ``range``, so
  the uniform choice over ``range(...)`` is what is meant and what is re-stated here.)
* ``Simple-CCReID/configs/default_img.py``: ``CL.THRESHOLDS = [5, 10, 15]``,
  ``CL.PERCENTAGES = [0.25, 0.5, 0.75]``, ``DATA.MAX_BATCH_SIZE = 64``, ``DATA.TRAIN_BATCH = 32``.
* ``Simple-CCReID/train.py`` (``train_cal_generated_data``): ``imgs = cat(imgs, gen_imgs)``,
  ``pids = cat(pids, pids)``, both cut to ``MAX_BATCH_SIZE`` (a no-op: 2 × 32 = 64), and
  ``trainloader.dataset.update_epoch_count()`` after the epoch, so ``epoch_count`` reads ``e``
  during epoch ``e`` (0-based, as ``main.py``'s loop).
* ``Simple-CCReID/data/__init__.py``: the real images come from CAL's
  ``DistributedRandomIdentitySampler`` (its structure is compared in test_ref_sampler.py).

dlcr builds the same batch in its sampler: ``batch[:B]`` the real images, ``batch[B:]`` one variant of
each, in the same order. The draws use a different generator (see test_ref_sampler.py), so the
compared quantities are the sets each draw is made from, the layout, and the uniformity of the draw.
"""

from __future__ import annotations

from collections import Counter

import pytest

from dlcr.data.samplers import PairedSampler, official_count, official_prefix

# ---- re-statement of the released code --------------------------------------------------------

REF_THRESHOLDS = [5, 10, 15]
REF_PERCENTAGES = [0.25, 0.5, 0.75]


class RefCurriculum:
    """ImageDatasetPrcc's epoch counter and the variant positions one ``__getitem__`` draws from."""

    def __init__(self) -> None:
        self.epoch_count = 0

    def update_epoch_count(self) -> None:
        self.epoch_count += 1

    def _decide_percentage(self) -> float:
        for i, threshold in enumerate(REF_THRESHOLDS):
            if self.epoch_count <= threshold:
                return REF_PERCENTAGES[i]
        return 1.0

    def positions(self, num_variants: int = 10) -> list[int]:
        return list(range(0, max(1, int(num_variants * self._decide_percentage()))))


def ref_training_epochs(num_epochs: int) -> list[list[int]]:
    """main.py's loop with train_cal_generated_data: the positions drawable during each epoch."""
    dataset = RefCurriculum()
    out = []
    for _epoch in range(num_epochs):
        out.append(dataset.positions())
        dataset.update_epoch_count()  # at the end of train_cal_generated_data
    return out


# ---- fixed pool --------------------------------------------------------------------------------

SIZES = [1, 2, 3, 4, 5, 6, 8, 9, 12, 7]
REAL_PIDS = [p for p, n in enumerate(SIZES) for _ in range(n)]
REAL_PIDS = REAL_PIDS[::2] + REAL_PIDS[1::2]
N = len(REAL_PIDS)


def make_pool(n_variants=lambda i: 10):
    """Real items 0..N-1 first, then each one's variants in variant order (as add_generated does)."""
    variants, parts, nxt = [], [], N
    for i in range(N):
        k = n_variants(i)
        variants.append(list(range(nxt, nxt + k)))
        parts.append([-1] * k)  # partitions derived from the position by the planner's rule
        nxt += k
    pool_pids = REAL_PIDS + [REAL_PIDS[i] for i, v in enumerate(variants) for _ in v]
    return variants, parts, pool_pids


def test_official_schedule_draws_from_the_released_positions_every_epoch():
    expected = ref_training_epochs(26)
    variants, parts, _ = make_pool()
    s = PairedSampler(REAL_PIDS, variants, parts, 8, 4, schedule="official")
    for epoch, positions in enumerate(expected):
        assert official_prefix(epoch) == len(positions)
        assert s.allowed_prefix(epoch) == len(positions)
        allowed = s.allowed(epoch)
        for i, v in enumerate(variants):
            assert allowed[i] == [v[j] for j in positions]
    # the switches: 2 variants in epochs 0-5, 5 in 6-10, 7 in 11-15, all 10 from epoch 16
    assert [len(p) for p in expected] == [2] * 6 + [5] * 5 + [7] * 5 + [10] * 10


@pytest.mark.parametrize("num_variants", [1, 2, 3, 4, 7, 9, 10, 12])
def test_official_count_follows_the_released_rule_for_any_number_of_variants(num_variants):
    ref = RefCurriculum()
    variants, parts, _ = make_pool(lambda i: num_variants)
    s = PairedSampler(REAL_PIDS, variants, parts, 8, 4, schedule="official")
    for epoch in range(20):
        n = len(ref.positions(num_variants))
        assert official_count(epoch, num_variants) == n == s.allowed_prefix(epoch, num_variants)
        assert s.allowed(epoch)[0] == variants[0][:n]
        ref.update_epoch_count()


def test_paired_batch_layout_equals_the_released_batch():
    variants, parts, pool_pids = make_pool(lambda i: (10, 3, 7)[i % 3])
    ref = RefCurriculum()
    batch_size = 8  # real images per batch; the step sees 2 × batch_size, as cat(imgs, gen_imgs)
    s = PairedSampler(REAL_PIDS, variants, parts, batch_size, 4, schedule="official", seed=3)
    for epoch in range(18):
        s.set_epoch(epoch)
        batches = list(s)
        assert len(batches) == len(s) > 0
        for b in batches:
            real, gen = b[:batch_size], b[batch_size:]
            assert all(i < N for i in real)  # the first half: real images, a P×K batch
            # pids = cat(pids, pids): the generated half carries its real image's identity, in order
            assert [pool_pids[i] for i in b] == [REAL_PIDS[i] for i in real] * 2
            for r, g in zip(real, gen, strict=True):
                # one variant of that very image, among the positions the released code draws from
                assert g in [variants[r][j] for j in ref.positions(len(variants[r]))]
        ref.update_epoch_count()


def test_the_draw_is_uniform_and_independent_per_occurrence():
    # identity 0 has one image: a chunk holds it K times, and the released code draws a variant per
    # __getitem__ call, i.e. independently for each occurrence
    variants, parts, _ = make_pool()
    counts: Counter[int] = Counter()
    split_pairs = 0
    for seed in range(5):
        s = PairedSampler(REAL_PIDS, variants, parts, 8, 4, schedule="official", seed=seed)
        for epoch in range(6):  # epochs 0-5: positions {0, 1}
            s.set_epoch(epoch)
            for b in s:
                for r, g in zip(b[:8], b[8:], strict=True):
                    counts[variants[r].index(g)] += 1
                lone = {g for r, g in zip(b[:8], b[8:], strict=True) if REAL_PIDS[r] == 0}
                split_pairs += len(lone) > 1
    total = sum(counts.values())
    assert set(counts) == {0, 1}
    assert abs(counts[0] / total - 0.5) < 0.05, counts
    assert split_pairs > 0


def test_progressive_schedule_is_the_released_curriculum_one_epoch_earlier():
    """dlcr's default ``progressive`` schedule (config sampler.schedule) is its own reading of the paper:
    one more planner partition every ``every`` epochs, counting from epoch 0. With 10 variants the
    planner's partitions (2/3/2/3) give the released code's 2/5/7/10 prefixes, but each switch comes one
    epoch earlier (at 5/10/15, the released counter's ``<=`` at 6/11/16). ``official`` is the released
    behaviour; this pins the deliberate deviation rather than hiding it."""
    expected = ref_training_epochs(30)
    variants, parts, _ = make_pool()
    s = PairedSampler(REAL_PIDS, variants, parts, 8, 4, schedule="progressive", every=5)
    for epoch in range(29):
        assert s.allowed(epoch)[0] == [variants[0][j] for j in expected[epoch + 1]]
    differ = [e for e in range(30) if len(s.allowed(e)[0]) != len(expected[e])]
    assert differ == [5, 10, 15]
