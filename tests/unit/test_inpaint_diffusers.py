import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("diffusers")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:diffusers.*")
pytest.importorskip("transformers")

from dlcr.errors import CheckpointError, ConfigError  # noqa: E402
from dlcr.generation.inpainters import create_inpainter  # noqa: E402
from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter, make_scheduler  # noqa: E402
from dlcr.generation.inpainting import InpaintItem  # noqa: E402
from dlcr.generation.planning import Job  # noqa: E402
from dlcr.generation.tiny_models.diffusion import tiny_pipeline_path, write_tiny_clip_vocab  # noqa: E402


@pytest.fixture(scope="session")
def tiny_path(tmp_path_factory) -> Path:
    return tiny_pipeline_path(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="module")
def tiny(tiny_path) -> DiffusersInpainter:
    return DiffusersInpainter(
        tiny_path, steps=2, height=64, width=32, guidance_scale=5.0, negative_prompt="blurry"
    )


def _job(i: int, prompt: str, seed: int, kind: str = "train") -> Job:
    return Job(
        job_id=f"job{i}",
        kind=kind,
        dataset="t",
        source=f"s{i}.png",
        source_clothes_key="a",
        pid=0,
        target_clothes_key="b",
        variant=i,
        partition=0,
        prompt=prompt,
        seed=seed,
        generator="tiny",
    )


def _item(i, prompt, seed, kind="train", h=40, w=20) -> InpaintItem:
    rng = np.random.default_rng(i)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = True
    return InpaintItem(_job(i, prompt, seed, kind), img, mask)


def test_tiny_folder_has_the_sd_inpainting_layout(tiny_path):
    index = json.loads((tiny_path / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionInpaintPipeline"
    for sub in ("unet", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_path / sub).is_dir()
    assert json.loads((tiny_path / "unet" / "config.json").read_text())["in_channels"] == 9
    assert tiny_pipeline_path(tiny_path.parent) == tiny_path  # built once, then reused


def test_tiny_tokenizer_vocab_is_built_locally(tmp_path):
    from transformers import CLIPTokenizer

    write_tiny_clip_vocab(tmp_path)
    tok = CLIPTokenizer.from_pretrained(tmp_path)
    toks = tok.convert_ids_to_tokens(tok("A person wearing red striped t-shirt")["input_ids"])
    assert toks[0] == "<|startoftext|>" and toks[-1] == "<|endoftext|>"
    assert "striped</w>" in toks and "person</w>" in toks
    assert tok.unk_token_id not in tok("zebra ü @")["input_ids"][1:-1]  # any text: byte fallback


def test_sizes_composite_and_seed_determinism(tiny):
    items = [
        _item(0, "a person wearing red shirt", seed=11),
        _item(1, "a person wearing blue jeans", seed=12),
    ]
    out = tiny(items)
    again = tiny(items)
    assert [o.shape for o in out] == [(40, 20, 3), (40, 20, 3)]
    for it, o, o2 in zip(items, out, again, strict=True):
        assert o.dtype == np.uint8
        assert np.array_equal(o[~it.mask], it.image[~it.mask])  # bit-identical outside the mask
        assert not np.array_equal(o[it.mask], it.image[it.mask])  # something was painted
        assert o.tobytes() == o2.tobytes()  # same seed -> same bytes
    other = tiny([_item(0, "a person wearing red shirt", seed=99)])[0]
    assert not np.array_equal(other, out[0])


def test_prompt_embeddings_are_encoded_once_per_prompt(tiny_path):
    inp = DiffusersInpainter(tiny_path, steps=1, height=32, width=16)
    items = [_item(i, p, seed=i) for i, p in enumerate(["red shirt", "blue shirt", "red shirt", "red shirt"])]
    inp(items)
    assert inp.encode_count == 2
    inp(items[:2])
    assert inp.encode_count == 2


class _Spy:
    """Wraps the pipeline to record the arguments of each call."""

    def __init__(self, pipe):
        self.pipe, self.calls = pipe, []

    def __getattr__(self, name):
        return getattr(self.pipe, name)

    def __call__(self, **kw):
        self.calls.append(kw)
        return self.pipe(**kw)


def test_query_jobs_use_fewer_steps_at_half_size_and_batches_are_shared(tiny_path):
    inp = DiffusersInpainter(tiny_path, steps=3, query_steps=1, height=64, width=32, max_batch=2)
    spy = _Spy(inp.pipe)
    inp.pipe = spy
    items = [_item(0, "a", 1), _item(1, "b", 2, kind="query"), _item(2, "c", 3), _item(3, "d", 4)]
    out = inp(items)
    assert [o.shape for o in out] == [(40, 20, 3)] * 4
    got = sorted((c["num_inference_steps"], c["height"], c["width"], len(c["image"])) for c in spy.calls)
    assert got == [(1, 32, 16, 1), (3, 64, 32, 1), (3, 64, 32, 2)]
    assert len(spy.calls[0]["generator"]) == len(spy.calls[0]["image"])  # one generator per job


def test_scheduler_by_name(tiny_path):
    inp = DiffusersInpainter(tiny_path, scheduler="euler_a", steps=2, height=32, width=16)
    assert inp.scheduler == "EulerAncestralDiscreteScheduler"
    out = inp([_item(0, "green coat", 3)])[0]
    assert out.shape == (40, 20, 3)
    assert type(make_scheduler("dpm++", inp.pipe.scheduler.config)).__name__ == "DPMSolverMultistepScheduler"
    with pytest.raises(ConfigError, match="unknown scheduler"):
        make_scheduler("nope", inp.pipe.scheduler.config)


def test_bad_settings_and_missing_model_are_clear_errors(tiny_path, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 8"):
        DiffusersInpainter(tiny_path, height=60)
    with pytest.raises(ConfigError, match="unknown dtype 'int3'"):
        DiffusersInpainter(tiny_path, dtype="int3")
    with pytest.raises(CheckpointError, match="not found"):
        DiffusersInpainter(tmp_path / "no-such-model")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="cannot load"):
        DiffusersInpainter(tmp_path / "empty")


def test_every_backend_keeps_pixels_outside_the_mask(tiny_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 24), np.uint8)
    labels[10:26, 5:19] = 5
    labels[26:44, 5:19] = 9
    labels[44:47, 5:19] = 18
    img = rng.integers(0, 256, (48, 24, 3), dtype=np.uint8)
    mask = labels > 0
    items = [
        InpaintItem(
            _job(i, "a person wearing red striped shirt, blue jeans, white sneakers", seed=i),
            img,
            mask,
            labels,
        )
        for i in range(2)
    ]
    backends = {
        "recolor": create_inpainter("recolor"),
        "tiny": create_inpainter("tiny", cache_dir=tiny_path.parent, height=32, width=16, steps=1),
    }
    for name, inp in backends.items():
        outs = inp(items)
        assert len(outs) == 2, name
        for o in outs:
            assert o.shape == img.shape, name
            assert np.array_equal(o[~mask], img[~mask]), name
            assert not np.array_equal(o[mask], img[mask]), name


def test_batched_engine_computes_what_the_stock_pipeline_computes_per_job(tiny_path):
    """Batching, cached prompt embeddings and one VAE call for the masked images change nothing but
    float rounding: each job equals a stock ``pipe(...)`` call made for that job alone, given the
    same masked-image latents (the engine uses the latent mean; the stock call would draw a sample)."""
    import torch

    from dlcr.generation.inpainters.diffusers_backend import paste_back
    from dlcr.generation.inpainting import pipeline_image, pipeline_mask

    inp = DiffusersInpainter(tiny_path, steps=3, height=64, width=32, guidance_scale=6.0,
                             negative_prompt="blurry", max_batch=3)
    prompts = ["a person wearing red shirt", "a person wearing black coat, gray pants", "green dress"]
    items = [_item(i, prompts[i % 3], seed=100 + i) for i in range(5)]
    ours = inp(items)
    h, w = inp.height, inp.width
    for it, o in zip(items, ours, strict=True):
        image, mask = pipeline_image(it.image, h, w), pipeline_mask(it.mask, h, w)
        with torch.inference_mode():
            latents = inp._masked_image_latents([image], [mask], h, w)
            res = inp.pipe(prompt=it.job.prompt, negative_prompt="blurry", image=image, mask_image=mask,
                           masked_image_latents=latents, height=h, width=w, num_inference_steps=3,
                           guidance_scale=6.0, generator=torch.Generator().manual_seed(it.job.seed),
                           output_type="np").images[0]
        ref = paste_back(it, res)
        assert np.abs(o.astype(int) - ref.astype(int)).max() <= 2
        assert not np.array_equal(o, it.image)
