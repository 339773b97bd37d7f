"""transformers captioner / summariser on the tiny random LLaVA and Llama (built offline)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from dlcr.errors import CheckpointError, ConfigError, InputError  # noqa: E402
from dlcr.generation.describe import VoteSummarizer, describe_dataset  # noqa: E402
from dlcr.generation.describe_tables import read_captions, read_outfits  # noqa: E402
from dlcr.generation.describers import create_captioner, create_summarizer  # noqa: E402
from dlcr.generation.describers.hf import HFCaptioner, HFSummarizer, resolve_dtype  # noqa: E402
from dlcr.generation.tiny_models.text import (  # noqa: E402
    TINY_LLM_LABEL,
    TINY_VLM_LABEL,
    build_word_tokenizer,
    tiny_llm_path,
    tiny_vlm_path,
)
from dlcr.testing.toy_generation import make_toy_dataset  # noqa: E402
from dlcr.types import Outfit  # noqa: E402

CAPTIONS = [
    "a red shirt",
    "a person wearing blue jeans and white shoes with a black jacket",
    "x",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-text")
    tiny_vlm_path(root), tiny_llm_path(root)
    return root


@pytest.fixture(scope="module")
def captioner(cache):
    return HFCaptioner(
        tiny_vlm_path(cache), max_new_tokens=8, batch_size=3, device="cpu", local_files_only=True
    )


@pytest.fixture(scope="module")
def summarizer(cache):
    return HFSummarizer(
        tiny_llm_path(cache), max_new_tokens=8, batch_size=3, device="cpu", local_files_only=True
    )


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (40 + 10 * i, 20 + 5 * i, 3), dtype=np.uint8) for i in range(3)]


def test_tiny_models_are_real_architectures_cached_once(cache):
    from transformers import AutoModelForCausalLM, AutoProcessor, LlavaForConditionalGeneration

    vlm = tiny_vlm_path(cache)
    assert tiny_vlm_path(cache) == vlm and (vlm / "model.safetensors").is_file()
    proc = AutoProcessor.from_pretrained(vlm)
    assert type(proc).__name__ == "LlavaProcessor"
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What?"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    assert text == "USER: <image> What? ASSISTANT:"
    enc = proc(images=_images()[:1], text=[text], return_tensors="pt")
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    assert int((enc["input_ids"] == image_id).sum()) == 4  # (16 / 8) ** 2 patches, CLS dropped
    assert isinstance(LlavaForConditionalGeneration.from_pretrained(vlm), LlavaForConditionalGeneration)
    lm = AutoModelForCausalLM.from_pretrained(tiny_llm_path(cache))
    assert type(lm).__name__ == "LlamaForCausalLM"


def test_word_tokenizer_round_trip():
    tok = build_word_tokenizer()
    ids = tok("A red T-shirt, blue jeans", add_special_tokens=False)["input_ids"]
    assert tok.convert_ids_to_tokens(ids) == ["a", "red", "t-shirt", ",", "blue", "jeans"]
    assert tok.decode(ids) == "a red t-shirt, blue jeans"
    assert tok.convert_ids_to_tokens(tok("zebra")["input_ids"]) == ["<unk>"]


def test_captioner_batches_like_single_images(captioner):
    images = _images()  # three different sizes
    batched = captioner(images, [None] * 3)
    captioner.batch_size = 1
    try:
        single = captioner(images, [None] * 3)
    finally:
        captioner.batch_size = 3
    assert batched == single
    assert len(batched) == 3 and len(set(batched)) > 1  # the image changes the answer
    # only the new tokens are decoded: at most max_new_tokens words (the prompt alone has 8+ tokens)
    assert all(len(c.split()) <= 8 for c in batched)
    assert captioner.tokenizer.padding_side == "left"
    with pytest.raises(InputError, match="3 images but 1"):
        captioner(images, [None])


def test_summarizer_left_padding_makes_batches_match_singles(summarizer):
    texts = [summarizer.prompt_text(c) for c in CAPTIONS]
    assert texts[0] == "USER: Extract the clothing items from the following text: a red shirt ASSISTANT:"
    enc = summarizer.tokenizer(texts, padding=True, add_special_tokens=False)
    pad = summarizer.tokenizer.pad_token_id
    lengths = [sum(m) for m in enc["attention_mask"]]
    assert len(set(lengths)) == 3  # really different lengths
    for ids, n in zip(enc["input_ids"], lengths, strict=True):
        assert ids[: len(ids) - n] == [pad] * (len(ids) - n)  # padding on the left
    batched = summarizer.answer(CAPTIONS)
    summarizer.batch_size = 1
    try:
        single = summarizer.answer(CAPTIONS)
        summarizer.batch_size = 3
        summarizer.tokenizer.padding_side = "right"  # what the test guards against
        right = summarizer.answer(CAPTIONS)
    finally:
        summarizer.batch_size = 3
        summarizer.tokenizer.padding_side = "left"
    assert batched == single
    assert right != single
    assert all(len(a.split()) <= 8 for a in batched)


def test_summarizer_parses_and_votes_llm_answers(summarizer, monkeypatch):
    answers = {
        "c1": "1. Red T-shirt\n2. Blue jeans\n3. White sneakers",
        "c2": "The clothing items are: a red t-shirt, black trousers.",
        "c3": "- red t-shirt\n- blue jeans",
        "c4": "Items: a grey hoodie and white sneakers",
    }
    monkeypatch.setattr(summarizer, "answer", lambda caps: [answers[c] for c in caps])
    assert summarizer("k", ["c1", "c2", "c3"]) == Outfit("k", "red t-shirt", "blue jeans", "white sneakers")
    outs = summarizer.summarize_many([("a", ["c2"]), ("b", ["c4", "c1"])])
    assert outs == [
        Outfit("a", "red t-shirt", "black trousers", ""),
        Outfit("b", "gray hoodie", "blue jeans", "white sneakers"),
    ]


def test_repeated_captions_are_run_through_the_lm_once(summarizer, monkeypatch):
    rows = []
    generate = summarizer.net.generate

    def counting(**kw):
        rows.append(int(kw["input_ids"].shape[0]))
        return generate(**kw)

    monkeypatch.setattr(summarizer.net, "generate", counting)
    caps = [CAPTIONS[0], CAPTIONS[1], CAPTIONS[0].replace(" ", "  "), CAPTIONS[0], CAPTIONS[2], CAPTIONS[1]]
    got = summarizer.answer(caps)
    assert sum(rows) == 3  # three distinct prompts
    assert got == [summarizer.answer([c])[0] for c in caps]
    assert got[0] == got[2] == got[3] and got[1] == got[5]


def test_summarize_many_matches_per_id_calls(summarizer):
    items = [("a", CAPTIONS[:2]), ("b", CAPTIONS[2:])]
    assert summarizer.summarize_many(items) == [summarizer(k, c) for k, c in items]


def test_tiny_backends_are_labelled_fake_and_describe_a_dataset(cache, tmp_path):
    cap = create_captioner("tiny", cache_dir=cache, max_new_tokens=6)
    summ = create_summarizer("tiny", cache_dir=cache, max_new_tokens=6)
    assert cap.model == TINY_VLM_LABEL and "FAKE" in cap.model
    assert cap.padding == (16.0, 16.0, 1.0, 1.0)  # its CLIP processor crops: images are padded first
    assert create_captioner("tiny", cache_dir=cache, pad_images=False).padding is None
    assert summ.model == TINY_LLM_LABEL and "FAKE" in summ.model
    samples, _, images, labels = make_toy_dataset(tmp_path / "d", n_persons=2, outfits_per_person=1,
                                                  images_per_outfit=2, height=32, width=16)  # fmt: skip
    rep = describe_dataset(
        samples, images, labels, tmp_path / "out", captioner=cap, summarizer=summ, batch_size=3
    )
    assert (rep.captioned, rep.outfits) == (4, 2)
    assert {r["model"] for r in read_captions(tmp_path / "out")} == {TINY_VLM_LABEL}
    assert set(read_outfits(tmp_path / "out")) == {s.clothes_key for s in samples}
    # the vote summariser over the same (fake) captions runs too
    rep = describe_dataset(
        samples, images, labels, tmp_path / "out", captioner=cap, summarizer=VoteSummarizer()
    )
    assert (rep.captioned, rep.reused, rep.summarized) == (0, 4, 2)


def test_load_errors_and_options(tmp_path):
    with pytest.raises(CheckpointError, match="captioner model folder not found"):
        HFCaptioner(tmp_path / "missing", local_files_only=True, device="cpu")
    with pytest.raises(CheckpointError, match="summarizer model folder not found"):
        HFSummarizer(tmp_path / "missing", local_files_only=True, device="cpu")
    (tmp_path / "empty").mkdir()  # a folder without a model still says what failed to load
    with pytest.raises(CheckpointError, match="cannot load"):
        HFCaptioner(tmp_path / "empty", local_files_only=True, device="cpu")
    with pytest.raises(CheckpointError, match="cannot load"):
        HFSummarizer(tmp_path / "empty", local_files_only=True, device="cpu")
    with pytest.raises(ConfigError, match="max_new_tokens"):
        HFCaptioner(tmp_path / "missing", max_new_tokens=0)
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16
    assert resolve_dtype(None, "cpu") == torch.float32 and resolve_dtype("auto", "cuda:0") == torch.float16
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_dtype("int3", "cpu")
