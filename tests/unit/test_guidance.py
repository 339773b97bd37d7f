"""Discriminator guidance: the correction term, the UNet hook, training, checkpoints, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*"),
              pytest.mark.usefixtures("one_torch_thread")]

from dlcr.errors import CheckpointError, ConfigError  # noqa: E402
from dlcr.generation import guidance as G  # noqa: E402
from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter  # noqa: E402
from dlcr.generation.inpainting import InpaintItem  # noqa: E402
from dlcr.generation.planning import Job  # noqa: E402
from dlcr.generation.tiny_models.diffusion import tiny_pipeline_path  # noqa: E402

H, W = 64, 32  # working size of the tiny pipeline; latents are 4 x 32 x 16 (its VAE downsamples by 2)


class SumDisc(nn.Module):
    """d(x) = sigmoid(a * sum(x [* mask])): grad log(d/(1-d)) = a (times the mask) everywhere."""

    def __init__(self, a: float, uses_mask: bool = False):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(float(a)))
        self.uses_mask = uses_mask
        self.batches: list[int] = []

    def forward(self, x, t, mask=None):
        self.batches.append(x.shape[0])
        if self.uses_mask:
            x = x * mask
        return self.a * x.flatten(1).sum(1)


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_pipeline_path(tmp_path_factory.mktemp("tiny-sd-guidance"))


@pytest.fixture(scope="module")
def plain(tiny_path) -> DiffusersInpainter:
    return DiffusersInpainter(tiny_path, steps=2, height=H, width=W, guidance_scale=5.0)


@pytest.fixture(scope="module")
def alphas(plain) -> torch.Tensor:
    return G.scheduler_alphas_cumprod(plain.pipe.scheduler)


def _images(n: int, seed: int, kind: str) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        return [rng.integers(0, 256, (H, W, 3), dtype=np.uint8) for _ in range(n)]
    return [np.full((H, W, 3), int(rng.integers(60, 200)), np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def trained(tiny_path, tmp_path_factory) -> Path:
    """A small discriminator trained end to end on the tiny pipeline, saved."""
    disc = G.train_discriminator(tiny_path, _images(6, 0, "noise"), _images(6, 1, "flat"), steps=8, batch_size=4,
                                 lr=1e-3, seed=0, height=H, width=W, channels=(8, 16), time_dim=16)
    return G.save_discriminator(disc, tmp_path_factory.mktemp("disc") / "d")


def _items(n: int = 2) -> list[InpaintItem]:
    out = []
    for i in range(n):
        rng = np.random.default_rng(100 + i)
        img = rng.integers(0, 256, (40, 20, 3), dtype=np.uint8)
        mask = np.zeros((40, 20), bool)
        mask[10:30, 5:15] = True
        job = Job(job_id=f"j{i}", kind="train", dataset="t", source=f"s{i}.png", source_clothes_key="a", pid=0,
                  target_clothes_key="b", variant=i, partition=0, prompt="a person wearing red shirt",
                  seed=7 + i, generator="tiny")
        out.append(InpaintItem(job, img, mask))
    return out


# ------------------------------------------------------------------------------ the term itself
@pytest.mark.parametrize("t", [700, 250, 0])
def test_correction_sign_and_scale_on_a_hand_built_discriminator(alphas, t):
    a, w = 0.3, 2.5
    disc = SumDisc(a)
    with torch.inference_mode():  # latents made inside the pipeline's inference mode
        x = torch.randn(3, 4, 6, 5)
        corr = G.guidance_correction(disc, x, torch.tensor(t), alphas, w)
    expected = -w * float(torch.sqrt(1 - alphas[t].double())) * a
    assert corr.shape == x.shape and corr.dtype == x.dtype
    torch.testing.assert_close(corr, torch.full_like(x, expected), rtol=1e-6, atol=1e-7)


def test_correction_per_sample_and_fractional_timesteps(alphas):
    a, w = -0.7, 1.0  # a < 0: a discriminator that prefers lower latents pushes eps up
    t = torch.tensor([900.0, 10.0, 500.5])
    corr = G.guidance_correction(SumDisc(a), torch.zeros(3, 4, 2, 2), t, alphas, w)
    ab = [alphas[900], alphas[10], (alphas[500] + alphas[501]) / 2]
    for i in range(3):
        expected = -w * float(torch.sqrt(1 - ab[i].double())) * a
        assert expected > 0
        torch.testing.assert_close(corr[i], torch.full((4, 2, 2), expected), rtol=1e-5, atol=1e-7)


def test_v_prediction_correction_matches_the_eps_correction():
    torch.manual_seed(0)
    x, eps, delta = torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2), torch.randn(3, 4, 2, 2)
    ab = torch.tensor([0.9, 0.5, 0.05]).view(-1, 1, 1, 1)

    def v_of(e):  # v = sqrt(ab) eps - sqrt(1-ab) x0, with x0 from x_t and eps
        x0 = (x - (1 - ab).sqrt() * e) / ab.sqrt()
        return ab.sqrt() * e - (1 - ab).sqrt() * x0

    got = v_of(eps) + G.correction_for_prediction(delta, ab.flatten(), "v_prediction")
    torch.testing.assert_close(got, v_of(eps + delta), rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError):
        G.correction_for_prediction(delta, ab.flatten(), "sample")


# ------------------------------------------------------------------------------ the UNet hook
def _unet_input(plain, distinct_halves: bool) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, H // 2, W // 2, generator=g)
    x = torch.cat([x, torch.randn(x.shape, generator=g) if distinct_halves else x])  # [uncond; cond]
    mask = torch.zeros(4, 1, H // 2, W // 2)
    mask[:, :, 4:20, 3:12] = 1
    inp = torch.cat([x, mask, torch.randn(4, 4, H // 2, W // 2, generator=g)], dim=1)
    emb = torch.randn(4, 8, 32, generator=g)
    return inp, emb


@pytest.mark.parametrize("distinct_halves", [False, True])
def test_unet_hook_corrects_only_above_the_threshold(plain, alphas, distinct_halves):
    unet = plain.pipe.unet
    inp, emb = _unet_input(plain, distinct_halves)
    disc = SumDisc(0.4)
    with torch.inference_mode():
        ref = {t: unet(inp, torch.tensor(t), encoder_hidden_states=emb, return_dict=False)[0] for t in (600, 201, 200, 50)}
        guide = G.DiscriminatorGuidance(disc, alphas, weight=3.0, min_t=200).attach(unet)
        try:
            got = {t: unet(inp, torch.tensor(t), encoder_hidden_states=emb, return_dict=False)[0] for t in ref}
            obj = unet(inp, torch.tensor(600), encoder_hidden_states=emb).sample  # return_dict=True path
        finally:
            guide.remove()
        after = unet(inp, torch.tensor(600), encoder_hidden_states=emb, return_dict=False)[0]
    for t in (600, 201):
        expected = -3.0 * float(torch.sqrt(1 - alphas[t].double())) * 0.4
        torch.testing.assert_close(got[t] - ref[t], torch.full_like(ref[t], expected), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(obj, got[600], rtol=0, atol=0)
    for t in (200, 50):  # t <= threshold: untouched, bit for bit
        assert torch.equal(got[t], ref[t])
    assert torch.equal(after, ref[600])  # removed
    assert guide.calls == 5 and guide.corrected == 3
    # identical CFG halves share one gradient (batch of 2); distinct halves are each differentiated (4)
    assert set(disc.batches) == ({4} if distinct_halves else {2})


def test_unet_hook_passes_the_unets_mask_channel(plain, alphas):
    unet = plain.pipe.unet
    inp, emb = _unet_input(plain, False)
    disc = SumDisc(1.0, uses_mask=True)
    with torch.inference_mode():
        ref = unet(inp, torch.tensor(500), encoder_hidden_states=emb, return_dict=False)[0]
        guide = G.DiscriminatorGuidance(disc, alphas, weight=1.0, min_t=200).attach(unet)
        try:
            got = unet(inp, torch.tensor(500), encoder_hidden_states=emb, return_dict=False)[0]
        finally:
            guide.remove()
    expected = -float(torch.sqrt(1 - alphas[500].double())) * inp[:, 4:5].expand_as(ref)
    torch.testing.assert_close(got - ref, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------ in the inpainter
def test_weight_zero_is_bit_identical_and_the_threshold_holds(tiny_path, plain, trained):
    base = plain(_items())
    zero = DiffusersInpainter(tiny_path, steps=2, height=H, width=W, guidance_scale=5.0, discriminator=str(trained),
                              guidance_weight=0.0)
    for a, b in zip(base, zero(_items()), strict=True):
        assert np.array_equal(a, b)
    # DDIM with 2 steps visits t = 501 and t = 1: one UNet call (of 2) above t = 200 is corrected
    assert zero.guidance.calls == 2 and zero.guidance.corrected == 1
    high = DiffusersInpainter(tiny_path, steps=2, height=H, width=W, guidance_scale=5.0, discriminator=str(trained),
                              guidance_weight=500.0, guidance_min_t=501)  # only t > 501: nothing here
    for a, b in zip(base, high(_items()), strict=True):
        assert np.array_equal(a, b)
    assert high.guidance.corrected == 0
    on = DiffusersInpainter(tiny_path, steps=2, height=H, width=W, guidance_scale=5.0, discriminator=str(trained),
                            guidance_weight=500.0)
    items = _items()
    out = on(items)
    assert on.guidance.corrected == 1
    assert any(not np.array_equal(a, b) for a, b in zip(base, out, strict=True))
    for it, o in zip(items, out, strict=True):  # outside the mask the source is kept
        assert np.array_equal(o[~it.mask], it.image[~it.mask])


def test_discriminator_is_never_loaded_unless_asked(tiny_path, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("discriminator loaded without being asked for")

    monkeypatch.setattr(G, "load_discriminator", boom)
    monkeypatch.setattr(G, "attach_guidance", boom)
    inp = DiffusersInpainter(tiny_path, steps=2, height=H, width=W, guidance_scale=5.0)
    inp(_items(1))
    assert inp.guidance is None and not inp.pipe.unet._forward_hooks


def test_missing_discriminator_is_an_error_not_a_silent_fallback(tiny_path, tmp_path):
    with pytest.raises(CheckpointError) as e:
        DiffusersInpainter(tiny_path, steps=2, height=H, width=W, discriminator=str(tmp_path / "nope.safetensors"))
    msg = str(e.value)
    assert "\n" not in msg and "not found" in msg and "nope.safetensors" in msg


def test_incompatible_discriminator_is_refused(tiny_path, trained, tmp_path):
    disc = G.load_discriminator(trained)
    disc.info["scaling_factor"] = 1.0  # e.g. trained on unscaled latents
    G.save_discriminator(disc, tmp_path / "unscaled")
    with pytest.raises(CheckpointError, match="scaled by 1.0"):
        DiffusersInpainter(tiny_path, steps=2, height=H, width=W, discriminator=str(tmp_path / "unscaled.safetensors"))
    disc = G.load_discriminator(trained)
    disc.set_schedule(torch.linspace(0.9999, 0.0001, len(disc.alphas_cumprod)))  # e.g. a continuous VP schedule
    G.save_discriminator(disc, tmp_path / "vp")
    with pytest.raises(CheckpointError, match="noise schedule"):
        DiffusersInpainter(tiny_path, steps=2, height=H, width=W, discriminator=str(tmp_path / "vp.safetensors"))


# ------------------------------------------------------------------------------ training
def test_loss_decreases_on_an_easy_split(alphas):
    g = torch.Generator().manual_seed(0)
    real = torch.randn(32, 4, 8, 4, generator=g) + 0.5
    fake = torch.randn(32, 4, 8, 4, generator=g) - 0.5
    disc = G.fit_discriminator(real, fake, alphas, steps=60, batch_size=16, lr=3e-3, seed=0, channels=(16, 32),
                               time_dim=32)
    losses = disc.train_losses
    assert len(losses) == 60 and np.mean(losses[-10:]) < np.mean(losses[:10]) - 0.2
    # held out: fresh clean latents and noise at a moderate timestep
    t = 200
    ab = alphas[t]
    xr = ab.sqrt() * (torch.randn(64, 4, 8, 4, generator=g) + 0.5) + (1 - ab).sqrt() * torch.randn(64, 4, 8, 4, generator=g)
    xf = ab.sqrt() * (torch.randn(64, 4, 8, 4, generator=g) - 0.5) + (1 - ab).sqrt() * torch.randn(64, 4, 8, 4, generator=g)
    with torch.no_grad():
        acc = ((disc(xr, t) > 0).float().mean() + (disc(xf, t) < 0).float().mean()) / 2
    assert acc > 0.9
    # the guidance direction points towards the real data: the correction lowers eps, i.e. raises x0
    corr = G.guidance_correction(disc, xf, t, alphas, 1.0)
    assert float(corr.mean()) < 0


def test_training_uses_the_pipelines_latents_and_schedule(plain, alphas):
    """Pixels in [-1, 1] -> VAE posterior mean -> x scaling_factor; noise = scheduler.add_noise."""
    vae, sched = plain.pipe.vae, plain.pipe.scheduler
    imgs = _images(3, 5, "noise")
    parts = G._pipeline_parts(plain, torch.device("cpu"))
    got = G.encode_latents(parts, imgs, H, W)
    px = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        ref = vae.encode(px).latent_dist.mean * 0.18215
    assert vae.config.scaling_factor == pytest.approx(0.18215)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert torch.equal(alphas, sched.alphas_cumprod.float())

    # first training step == a reference built from diffusers' own add_noise and the same draws
    real, fake = got[:2], torch.flip(got[1:], dims=[0])
    disc = G.fit_discriminator(real, fake, alphas, steps=1, batch_size=4, lr=1e-3, seed=3, channels=(8,), time_dim=8)
    torch.manual_seed(3)
    init = G.LatentDiscriminator(4, (8,), 8, "none", 1000, float(torch.cat([real, fake]).std())).set_schedule(alphas)
    gen = torch.Generator().manual_seed(3)
    ri, fi = torch.randint(2, (2,), generator=gen), torch.randint(2, (2,), generator=gen)
    x0 = torch.cat([real[ri], fake[fi]])
    t = torch.randint(1000, (4,), generator=gen)
    noise = torch.randn(x0.shape, generator=gen)
    xt = sched.add_noise(x0, noise, t)
    with torch.no_grad():
        loss = nn.functional.binary_cross_entropy_with_logits(init(xt, t.float()), torch.tensor([1.0, 1, 0, 0]))
    assert disc.train_losses[0] == pytest.approx(float(loss), rel=1e-5)


def test_end_to_end_training_records_what_it_was_trained_for(trained):
    meta = json.loads(trained.with_suffix(".json").read_text())
    assert meta["scheduler"] == "DDIMScheduler" and meta["scaling_factor"] == pytest.approx(0.18215)
    assert meta["train_steps"] == 8 and meta["num_train_timesteps"] == 1000
    assert meta["architecture"]["mask_mode"] == "none" and meta["architecture"]["channels"] == [8, 16]
    assert (meta["height"], meta["width"]) == (H, W)


@pytest.mark.parametrize("mode", ["input", "weight"])
def test_masked_training(tiny_path, alphas, mode):
    masks = []
    for _ in range(4):
        m = np.zeros((H, W), bool)
        m[16:48, 8:24] = True
        masks.append(m)
    disc = G.train_discriminator(tiny_path, _images(4, 2, "noise"), _images(4, 3, "flat"), (masks, masks),
                                 steps=3, batch_size=4, lr=1e-3, seed=0, height=H, width=W, mask_mode=mode,
                                 channels=(8,), time_dim=8)
    assert disc.mask_mode == mode and all(np.isfinite(disc.train_losses))
    lat_mask = torch.zeros(2, 1, H // 2, W // 2)
    lat_mask[:, :, 8:24, 4:12] = 1
    corr = G.guidance_correction(disc, torch.randn(2, 4, H // 2, W // 2), 500, alphas, 1.0, lat_mask)
    outside = corr * (1 - lat_mask)
    if mode == "input":  # the mask multiplies the latents: no push outside the region
        assert torch.count_nonzero(outside) == 0 and torch.count_nonzero(corr) > 0
    else:
        assert torch.count_nonzero(corr * lat_mask) > 0
    with pytest.raises(Exception, match="mask"):
        disc(torch.randn(1, 4, 8, 8), 10)  # a masked discriminator needs its mask


# ------------------------------------------------------------------------------ checkpoints
def test_save_load_roundtrip(trained, alphas):
    disc = G.load_discriminator(trained)
    again = G.load_discriminator(trained.with_suffix(".json"))  # either file names the pair
    x, t = torch.randn(2, 4, H // 2, W // 2), torch.tensor([300.0, 800.0])
    with torch.no_grad():
        assert torch.equal(disc(x, t), again(x, t))
    assert torch.equal(disc.alphas_cumprod, alphas)
    assert not list(trained.parent.glob(".*.tmp"))  # atomic writes leave no temp files


def test_load_errors_are_one_line(trained, tmp_path):
    def err(path) -> str:
        with pytest.raises(CheckpointError) as e:
            G.load_discriminator(path)
        assert "\n" not in str(e.value)
        return str(e.value)

    assert "not found" in err(tmp_path / "missing.safetensors")
    only_weights = tmp_path / "w.safetensors"
    only_weights.write_bytes(trained.read_bytes())
    assert "metadata not found" in err(only_weights)

    blob = trained.read_bytes()
    meta = json.loads(trained.with_suffix(".json").read_text())
    bad = tmp_path / "trunc.safetensors"
    bad.write_bytes(blob[: len(blob) // 2])
    bad.with_suffix(".json").write_text(json.dumps(meta))
    assert "do not match" in err(bad)  # truncated weights: the checksum catches it

    import hashlib

    junk = b"not a safetensors file"
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(junk)
    garbage.with_suffix(".json").write_text(json.dumps({**meta, "weights_sha256": hashlib.sha256(junk).hexdigest()}))
    assert "cannot read" in err(garbage)

    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(blob)
    broken.with_suffix(".json").write_text("{not json")
    assert "bad discriminator metadata" in err(broken)

    other = tmp_path / "other.safetensors"
    other.write_bytes(blob)
    arch = {**meta["architecture"], "channels": [4, 4]}
    other.with_suffix(".json").write_text(json.dumps({**meta, "architecture": arch}))
    assert "does not fit" in err(other)


# ------------------------------------------------------------------------------ the CLI
def test_cli_guidance_train(tiny_path, tmp_path, monkeypatch, capsys):
    from dlcr.cli.main import main
    from dlcr.data.datasets import create_dataset
    from dlcr.generation import stages
    from dlcr.generation.describers import create_captioner, create_summarizer
    from dlcr.generation.parsers import create_parser
    from dlcr.synth import render_world

    monkeypatch.setenv("DLCR_CACHE_DIR", str(tiny_path.parent))  # reuse the tiny pipeline built above
    render_world(tmp_path / "w", ids=4, seed=3, height=H, width=W)
    ds = create_dataset("synthcc", tmp_path / "w")
    work = tmp_path / "work"
    stages.run_masks(create_parser("synthcc"), list(ds.train), ds.root, work)
    stages.run_describe(ds.train, ds.root, work, captioner=create_captioner("rule"), summarizer=create_summarizer("vote"))
    stages.run_plan(ds.train, work, k=2, seed=0, allow_same_person=False, num_partitions=2, dataset="synthcc",
                    generator="recolor")
    stages.run_inpaint(work, ds.root, backend="recolor", backend_options={}, batch_size=64)

    args = ["generate", "guidance-train", "--set", f"data.root={tmp_path / 'w'}", "--set", "generate.backend=tiny",
            "--work", str(work), "--steps", "3", "--batch-size", "4", "--max-images", "6", "--mask-mode", "input",
            "--device", "cpu"]
    main(args)
    out = capsys.readouterr().out
    ckpt = work / "guidance" / "discriminator.safetensors"
    assert "6 real / 6 generated" in out and str(ckpt) in out
    meta = json.loads(ckpt.with_suffix(".json").read_text())
    assert meta["train_steps"] == 3 and meta["architecture"]["mask_mode"] == "input" and meta["model"] == "tiny"
    main(args)  # already trained with these settings: skipped
    assert "already trained" in capsys.readouterr().out
    # and the checkpoint plugs into the tiny inpainter
    inp = DiffusersInpainter(tiny_path, steps=2, height=H, width=W, discriminator=str(ckpt))
    assert inp.guidance is not None and inp.guidance.uses_mask


def test_latent_masks_read_a_repeated_label_map_once(plain, tmp_path, monkeypatch):
    from dlcr.generation.guidance import training as G  # where latent_masks looks up _as_mask
    from dlcr.io.images import write_png
    from dlcr.lip import clothes_mask

    rng = np.random.default_rng(3)
    maps = [rng.choice(np.array([0, 5, 9, 13], np.uint8), (H, W)) for _ in range(2)]
    paths = []
    for i, lab in enumerate(maps):
        paths.append(tmp_path / f"m{i}.png")
        write_png(paths[-1], lab)
    reads = []
    as_mask = G._as_mask
    monkeypatch.setattr(G, "_as_mask", lambda m: (reads.append(m), as_mask(m))[1])
    parts = G._pipeline_parts(plain.pipe, torch.device("cpu"))
    arr = clothes_mask(maps[1])
    masks = [paths[0], paths[1], paths[0], str(paths[0]), arr, paths[1]]
    got = G.latent_masks(parts, masks, H, W)
    assert len(reads) == 3  # two distinct files + the array
    one_by_one = torch.cat([G.latent_masks(parts, [m], H, W) for m in masks])
    assert torch.equal(got, one_by_one)
    assert torch.equal(got[1], got[4])  # the array is the same mask as file 1
