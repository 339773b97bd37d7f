"""A tiny LLaVA-style VLM and a tiny Llama LM, built offline, for tests and ``--captioner tiny``.

Both have the real architectures (``LlavaForConditionalGeneration``: a CLIP vision tower, a
projector and a Llama decoder; ``LlamaForCausalLM``) at toy size with random weights, and are
saved with ``save_pretrained`` (safetensors) next to their processor / tokenizer, so the ``hf``
backends load them through ``AutoProcessor`` / ``AutoModelForImageTextToText`` /
``AutoModelForCausalLM`` exactly as they would load a user's model folder. Their output is random
words: they test plumbing (batching, padding, decoding, parsing), never description quality.

The tokenizer is a word-level model trained here with the ``tokenizers`` library on a small
clothing vocabulary (nothing is downloaded); it carries a chat template and an ``<image>`` token.
Built folders are cached under ``$DLCR_CACHE_DIR`` (default ``~/.cache/dlcr``), keyed by
:data:`TINY_TEXT_VERSION` and the seed, and built in a temp folder renamed into place.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlcr.generation.tiny_models.diffusion import cached_build

TINY_TEXT_VERSION = "v1"
VLM_DIRNAME = f"tiny-llava-{TINY_TEXT_VERSION}"
LLM_DIRNAME = f"tiny-llama-{TINY_TEXT_VERSION}"
#: What the tiny models are, as recorded in output tables: they are fakes.
TINY_VLM_LABEL = f"tiny-random-llava-{TINY_TEXT_VERSION} (FAKE: random weights)"
TINY_LLM_LABEL = f"tiny-random-llama-{TINY_TEXT_VERSION} (FAKE: random weights)"

PAD, UNK, BOS, EOS, IMAGE = "<pad>", "<unk>", "<s>", "</s>", "<image>"
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, IMAGE)

_WORDS = tuple(
    "a an the person man woman he she is are wearing wears with and of in on his her pair "  # noqa: SIM905
    "user assistant what which clothes clothing items item extract following text from "
    "shirt t-shirt blouse sweater hoodie jacket coat dress jumpsuit top vest "
    "pants jeans trousers shorts skirt leggings shoes sneakers boots sandals socks "
    "red orange yellow green blue purple pink brown black white gray grey beige navy olive teal "
    "light dark striped checked plaid dotted plain long short sleeve sleeves sleeveless "
    "upper lower footwear body wearing . , : ; ? ! - 1 2 3".split()
)
# Words are runs of letters (optionally hyphenated) / digits, or single punctuation marks.
_SPLIT = r"[A-Za-z]+(?:-[A-Za-z]+)*|[0-9]+|[^\sA-Za-z0-9]"

#: ``USER: <image> question ASSISTANT:`` (LLaVA-1.5 style); plain-string and list contents work.
VLM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image> {% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] != 'user' %}</s>{% endif %} "
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
#: The same turn format for the text-only model.
LLM_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{{ message['content'] }}{% if message['role'] != 'user' %}</s>{% endif %} "
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_word_tokenizer(words: tuple[str, ...] = _WORDS, chat_template: str = LLM_CHAT_TEMPLATE) -> Any:
    """A lower-casing word-level tokenizer (``PreTrainedTokenizerFast``) with ``<image>`` and a chat
    template; unknown words become ``<unk>``; decoding joins words with spaces."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(_SPLIT), behavior="removed", invert=True)
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # joins words with spaces
    trainer = trainers.WordLevelTrainer(
        special_tokens=list(SPECIAL_TOKENS), min_frequency=1, show_progress=False
    )
    tok.train_from_iterator([" ".join(words)], trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        padding_side="left",
        chat_template=chat_template,
        model_max_length=512,
    )


def build_tiny_vlm(
    folder: str | os.PathLike, seed: int = 0, image_size: int = 16, patch_size: int = 8
) -> Path:
    """Build a tiny LLaVA (CLIP vision tower + Llama) with its ``LlavaProcessor`` into ``folder``.

    An image becomes ``(image_size // patch_size) ** 2`` image tokens (the CLS token is dropped,
    ``vision_feature_select_strategy="default"``).
    """
    import torch
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
    )

    tokenizer = build_word_tokenizer(chat_template=VLM_CHAT_TEMPLATE)
    n_image_tokens = (image_size // patch_size) ** 2
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's CLS token (dropped by the "default" strategy)
        chat_template=VLM_CHAT_TEMPLATE,
    )
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=16,
    )
    text = _llama_config(LlamaConfig, tokenizer)
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        image_seq_length=n_image_tokens,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    _set_generation_ids(model, tokenizer)
    folder = Path(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def build_tiny_llm(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Build a tiny random ``LlamaForCausalLM`` with the word-level tokenizer into ``folder``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = build_word_tokenizer(chat_template=LLM_CHAT_TEMPLATE)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(_llama_config(LlamaConfig, tokenizer)).eval()
    _set_generation_ids(model, tokenizer)
    folder = Path(folder)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _llama_config(cls: Any, tokenizer: Any) -> Any:
    # a large init range spreads the random logits, so greedy decoding has no near-ties that
    # float rounding (padding, batch shape) could flip
    return cls(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        initializer_range=0.2,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )


def _set_generation_ids(model: Any, tokenizer: Any) -> None:
    gc = model.generation_config
    gc.bos_token_id = tokenizer.bos_token_id
    gc.eos_token_id = tokenizer.eos_token_id
    gc.pad_token_id = tokenizer.pad_token_id


def tiny_vlm_path(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Folder of the tiny VLM (built on first use)."""
    return cached_build(VLM_DIRNAME, "processor_config.json", build_tiny_vlm, cache_dir, seed)


def tiny_llm_path(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Folder of the tiny LLM (built on first use)."""
    return cached_build(LLM_DIRNAME, "tokenizer_config.json", build_tiny_llm, cache_dir, seed)


__all__ = [
    "LLM_CHAT_TEMPLATE",
    "TINY_LLM_LABEL",
    "TINY_TEXT_VERSION",
    "TINY_VLM_LABEL",
    "VLM_CHAT_TEMPLATE",
    "build_tiny_llm",
    "build_tiny_vlm",
    "build_word_tokenizer",
    "tiny_llm_path",
    "tiny_vlm_path",
]
