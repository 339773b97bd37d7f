"""Seeded library code (the discriminator's initial weights, the sampling captioner) gives results that
depend on its seed alone and leaves the caller's torch random state as it found it."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dlcr.utils.seeding import seeded_torch  # noqa: E402


def test_seeded_block_draws_like_manual_seed_and_restores_the_state():
    torch.manual_seed(0)
    torch.randn(3)  # a caller in the middle of its own stream
    before = torch.get_rng_state()
    with seeded_torch(7):
        inside = torch.randn(5)
    assert torch.equal(torch.get_rng_state(), before)
    torch.manual_seed(7)
    assert torch.equal(inside, torch.randn(5))
    with pytest.raises(RuntimeError), seeded_torch(7):  # also restored when the block fails
        torch.randn(2)
        raise RuntimeError("boom")
    torch.set_rng_state(before)
    after = torch.randn(4)
    torch.set_rng_state(before)
    with seeded_torch(1):
        torch.randn(100)
    assert torch.equal(torch.randn(4), after)  # the caller's stream goes on as if nothing happened


def test_fit_discriminator_keeps_the_callers_random_state():
    from dlcr.generation.guidance import fit_discriminator

    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(8, 4, 8, 4, generator=g), torch.randn(8, 4, 8, 4, generator=g) - 1
    alphas = torch.linspace(0.999, 0.01, 50)
    weights = []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        disc = fit_discriminator(real, fake, alphas, steps=2, batch_size=4, lr=1e-3, seed=5, channels=(8,),
                                 time_dim=8)
        assert torch.equal(torch.get_rng_state(), before)
        weights.append({k: v.clone() for k, v in disc.state_dict().items()})
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # the seed alone decides


def test_sampling_captioner_keeps_the_callers_random_state(tmp_path):
    pytest.importorskip("transformers")
    from dlcr.generation.describers.hf import HFCaptioner
    from dlcr.generation.tiny_models.text import tiny_vlm_path

    cap = HFCaptioner(tiny_vlm_path(tmp_path), max_new_tokens=6, batch_size=2, do_sample=True, seed=3,
                      device="cpu", local_files_only=True)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 20, 3), dtype=np.uint8) for _ in range(3)]
    answers = []
    for caller_seed in (10, 11):
        torch.manual_seed(caller_seed)
        before = torch.get_rng_state()
        answers.append(cap(images))
        assert torch.equal(torch.get_rng_state(), before)
    assert answers[0] == answers[1] and len(answers[0]) == 3
    cap.seed = 4
    torch.manual_seed(10)
    assert cap(images) != answers[0]  # the seed is what the sampling follows
