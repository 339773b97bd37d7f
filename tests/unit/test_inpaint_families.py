"""Every Stable-Diffusion inpainting family through the diffusers backend, on folders laid out like the
public checkpoints (``tests/public_formats/sd.py``): SD-1.5 (PNDM, ×8 and ×4 VAEs, ``.safetensors``
and ``.bin``), SD-2 (linear projections, per-block heads, DDIM), SDXL (two text encoders, pooled
embeddings, size conditioning), plus batch invariance, prompt shortening and one-line model errors."""

import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytest.importorskip("transformers")
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*"),
              pytest.mark.usefixtures("one_torch_thread")]

import torch  # noqa: E402

from dlcr.errors import CheckpointError, ConfigError, DlcrError  # noqa: E402
from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter, paste_back, shorten_prompt  # noqa: E402
from dlcr.generation.inpainting import InpaintItem, pipeline_image, pipeline_mask  # noqa: E402
from dlcr.generation.planning import Job  # noqa: E402
from dlcr.generation.tiny_models.diffusion import tiny_pipeline_path  # noqa: E402
from public_formats.sd import build_sd2_inpainting, build_sd15_inpainting, build_sdxl_inpainting  # noqa: E402

PROMPTS = ["a person wearing red shirt, blue jeans, white sneakers", "a person wearing black coat, gray pants",
           "a person wearing green dress"]


@pytest.fixture(scope="session")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sd-families")
    return {
        "sd15": build_sd15_inpainting(root / "sd15"),
        "sd15_x4_bin": build_sd15_inpainting(root / "sd15-x4-bin", vae_factor=4, weights="bin"),
        "sd2": build_sd2_inpainting(root / "sd2"),
        "sdxl": build_sdxl_inpainting(root / "sdxl"),
    }


def _job(i: int, prompt: str, seed: int) -> Job:
    return Job(job_id=f"job{i}", kind="train", dataset="t", source=f"s{i}.png", source_clothes_key="a", pid=0,
               target_clothes_key="b", variant=i, partition=0, prompt=prompt, seed=seed, generator="diffusers")


def _item(i: int, prompt: str, seed: int, h: int = 40, w: int = 20) -> InpaintItem:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    return InpaintItem(_job(i, prompt, seed), img, mask)


def _items(n: int) -> list[InpaintItem]:
    return [_item(i, PROMPTS[i % len(PROMPTS)], seed=100 + i) for i in range(n)]


def _check_outputs(items, outs):
    assert [o.shape for o in outs] == [it.image.shape for it in items]
    for it, o in zip(items, outs, strict=True):
        assert o.dtype == np.uint8
        assert np.array_equal(o[~it.mask], it.image[~it.mask])  # bit-identical outside the mask
        assert not np.array_equal(o[it.mask], it.image[it.mask])


# ---------------------------------------------------------------------------------- the fixtures
def test_fixture_folders_have_the_public_layout(folders):
    sd15 = json.loads((folders["sd15"] / "model_index.json").read_text())
    assert sd15["_class_name"] == "StableDiffusionInpaintPipeline"
    assert sd15["safety_checker"] == [None, None] and sd15["feature_extractor"] == [None, None]
    pndm = json.loads((folders["sd15"] / "scheduler" / "scheduler_config.json").read_text())
    assert pndm["_class_name"] == "PNDMScheduler" and pndm["skip_prk_steps"] and pndm["steps_offset"] == 1
    assert (folders["sd15"] / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    assert (folders["sd15_x4_bin"] / "unet" / "diffusion_pytorch_model.bin").is_file()
    assert (folders["sd15_x4_bin"] / "text_encoder" / "pytorch_model.bin").is_file()
    sd2 = json.loads((folders["sd2"] / "unet" / "config.json").read_text())
    assert sd2["use_linear_projection"] and isinstance(sd2["attention_head_dim"], list)
    xl = json.loads((folders["sdxl"] / "model_index.json").read_text())
    assert xl["_class_name"] == "StableDiffusionXLInpaintPipeline" and "text_encoder_2" in xl
    assert json.loads((folders["sdxl"] / "vae" / "config.json").read_text())["force_upcast"] is True


# ------------------------------------------------------------------------------------- families
@pytest.mark.parametrize("family", ["sd15", "sd2"])
def test_sd_families_load_and_inpaint(folders, family):
    inp = DiffusersInpainter(folders[family], scheduler=None, steps=2, height=64, width=32, guidance_scale=4.0)
    assert type(inp.pipe).__name__ == "StableDiffusionInpaintPipeline" and inp.family == "sd"
    assert inp.scheduler == {"sd15": "PNDMScheduler", "sd2": "DDIMScheduler"}[family]  # the checkpoint's own
    items = _items(2)
    _check_outputs(items, inp(items))


def test_sdxl_inpainting_loads_as_the_sdxl_pipeline_and_inpaints(folders):
    """On the old code this folder loaded as a plain SD pipeline and died in the first UNet call."""
    inp = DiffusersInpainter(folders["sdxl"], steps=2, height=64, width=32, guidance_scale=5.0,
                             negative_prompt="blurry", max_batch=2)
    assert type(inp.pipe).__name__ == "StableDiffusionXLInpaintPipeline" and inp.family == "sdxl"
    items = _items(5)
    outs = inp(items)
    _check_outputs(items, outs)
    # pooled embeddings are cached with the others, once per prompt
    assert inp.encode_count == 3
    cached = inp.prompt_embeddings(PROMPTS[0])
    assert set(cached) == {"prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds",
                           "negative_pooled_prompt_embeds"}
    assert cached["pooled_prompt_embeds"].shape == (1, 32)  # text_encoder_2's projection
    assert cached["prompt_embeds"].shape[-1] == 32 + 64  # both encoders side by side
    inp(items[:2])
    assert inp.encode_count == 3


def test_sdxl_engine_computes_what_the_stock_sdxl_pipeline_computes(folders):
    """Batching, cached (pooled) embeddings, our masked-image latents and our decode change only float
    rounding against one stock ``StableDiffusionXLInpaintPipeline`` call per job."""
    inp = DiffusersInpainter(folders["sdxl"], steps=3, height=64, width=32, guidance_scale=6.0, max_batch=3)
    items = _items(4)
    ours = inp(items)
    h, w = inp.height, inp.width
    for it, o in zip(items, ours, strict=True):
        image, mask = pipeline_image(it.image, h, w), pipeline_mask(it.mask, h, w)
        with torch.inference_mode():
            latents = inp._masked_image_latents([image], [mask], h, w)
            res = inp.pipe(prompt=it.job.prompt, image=image, mask_image=mask, masked_image_latents=latents,
                           height=h, width=w, strength=1.0, num_inference_steps=3, guidance_scale=6.0,
                           generator=torch.Generator().manual_seed(it.job.seed), output_type="np").images[0]
        assert np.abs(o.astype(int) - paste_back(it, res).astype(int)).max() <= 2


def test_sdxl_vae_encodes_and_decodes_in_fp32_when_its_config_says_force_upcast(folders):
    inp = DiffusersInpainter(folders["sdxl"], steps=1, height=32, width=16, guidance_scale=1.0)
    inp.pipe.vae.to(torch.float16)  # as on a GPU in fp16
    seen: list[torch.dtype] = []
    hook = inp.pipe.vae.encoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    try:
        image = pipeline_image(_item(0, "x", 0).image, 32, 16)
        mask = pipeline_mask(_item(0, "x", 0).mask, 32, 16)
        with torch.inference_mode():
            inp._masked_image_latents([image], [mask], 32, 16)
            px = inp._decode(torch.zeros(1, 4, 4, 2))
    finally:
        hook.remove()
    assert seen == [torch.float32] and px.shape == (1, 32, 16, 3)
    assert inp.pipe.vae.dtype == torch.float16  # put back


def test_vae_downsampling_factor_comes_from_the_vae_config(folders):
    """A ×4 VAE (``.bin`` weights): latents are 1/4 of the image side and any multiple of 4 is a valid
    working size; the ×8 VAE refuses a size that is not a multiple of 8."""
    inp = DiffusersInpainter(folders["sd15_x4_bin"], steps=1, height=36, width=20, guidance_scale=1.0,
                             query_scale=0.5)
    assert inp.vae_scale == 4 and (inp.query_height, inp.query_width) == (16, 8)
    image, mask = pipeline_image(_item(0, "x", 0).image, 36, 20), pipeline_mask(_item(0, "x", 0).mask, 36, 20)
    with torch.inference_mode():
        assert inp._masked_image_latents([image], [mask], 36, 20).shape == (1, 4, 9, 5)
    items = _items(2)
    _check_outputs(items, inp(items))
    with pytest.raises(ConfigError, match="multiple of 8"):
        DiffusersInpainter(folders["sd15"], height=36, width=20)


def test_text_to_image_checkpoint_falls_back_to_latent_blending(tmp_path, caplog):
    folder = build_sd15_inpainting(tmp_path / "sd15-t2i", text_to_image=True)
    with caplog.at_level(logging.WARNING):
        inp = DiffusersInpainter(folder, steps=2, height=32, width=16, guidance_scale=1.0)
    assert type(inp.pipe).__name__ == "StableDiffusionInpaintPipeline"
    assert "not an inpainting checkpoint" in caplog.text
    items = _items(2)
    outs = inp(items)
    assert [o.shape for o in outs] == [it.image.shape for it in items]
    assert all(np.array_equal(o[~it.mask], it.image[~it.mask]) for it, o in zip(items, outs, strict=True))


def test_unsupported_and_custom_pipelines_are_refused_in_one_line(tmp_path):
    for name, cls in (("flux", "FluxPipeline"), ("custom", ["my_pipeline.py", "MyPipeline"])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "model_index.json").write_text(json.dumps({"_class_name": cls}))
        with pytest.raises(CheckpointError) as err:
            DiffusersInpainter(tmp_path / name)
        assert "\n" not in str(err.value)
        assert ("FluxPipeline" in str(err.value)) if name == "flux" else ("custom pipeline" in str(err.value))


# ------------------------------------------------------------------------------- model failures
def test_unet_that_does_not_fit_its_text_encoder_is_one_checkpoint_error(tmp_path):
    folder = build_sd15_inpainting(tmp_path / "bad-width", cross_attention_dim=48)
    with pytest.raises(CheckpointError) as err:
        inp = DiffusersInpainter(folder, steps=1, height=32, width=16)
        inp(_items(1))
    msg = str(err.value)
    assert str(folder) in msg and "cross_attention_dim" in msg and "\n" not in msg


def test_any_failure_inside_the_pipeline_is_one_line_naming_the_model(folders, monkeypatch):
    inp = DiffusersInpainter(folders["sd15"], steps=1, height=32, width=16, batch_invariant=False)

    def broken(*args, **kwargs):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied (8x48 and 32x32)\n  a long hint\n  more")

    monkeypatch.setattr(inp.pipe.unet, "forward", broken)
    with pytest.raises(CheckpointError) as err:
        inp(_items(1))
    msg = str(err.value)
    assert isinstance(err.value, DlcrError) and err.value.exit_code == 2
    assert str(folders["sd15"]) in msg and "mat1 and mat2 shapes cannot be multiplied" in msg
    assert "long hint" not in msg


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("part,file", [("unet", "diffusion_pytorch_model.bin"), ("text_encoder", "pytorch_model.bin")])
def test_a_pickle_in_bin_weights_is_never_executed(tmp_path, part, file):
    """``.bin`` weights are read with ``torch.load(weights_only=True)``: a pickle that runs code is
    refused (one line) and its code never runs."""
    folder = build_sd15_inpainting(tmp_path / "evil", weights="bin")
    marker = tmp_path / "pwned"
    with open(folder / part / file, "wb") as fh:
        pickle.dump(_Evil(marker), fh)
    with pytest.raises(CheckpointError, match="cannot load"):
        DiffusersInpainter(folder, steps=1, height=32, width=16)
    assert not marker.exists()


# ------------------------------------------------------------------------------ batch invariance
@pytest.mark.parametrize("family,micro_batch", [("tiny", 4), ("tiny", 1), ("sdxl", 4)])
def test_a_jobs_output_does_not_depend_on_its_batch(folders, tmp_path_factory, family, micro_batch):
    """On the old code 3 of these 24 tiny jobs changed by one grey level between batches of 8 and 3."""
    path = tiny_pipeline_path(tmp_path_factory.mktemp("tiny")) if family == "tiny" else folders["sdxl"]
    inp = DiffusersInpainter(path, steps=3, height=64, width=32, guidance_scale=5.0, negative_prompt="blurry",
                             micro_batch=micro_batch)
    items = _items(24 if family == "tiny" else 8)
    inp.max_batch = 8
    a = inp(items)
    inp.max_batch = 3
    b = inp(items)
    inp.max_batch = 1
    c = inp(items[:5])
    for x, y in zip(a, b, strict=True):
        assert x.tobytes() == y.tobytes()
    for x, z in zip(a[:5], c, strict=True):
        assert x.tobytes() == z.tobytes()


def test_unet_and_vae_calls_have_one_shape_whatever_the_batch(tmp_path_factory):
    path = tiny_pipeline_path(tmp_path_factory.mktemp("tiny"))
    inp = DiffusersInpainter(path, steps=2, height=64, width=32, guidance_scale=5.0, micro_batch=4)
    unet_rows, vae_rows = [], []
    inner = inp._unet_split.forward

    def spy(sample, *a, **kw):
        unet_rows.append(sample.shape[0])
        return inner(sample, *a, **kw)

    inp._unet_split.forward = spy
    hooks = [inp.pipe.vae.encoder.register_forward_pre_hook(lambda m, a: vae_rows.append(a[0].shape[0])),
             inp.pipe.vae.decoder.register_forward_pre_hook(lambda m, a: vae_rows.append(a[0].shape[0]))]
    try:
        for mb in (3, 5, 8):
            inp.max_batch = mb
            inp(_items(5))
    finally:
        for h in hooks:
            h.remove()
    assert set(unet_rows) == {8} and set(vae_rows) == {4}  # 4 jobs (x2 with guidance), padded


def test_padded_chunks():
    from dlcr.generation.inpainters.diffusers_backend import padded_chunks

    assert padded_chunks(5, 2) == [([0, 1], 2), ([2, 3], 2), ([4, 4], 1)]
    assert padded_chunks(3, 4) == [([0, 1, 2, 2], 3)]
    assert padded_chunks(4, 4) == [([0, 1, 2, 3], 4)]


def test_batched_calls_stay_within_rounding_of_the_per_job_calls(tmp_path_factory):
    path = tiny_pipeline_path(tmp_path_factory.mktemp("tiny"))
    exact = DiffusersInpainter(path, steps=3, height=64, width=32, guidance_scale=5.0, max_batch=8)
    fast = DiffusersInpainter(path, steps=3, height=64, width=32, guidance_scale=5.0, max_batch=8,
                              batch_invariant=False)
    items = _items(8)
    for x, y in zip(exact(items), fast(items), strict=True):
        assert np.abs(x.astype(int) - y.astype(int)).max() <= 2


# ------------------------------------------------------------------------------- long prompts
def test_shorten_prompt_keeps_every_part():
    def words(text):  # one token per word plus BOS/EOS
        return len(text.replace(",", " ").split()) + 2

    long = "a person wearing bright red striped long sleeve shirt, dark blue ripped jeans, white sneakers"
    assert shorten_prompt(long, words, 13) == "a person wearing bright red shirt, dark blue jeans, white sneakers"
    assert shorten_prompt(long, words, 11) == "a person wearing bright shirt, dark jeans, white sneakers"
    assert shorten_prompt(long, words, 8) == "a person wearing shirt, jeans, sneakers"
    assert shorten_prompt(long, words, 100) == long
    assert shorten_prompt(long, words, 7) is None  # not even one word per part fits


def test_long_prompts_are_shortened_part_by_part_with_a_counted_warning(folders, caplog):
    inp = DiffusersInpainter(folders["sd15"], steps=1, height=32, width=16, guidance_scale=1.0)
    tok = inp.pipe.tokenizer
    upper = " ".join(["crimson"] * 40) + " shirt"
    prompt = f"a person wearing {upper}, navy jeans, black boots"
    assert len(tok(prompt)["input_ids"]) > tok.model_max_length
    with caplog.at_level(logging.WARNING):
        inp([_item(0, prompt, 1)])
    fitted = shorten_prompt(prompt, lambda t: len(tok(t)["input_ids"]), tok.model_max_length)
    assert fitted is not None and fitted.endswith("shirt, navy jeans, black boots")
    assert len(tok(fitted)["input_ids"]) <= tok.model_max_length
    assert inp.prompts_shortened == 1 and "shortened" in caplog.text and "1 prompts shortened" in caplog.text
    with torch.inference_mode():
        want, _ = inp.pipe.encode_prompt(fitted, inp.device, 1, False)
        cut, _ = inp.pipe.encode_prompt(prompt, inp.device, 1, False)  # what CLIP's truncation gives
    got = inp.prompt_embeddings(prompt)["prompt_embeds"]
    assert torch.equal(got, want) and not torch.equal(got, cut)


def test_discriminator_guidance_works_with_sdxl(folders, tmp_path):
    """The guidance hook reads the UNet's (scaled) input and discrete timestep, which the SDXL pipeline
    with its Euler scheduler passes in the same form as SD's: a discriminator trained on the SDXL
    VAE's latents corrects the steps above ``min_t``."""
    from dlcr.generation import guidance as G

    rng = np.random.default_rng(0)
    real = [rng.integers(0, 256, (64, 32, 3), dtype=np.uint8) for _ in range(4)]
    fake = [np.full((64, 32, 3), 100, np.uint8) for _ in range(4)]
    disc = G.train_discriminator(folders["sdxl"], real, fake, steps=2, batch_size=4, lr=1e-3, seed=0, height=64,
                                 width=32, channels=(8, 16), time_dim=16)
    ckpt = G.save_discriminator(disc, tmp_path / "d")
    base = DiffusersInpainter(folders["sdxl"], steps=3, height=64, width=32, guidance_scale=5.0)
    guided = DiffusersInpainter(folders["sdxl"], steps=3, height=64, width=32, guidance_scale=5.0,
                                discriminator=str(ckpt), guidance_weight=500.0)
    items = _items(2)
    a, b = base(items), guided(items)
    assert guided.guidance.calls == 3 and guided.guidance.corrected == 2  # t > 200 only
    assert all(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    _check_outputs(items, b)


def test_command_line_runs_sdxl_and_prints_a_model_failure_as_one_error_line(folders, tmp_path, capsys,
                                                                             monkeypatch):
    from diffusers import UNet2DConditionModel

    from cli_run import cli_status as main
    from dlcr.generation.outputs import read_manifest
    from dlcr.generation.planning import plan_jobs, write_jobs
    from dlcr.testing.toy_generation import make_toy_dataset, runner_argv

    samples, outfits, image_root, label_root = make_toy_dataset(tmp_path / "ds", n_persons=2, outfits_per_person=1)
    write_jobs(tmp_path / "jobs.parquet", plan_jobs(samples, outfits, k=1, seed=0, dataset="toy")[:2])
    opts = ["--backend", "diffusers", "--option", f"model={folders['sdxl']}", "--option", "steps=1",
            "--option", "height=32", "--option", "width=16", "--option", "guidance_scale=1.0"]
    argv = runner_argv(tmp_path / "jobs.parquet", image_root, label_root, tmp_path / "out", *opts)
    assert main(argv) == 0 and "generated 2" in capsys.readouterr().out
    assert len(read_manifest(tmp_path / "out")) == 2

    def broken(self, *args, **kwargs):
        raise RuntimeError("expected 4D input (got 3D input)\nTraceback-like detail")

    monkeypatch.setattr(UNet2DConditionModel, "forward", broken)
    argv = runner_argv(tmp_path / "jobs.parquet", image_root, label_root, tmp_path / "out2", *opts)
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]  # not progress bars
    assert len(err) == 1 and err[0].startswith("error: ") and str(folders["sdxl"]) in err[0]
    assert "expected 4D input" in err[0] and "Traceback" not in err[0]
