"""Tiny text models in the on-disk layout of two public checkpoints, built offline in seconds.

* :func:`build_llava15` writes a folder laid out like ``llava-hf/llava-1.5-7b-hf``: ``config.json``
  (``LlavaForConditionalGeneration``, a CLIP vision tower, a Llama text config, image token = the
  first id after the text vocabulary, pad = the next, vocabulary rounded up to a multiple of 64,
  ``vision_feature_layer=-2``, ``"default"`` feature selection), ``generation_config.json`` (bos 1,
  eos 2, pad), weights in two safetensors shards with ``model.safetensors.index.json`` and the
  checkpoint's *original* key names (``language_model.model.*``, ``language_model.lm_head.*``,
  ``vision_tower.vision_model.*``, ``multi_modal_projector.linear_{1,2}.*``, which transformers
  renames on load), ``preprocessor_config.json`` (``CLIPImageProcessor``: resize the short side to
  ``shortest_edge`` and centre-crop to ``crop_size``, OpenAI CLIP mean / std, bicubic),
  ``processor_config.json`` (``LlavaProcessor``: patch size, ``num_additional_image_tokens=1``),
  ``chat_template.json`` (the llava-hf template: ``USER: <image>\\n{text} ASSISTANT:``), and a
  Llama-2 style tokenizer (``tokenizer.json``: byte-fallback BPE with ``<unk>``, ``<s>``, ``</s>``
  as ids 0-2 and the 256 byte tokens as ids 3-258; ``tokenizer_config.json`` with
  ``LlamaTokenizer``, ``<pad>`` and ``<image>`` as added tokens, left padding).
* :func:`build_llama3_instruct` writes a folder laid out like ``meta-llama/Meta-Llama-3-8B-Instruct``:
  a byte-level BPE ``tokenizer.json`` whose 256 special tokens follow the regular vocabulary in the
  Llama-3 order (``<|begin_of_text|>``, ``<|end_of_text|>``, reserved 0-3, ``<|start_header_id|>``,
  ``<|end_header_id|>``, reserved 4, ``<|eot_id|>``, reserved 5...), a ``TemplateProcessing`` post
  processor that prepends ``<|begin_of_text|>``, ``tokenizer_config.json`` with
  ``PreTrainedTokenizerFast``, the Llama-3 chat template and **no pad token**, ``config.json``
  (``LlamaForCausalLM``, eos = ``<|eot_id|>``), and ``generation_config.json`` with **two** eos ids
  (``<|end_of_text|>`` and ``<|eot_id|>``, i.e. 128001 and 128009 in the real checkpoint) and its
  sampling defaults (``do_sample=true``, temperature 0.6, top_p 0.9).

Sizes are toy (hidden size 16-32, two layers, a few hundred tokens); keys, file names, templates and
token orders follow the public files. Weights are random: these folders test loading, prompting,
batching, stopping and decoding, never caption quality.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The chat template llava-hf ships with its LLaVA-1.5 checkpoints (``chat_template.json``).
LLAVA15_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}"
    "{% endif %}{# Render all images first #}{% for content in message['content'] | selectattr('type', "
    "'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}{# Render all text next #}{% if message['role'] "
    "!= 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}"
    "{{ content['text'] + ' '}}{% endfor %}{% else %}{% for content in message['content'] | "
    "selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}"
    "{% endfor %}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

#: The chat template of ``Meta-Llama-3-8B-Instruct`` (``tokenizer_config.json``).
LLAMA3_CHAT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + "
    "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

#: OpenAI CLIP normalisation (``preprocessor_config.json`` of LLaVA-1.5).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# A small English corpus for the toy BPE merges (garments, colours, the prompts).
_CORPUS = (
    "USER: ASSISTANT: What clothes is the person wearing? Extract the clothing items from the following "
    "text: The person is wearing a red striped t-shirt, blue jeans and white sneakers. A man in a black "
    "jacket, gray trousers and brown shoes. A woman wearing a green dress, a yellow coat and black boots. "
    "upper lower footwear shirt blouse sweater hoodie jacket coat dress pants jeans shorts skirt shoes "
    "sneakers boots sandals red orange yellow green blue purple pink brown black white gray navy beige "
    "light dark plain checked dotted long short sleeve sleeves 1. 2. 3. - * : , ; ( ) \n"
)


def _dump(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _added(content: str, special: bool = True) -> dict[str, Any]:
    return {"content": content, "lstrip": False, "normalized": False, "rstrip": False,
            "single_word": False, "special": special}  # fmt: skip


def _save_shards(folder: Path, tensors: dict[str, Any], n_shards: int = 2) -> None:
    """``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json`` (the hub layout)."""
    from safetensors.torch import save_file

    names = sorted(tensors)
    per = -(-len(names) // n_shards)
    weight_map, total = {}, 0
    for i in range(n_shards):
        shard = f"model-{i + 1:05d}-of-{n_shards:05d}.safetensors"
        part = {k: tensors[k].contiguous() for k in names[i * per : (i + 1) * per]}
        save_file(part, str(folder / shard), metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = shard
            total += v.numel() * v.element_size()
    _dump(
        folder / "model.safetensors.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map}
    )


# --------------------------------------------------------------------------------------------
# LLaVA-1.5 (llava-hf)
# --------------------------------------------------------------------------------------------


def _llama2_tokenizer_json(vocab_size: int = 700) -> dict[str, Any]:
    """A Llama-2 style ``tokenizer.json``: byte-fallback BPE over ``▁``-joined words."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    # merges are learnt within "▁word" pieces, as sentencepiece does; the saved file then has Llama-2's
    # normalizer (prepend "▁", spaces to "▁") and no pre-tokenizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    tok.train_from_iterator([_CORPUS] * 4, trainer)
    data = json.loads(tok.to_str())
    data["normalizer"] = {
        "type": "Sequence",
        "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
        ],
    }
    data["pre_tokenizer"] = None
    # in the real file only <unk>, <s>, </s> are added tokens; the byte tokens live in the BPE vocabulary
    data["added_tokens"] = [dict(_added(s), id=i) for i, s in enumerate(specials[:3])]
    data["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<s>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],  # fmt: skip
        "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
    }
    return data


def build_llava15(
    folder: str | Path,
    seed: int = 0,
    image_size: int = 32,
    patch_size: int = 8,
    shortest_edge: int | None = None,
) -> Path:
    """A tiny LLaVA-1.5 in the llava-hf layout (see the module docstring). ``shortest_edge`` (default
    ``image_size``) is the processor's resize target; the crop is always ``image_size`` square."""
    import torch
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tj = _llama2_tokenizer_json()
    n_text = len(tj["model"]["vocab"])
    image_id, pad_id = n_text, n_text + 1
    tj["added_tokens"] += [dict(_added("<image>"), id=image_id), dict(_added("<pad>"), id=pad_id)]
    (folder / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
    vocab_size = -(-(n_text + 2) // 64) * 64  # llava-hf pads 32002 tokens to 32064 rows
    added = {str(i): _added(s) for i, s in enumerate(["<unk>", "<s>", "</s>"])}
    added |= {str(image_id): _added("<image>"), str(pad_id): _added("<pad>")}
    _dump(folder / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added, "bos_token": "<s>",
        "clean_up_tokenization_spaces": False, "eos_token": "</s>", "legacy": False,
        "model_max_length": 1000000000000000019884624838656, "pad_token": "<pad>", "padding_side": "left",
        "processor_class": "LlavaProcessor", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
        "trust_remote_code": False, "unk_token": "<unk>", "use_default_system_prompt": False,
    })  # fmt: skip
    _dump(folder / "special_tokens_map.json",
          {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": "<unk>"})  # fmt: skip
    _dump(folder / "added_tokens.json", {"<image>": image_id, "<pad>": pad_id})
    _dump(folder / "chat_template.json", {"chat_template": LLAVA15_CHAT_TEMPLATE})
    _dump(folder / "preprocessor_config.json", {
        "crop_size": {"height": image_size, "width": image_size}, "do_center_crop": True, "do_convert_rgb": True,
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor", "image_std": CLIP_STD, "processor_class": "LlavaProcessor",
        "resample": 3, "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": shortest_edge or image_size},
    })  # fmt: skip
    _dump(folder / "processor_config.json", {
        "image_token": "<image>", "num_additional_image_tokens": 1, "patch_size": patch_size,
        "processor_class": "LlavaProcessor", "vision_feature_select_strategy": "default",
    })  # fmt: skip
    config = {
        "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": image_id,
        "model_type": "llava", "pad_token_id": pad_id, "projector_hidden_act": "gelu",
        "text_config": {
            "_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"],
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 4, "max_position_embeddings": 4096, "model_type": "llama",
            "rms_norm_eps": 1e-05, "initializer_range": 0.2, "torch_dtype": "float16", "vocab_size": vocab_size,
        },
        "tie_word_embeddings": False, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0",
        "vision_config": {
            "hidden_size": 16, "image_size": image_size, "intermediate_size": 32, "model_type": "clip_vision_model",
            "num_attention_heads": 2, "num_hidden_layers": 2, "patch_size": patch_size, "projection_dim": 16,
            "vocab_size": 32000,
        },
        "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": vocab_size,
    }  # fmt: skip
    _dump(folder / "config.json", config)
    _dump(folder / "generation_config.json", {
        "_from_model_config": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": pad_id,
        "transformers_version": "4.36.0.dev0",
    })  # fmt: skip
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(LlavaConfig.from_pretrained(folder)).eval()
    tensors = {}
    for k, v in model.state_dict().items():  # back to the names the llava-hf shards use
        for new, old in (("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."),
                         ("model.vision_tower.", "vision_tower.vision_model."),
                         ("model.multi_modal_projector.", "multi_modal_projector.")):  # fmt: skip
            if k.startswith(new):
                k = old + k[len(new) :]
                break
        tensors[k] = v.to(torch.float16)
    _save_shards(folder, tensors)
    return folder


# --------------------------------------------------------------------------------------------
# Llama-3 Instruct
# --------------------------------------------------------------------------------------------

#: Offsets of the named special tokens after the regular vocabulary (128000 + offset in Llama 3).
LLAMA3_SPECIALS = {
    "<|begin_of_text|>": 0, "<|end_of_text|>": 1, "<|start_header_id|>": 6, "<|end_header_id|>": 7, "<|eot_id|>": 9,
}  # fmt: skip
#: Llama 3's pre-tokenisation pattern.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def _llama3_special_names() -> list[str]:
    names = [f"<|reserved_special_token_{i}|>" for i in range(256)]
    order: list[str] = []
    reserved = iter(names)
    by_offset = {v: k for k, v in LLAMA3_SPECIALS.items()}
    for off in range(256):
        order.append(by_offset.get(off) or next(reserved))
    return order


def build_llama3_instruct(folder: str | Path, seed: int = 0, eos_token: str = "<|eot_id|>") -> Path:
    """A tiny Llama-3-8B-Instruct layout (see the module docstring). ``eos_token`` is what
    ``tokenizer_config.json`` names (the first release said ``<|end_of_text|>``, later ``<|eot_id|>``)."""
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(_LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer)
    data = json.loads(tok.to_str())
    base = len(data["model"]["vocab"])
    specials = _llama3_special_names()
    data["added_tokens"] = [dict(_added(s), id=base + i) for i, s in enumerate(specials)]
    bot = "<|begin_of_text|>"
    data["post_processor"] = {
        "type": "Sequence",
        "processors": [
            {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
            {
                "type": "TemplateProcessing",
                "single": [
                    {"SpecialToken": {"id": bot, "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                ],
                "pair": [
                    {"SpecialToken": {"id": bot, "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}},
                    {"SpecialToken": {"id": bot, "type_id": 1}},
                    {"Sequence": {"id": "B", "type_id": 1}},
                ],  # fmt: skip
                "special_tokens": {bot: {"id": bot, "ids": [base], "tokens": [bot]}},
            },
        ],
    }
    data["model"]["ignore_merges"] = True
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    ids = {s: base + off for s, off in LLAMA3_SPECIALS.items()}
    _dump(folder / "tokenizer_config.json", {
        "added_tokens_decoder": {str(base + i): _added(s) for i, s in enumerate(specials)},
        "bos_token": bot, "chat_template": LLAMA3_CHAT_TEMPLATE, "clean_up_tokenization_spaces": True,
        "eos_token": eos_token, "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": 1000000000000000019884624838656, "tokenizer_class": "PreTrainedTokenizerFast",
    })  # fmt: skip
    _dump(folder / "special_tokens_map.json", {"bos_token": _added(bot, False) | {"normalized": False},
                                               "eos_token": _added(eos_token, False)})  # fmt: skip
    vocab_size = base + len(specials)
    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": ids[bot], "eos_token_id": ids["<|eot_id|>"], "hidden_act": "silu", "hidden_size": 32,
        "initializer_range": 0.2, "intermediate_size": 64, "max_position_embeddings": 8192, "model_type": "llama",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2, "pretraining_tp": 1,
        "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0, "tie_word_embeddings": False,
        "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0", "use_cache": True,
        "vocab_size": vocab_size,
    }  # fmt: skip
    _dump(folder / "config.json", config)
    _dump(folder / "generation_config.json", {
        "bos_token_id": ids[bot], "do_sample": True, "eos_token_id": [ids["<|end_of_text|>"], ids["<|eot_id|>"]],
        "max_length": 4096, "temperature": 0.6, "top_p": 0.9, "transformers_version": "4.40.0.dev0",
    })  # fmt: skip
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig.from_pretrained(folder)).eval()
    _save_shards(folder, {k: v.to(torch.bfloat16) for k, v in model.state_dict().items()})
    return folder


def llama3_ids(folder: str | Path) -> dict[str, int]:
    """The ids of the named Llama-3 special tokens in a folder built by :func:`build_llama3_instruct`."""
    tj = json.loads((Path(folder) / "tokenizer.json").read_text(encoding="utf-8"))
    return {t["content"]: t["id"] for t in tj["added_tokens"] if t["content"] in LLAMA3_SPECIALS}


__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "LLAMA3_CHAT_TEMPLATE",
    "LLAVA15_CHAT_TEMPLATE",
    "build_llama3_instruct",
    "build_llava15",
    "llama3_ids",
]
