"""The ``hf`` captioner / summariser on tiny models in the public layouts (LLaVA-1.5, Llama-3-Instruct).

The folders come from :mod:`public_formats.hf_text` (llava-hf's files and key names, Meta's Llama-3
tokenizer / generation config), not from dlcr's own tiny builders.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from dlcr.errors import CheckpointError  # noqa: E402
from dlcr.generation.describers.hf import (  # noqa: E402
    HFCaptioner,
    HFSummarizer,
    crop_padding,
    mean_colour,
    pad_for_crop,
)
from dlcr.generation.outfit_text import clean_generated_text, split_outfit_text  # noqa: E402
from public_formats.hf_text import CLIP_MEAN, CLIP_STD, build_llama3_instruct, build_llava15, llama3_ids  # noqa: E402

RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 160, 0)
CAPTIONS = ["a red shirt", "a person wearing blue jeans and white shoes with a black jacket", "x"]


def _is_clean(text: str) -> bool:
    return text == clean_generated_text(text) and "\ufffd" not in text


def marker_person(height: int = 128, width: int = 64, band: int = 12) -> np.ndarray:
    """A person crop: red top rows (head), blue bottom rows (shoes), green in between."""
    img = np.empty((height, width, 3), np.uint8)
    img[:] = GREEN
    img[:band] = RED
    img[-band:] = BLUE
    return img


def _unnormalise(pixel_values: torch.Tensor) -> np.ndarray:
    """N×3×H×W CLIP-normalised values back to N×H×W×3 in [0, 1]."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixel_values.float().cpu() * std + mean).permute(0, 2, 3, 1).numpy()


def _has(rgb01: np.ndarray, colour: tuple[int, int, int], tol: float = 0.15) -> bool:
    return bool((np.abs(rgb01 - np.asarray(colour) / 255).max(axis=-1) < tol).any())


@pytest.fixture(scope="session")
def llava_dir(tmp_path_factory):
    return build_llava15(tmp_path_factory.mktemp("llava-1.5-hf") / "llava-1.5-tiny-hf")


@pytest.fixture(scope="session")
def llama3_dir(tmp_path_factory):
    return build_llama3_instruct(tmp_path_factory.mktemp("llama-3") / "Meta-Llama-3-tiny-Instruct")


@pytest.fixture(scope="module")
def captioner(llava_dir):
    return HFCaptioner(llava_dir, max_new_tokens=8, batch_size=3, device="cpu", local_files_only=True)


@pytest.fixture(scope="module")
def summarizer(llama3_dir):
    return HFSummarizer(llama3_dir, max_new_tokens=10, batch_size=3, device="cpu", local_files_only=True)


def _seen_pixels(cap: HFCaptioner, images: list[np.ndarray]) -> tuple[list[str], torch.Tensor]:
    """Captions and the pixel values the model's vision tower received on its first call."""
    seen: list[torch.Tensor] = []

    def hook(module, args, kwargs):
        pixels = kwargs.get("pixel_values", args[0] if args else None)
        if pixels is not None:
            seen.append(pixels.detach().clone())

    tower = cap.net.model.vision_tower  # LlavaForConditionalGeneration.model.vision_tower (CLIP)
    handle = tower.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        captions = cap(images, [None] * len(images))
    finally:
        handle.remove()
    assert seen, "the model never received pixel_values"
    return captions, seen[0]


# --------------------------------------------------------------------------------------------
# The fixtures are the public layouts
# --------------------------------------------------------------------------------------------


def test_llava15_folder_has_the_llava_hf_files_and_loads_its_weights(llava_dir):
    from safetensors.torch import load_file
    from transformers import AutoModelForImageTextToText, AutoProcessor

    names = {p.name for p in llava_dir.iterdir()}
    assert {
        "config.json", "generation_config.json", "model.safetensors.index.json", "preprocessor_config.json",
        "processor_config.json", "chat_template.json", "tokenizer.json", "tokenizer_config.json",
        "special_tokens_map.json", "added_tokens.json",
    } <= names  # fmt: skip
    index = json.loads((llava_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    }
    assert any(k.startswith("language_model.model.layers.") for k in index["weight_map"])
    assert any(k.startswith("vision_tower.vision_model.") for k in index["weight_map"])
    proc = AutoProcessor.from_pretrained(llava_dir)
    assert (
        type(proc).__name__ == "LlavaProcessor"
        and type(proc.image_processor).__name__ == "CLIPImageProcessor"
    )
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}]
    assert (
        proc.apply_chat_template(conversation, add_generation_prompt=True)
        == "USER: <image>\nWhat? ASSISTANT:"
    )
    net = AutoModelForImageTextToText.from_pretrained(llava_dir)
    saved = load_file(str(llava_dir / "model-00001-of-00002.safetensors"))
    saved |= load_file(str(llava_dir / "model-00002-of-00002.safetensors"))
    state = net.state_dict()  # the original key names were mapped, not left random
    assert torch.equal(saved["language_model.lm_head.weight"].float(), state["lm_head.weight"])
    assert torch.equal(
        saved["vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight"].float(),
        state["model.vision_tower.encoder.layers.1.mlp.fc1.weight"],
    )


def test_llama3_folder_has_no_pad_token_and_two_eos_ids(llama3_dir):
    from transformers import AutoTokenizer, GenerationConfig

    ids = llama3_ids(llama3_dir)
    tok = AutoTokenizer.from_pretrained(llama3_dir)
    assert tok.pad_token is None and tok.eos_token == "<|eot_id|>"
    assert ids["<|eot_id|>"] - ids["<|begin_of_text|>"] == 9  # 128009 - 128000
    gen = GenerationConfig.from_pretrained(llama3_dir)
    assert gen.eos_token_id == [ids["<|end_of_text|>"], ids["<|eot_id|>"]] and gen.do_sample
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )
    assert text == (
        "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


# --------------------------------------------------------------------------------------------
# The captioner sees the whole person
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("height", [128, 192])  # 2:1 and 3:1 person crops
def test_llava_receives_the_top_and_bottom_rows_of_the_person(captioner, height):
    _, pixels = _seen_pixels(captioner, [marker_person(height=height)])
    rgb = _unnormalise(pixels)
    assert rgb.shape[1:3] == (32, 32)
    assert _has(rgb, RED) and _has(rgb, BLUE) and _has(rgb, GREEN)
    # the padding is LLaVA-1.5's: the processor's mean colour (normalised to ~0) in the corners
    assert float(pixels[0, :, :, 0].abs().max()) < 0.05
    assert captioner.padding == (32.0, 32.0, 1.0, 1.0)
    assert captioner.pad_colour == tuple(int(x * 255) for x in CLIP_MEAN)


def test_without_padding_the_centre_crop_loses_head_and_shoes(llava_dir):
    cap = HFCaptioner(llava_dir, max_new_tokens=2, device="cpu", local_files_only=True, pad_images=False)
    assert cap.padding is None
    _, pixels = _seen_pixels(cap, [marker_person()])
    rgb = _unnormalise(pixels)
    assert _has(rgb, GREEN) and not _has(rgb, RED) and not _has(rgb, BLUE)


@pytest.mark.parametrize(
    ("size", "crop"),
    [
        ({"shortest_edge": 40}, {"height": 32, "width": 32}),  # resize 40, crop 32 (ImageNet style)
        ({"shortest_edge": 32}, {"height": 32, "width": 16}),  # a non-square crop
        ({"height": 40, "width": 40}, {"height": 32, "width": 32}),  # exact resize, then crop
    ],
)
def test_padding_keeps_the_person_for_other_cropping_processors(size, crop):
    from transformers import CLIPImageProcessor

    proc = CLIPImageProcessor(size=size, crop_size=crop, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    padding = crop_padding(proc)
    assert padding is not None
    for height, width in [(128, 64), (192, 64), (64, 128)]:
        img = marker_person(height, width)
        kept = _unnormalise(
            proc(images=[pad_for_crop(img, padding, mean_colour(proc))], return_tensors="pt")["pixel_values"]
        )
        assert _has(kept, RED) and _has(kept, BLUE), (size, crop, height, width)
        if height > width:  # what the padding is for: a tall crop loses its top and bottom rows
            lost = _unnormalise(proc(images=[img], return_tensors="pt")["pixel_values"])
            assert not (_has(lost, RED) or _has(lost, BLUE))


def test_processors_that_do_not_crop_are_left_alone():
    from transformers import (
        CLIPImageProcessor,
        LlavaImageProcessor,
        LlavaNextImageProcessor,
        SiglipImageProcessor,
    )

    assert crop_padding(SiglipImageProcessor()) is None  # resizes to a square, no crop
    assert crop_padding(CLIPImageProcessor(do_center_crop=False, size={"height": 32, "width": 32})) is None
    assert crop_padding(LlavaImageProcessor(do_pad=True)) is None  # pads to a square itself
    assert crop_padding(LlavaNextImageProcessor()) is None  # anyres tiles cover the whole image
    assert crop_padding(None) is None
    img = marker_person(32, 32)
    assert pad_for_crop(img, (1.0, 1.0, 1.0, 1.0), (0, 0, 0)) is img  # already square


def test_pad_for_crop_is_llava_expand_to_square():
    img = marker_person(128, 64)
    out = pad_for_crop(img, (336.0, 336.0, 1.0, 1.0), (122, 116, 104))
    assert out.shape == (128, 128, 3)
    np.testing.assert_array_equal(out[:, 32:96], img)  # centred
    assert (out[:, :32] == (122, 116, 104)).all() and (out[:, 96:] == (122, 116, 104)).all()
    wide = pad_for_crop(marker_person(63, 128), (1.0, 1.0, 1.0, 1.0), (0, 0, 0))
    assert (
        wide.shape == (128, 128, 3)
        and (wide[:32] == 0).all()
        and (wide[32:95] == marker_person(63, 128)).all()
    )


def test_llava_captions_are_clean_and_batches_match_single_images(captioner):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (128, 64, 3), dtype=np.uint8) for _ in range(3)] + [marker_person()]
    batched = captioner(images, [None] * 4)
    captioner.batch_size = 1
    try:
        single = captioner(images, [None] * 4)
    finally:
        captioner.batch_size = 3
    assert batched == single and len(set(batched)) > 1
    assert all(_is_clean(c) for c in batched), batched
    assert HFCaptioner.output_version == 2 and HFSummarizer.output_version == 2


# --------------------------------------------------------------------------------------------
# The summariser on a Llama-3 tokenizer: no pad token, two eos ids
# --------------------------------------------------------------------------------------------


def test_llama3_summarizer_pads_left_with_eos_and_batches_match(summarizer):
    tok = summarizer.tokenizer
    assert tok.pad_token == tok.eos_token == "<|eot_id|>" and tok.padding_side == "left"
    texts = [summarizer.prompt_text(c) for c in CAPTIONS]
    assert texts[0].startswith("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\n")
    enc = tok(texts, padding=True, add_special_tokens=False)
    assert [ids.count(llama3_ids_of(tok)["<|begin_of_text|>"]) for ids in enc["input_ids"]] == [1, 1, 1]
    batched = summarizer.answer(CAPTIONS)
    summarizer.batch_size = 1
    try:
        single = summarizer.answer(CAPTIONS)
    finally:
        summarizer.batch_size = 3
    assert batched == single
    torch.manual_seed(123)  # greedy, although the generation config asks for sampling at temperature 0.6
    assert summarizer.answer(CAPTIONS) == batched
    assert all(_is_clean(a) for a in batched), batched


def llama3_ids_of(tok) -> dict[str, int]:
    return {s: tok.convert_tokens_to_ids(s) for s in ("<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>")}


def _forced(summarizer: HFSummarizer, token_id: int, after: int = 0):
    """Make the LM emit ``token_id`` from its ``after``-th new token on; return the generated lengths."""
    lengths: list[int] = []
    calls = {"n": 0}

    def hook(module, args, out):
        calls["n"] += 1
        if calls["n"] > after:
            out[..., token_id] += 1e4
        return out

    generate = summarizer.net.generate

    def counting(**kw):
        ids = generate(**kw)
        lengths.append(int(ids.shape[1] - kw["input_ids"].shape[1]))
        return ids

    handle = summarizer.net.lm_head.register_forward_hook(hook)
    summarizer.net.generate = counting
    return handle, lengths


@pytest.mark.parametrize("stop", ["<|end_of_text|>", "<|eot_id|>"])
def test_llama3_generation_stops_at_either_eos_id(summarizer, stop):
    token = llama3_ids_of(summarizer.tokenizer)[stop]
    handle, lengths = _forced(summarizer, token, after=3)
    try:
        answers = summarizer.answer(["a green coat"])
    finally:
        handle.remove()
        del summarizer.net.generate
    assert lengths == [4] and summarizer.max_new_tokens > 4  # three tokens, then the stop token
    assert stop not in answers[0] and _is_clean(answers[0])


def test_stops_at_the_tokenizer_eos_when_the_generation_config_lacks_it(llama3_dir, tmp_path):
    """The first Llama-3 release listed only <|end_of_text|> in generation_config.json."""
    folder = tmp_path / "llama-3-first-release"
    shutil.copytree(llama3_dir, folder)
    ids = llama3_ids(folder)
    gen = json.loads((folder / "generation_config.json").read_text())
    gen["eos_token_id"] = ids["<|end_of_text|>"]
    (folder / "generation_config.json").write_text(json.dumps(gen))
    summ = HFSummarizer(folder, max_new_tokens=10, device="cpu", local_files_only=True)
    handle, lengths = _forced(summ, ids["<|eot_id|>"], after=2)
    try:
        summ.answer(["a green coat"])
    finally:
        handle.remove()
    assert lengths == [3]  # not 10: <|eot_id|> (the tokenizer's eos) ends the answer
    assert summ.eos_token_id == [ids["<|end_of_text|>"], ids["<|eot_id|>"]]


def test_answers_are_cleaned_before_they_are_parsed(summarizer, monkeypatch):
    raw = "\ufffd1. Red\x00 T-shirt\r\n\r\n2.\u200b Blue   jeans\x1b\n\n3. White\ufffdsneakers"
    assert clean_generated_text(raw) == "1. Red T-shirt\n2. Blue jeans\n3. White sneakers"
    assert split_outfit_text(clean_generated_text(raw)) == {
        "upper": "red t-shirt", "lower": "blue jeans", "footwear": "white sneakers",
    }  # fmt: skip
    decode = summarizer.tokenizer.batch_decode
    monkeypatch.setattr(
        summarizer.tokenizer, "batch_decode", lambda ids, **kw: [raw] * len(decode(ids, **kw))
    )
    outfit = summarizer("k", ["a caption"])
    assert (outfit.upper, outfit.lower, outfit.footwear) == ("red t-shirt", "blue jeans", "white sneakers")


# --------------------------------------------------------------------------------------------
# A missing folder says so
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [HFCaptioner, HFSummarizer])
def test_a_missing_model_folder_says_folder_not_found(cls, tmp_path):
    for name in (tmp_path / "missing", "./no-such-model", "weights/llava/1.5"):
        with pytest.raises(CheckpointError, match="model folder not found"):
            cls(name, device="cpu", local_files_only=True)
    with pytest.raises(CheckpointError, match="cannot load"):  # a hub id is still tried (offline here)
        cls("no-such-org/no-such-model", device="cpu", local_files_only=True)
