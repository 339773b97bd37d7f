"""transformers backends: a VLM captioner and an LLM summariser (the paper's two models).

``HFCaptioner`` loads any image-text-to-text checkpoint (``AutoProcessor`` +
``AutoModelForImageTextToText``; LLaVA-1.5 / LLaVA-NeXT and most chat VLMs), builds one chat turn
holding the image and the question, and generates greedily by default. Batches are left-padded so
that every prompt ends where generation starts; only the new tokens are decoded.

Whole person: an image processor that resizes the short side and centre-crops (LLaVA-1.5's
``CLIPImageProcessor``) would show the model only the middle of a tall person crop (a 128×64 crop
loses its head and shoes). LLaVA-1.5 itself pads every image to a square filled with the
processor's mean colour, centred, before the processor runs; :func:`crop_padding` reads from the
image processor's settings whether (and to which shape) it must pad so that the crop keeps the
whole image, and :class:`HFCaptioner` does so (``pad_images=True``, the default). Processors that
resize without cropping, pad to a square themselves (``LlavaImageProcessor(do_pad=True)``) or tile
the image (LLaVA-NeXT's ``image_grid_pinpoints``) are left alone.

``HFSummarizer`` loads a causal LM (``AutoTokenizer`` + ``AutoModelForCausalLM``, optionally from a
GGUF file), asks it the paper's prompt for *each* caption (wrapped in the tokenizer's chat template
when it has one), splits every answer into upper / lower / footwear phrases by garment keywords and
votes per part over the images of a clothes id (:func:`dlcr.generation.outfit_text.outfit_from_texts`).
Tokenizers without a pad token (Llama 3) pad with their end-of-sequence token; generation stops at
every end-of-sequence id of the model's generation config (Llama 3 lists two) and at the
tokenizer's own. Captions and answers are cleaned (:func:`~dlcr.generation.outfit_text.clean_generated_text`:
control characters, U+FFFD, runs of whitespace) before they are stored or parsed.

Remote code is never trusted unless asked for; weights load through safetensors when available.
The image padding is :mod:`dlcr.generation.describers.hf_images` (its names are importable from here).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlcr.distributed.env import resolve_device
from dlcr.errors import CheckpointError, ConfigError, InputError, first_line
from dlcr.generation import outfit_text
from dlcr.generation.describers.hf_images import crop_padding, mean_colour, pad_for_crop
from dlcr.io.images import check_images
from dlcr.io.paths import local_model_missing
from dlcr.types import Outfit
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import batched
from dlcr.utils.seeding import seeded_torch
from dlcr.utils.torch_device import resolve_dtype

log = get_logger(__name__)


def _load_failed(what: str, model: Any, e: BaseException) -> CheckpointError:
    msg = first_line(e)
    return CheckpointError(f"cannot load {what} {str(model)!r}: {msg[:300]}")


def _prepare_tokenizer(tok: Any) -> None:
    """Left padding (prompts end where generation starts) and a pad token."""
    tok.padding_side = "left"
    if tok.pad_token_id is None:
        if tok.eos_token is None:
            raise CheckpointError("the tokenizer has neither a pad nor an end-of-sequence token")
        tok.pad_token = tok.eos_token


def _eos_ids(net: Any, tok: Any) -> list[int] | None:
    """Every id generation should stop at: the generation config's end-of-sequence id(s) (Llama 3
    lists ``<|end_of_text|>`` and ``<|eot_id|>``) plus the tokenizer's own end-of-sequence token,
    which an early checkpoint's generation config may lack. None when neither names one."""
    ids: list[int] = []
    cfg = getattr(net, "generation_config", None)
    for source in (getattr(cfg, "eos_token_id", None), getattr(tok, "eos_token_id", None)):
        for i in source if isinstance(source, (list, tuple)) else [source]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids or None


def _generate_kwargs(
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    top_p: float | None,
    pad_token_id: int | None,
    eos_token_id: list[int] | None = None,
) -> dict[str, Any]:
    # max_length=None: a checkpoint's generation_config.max_length (Llama-3: 4096) would otherwise
    # compete with max_new_tokens (transformers warns on every call; max_new_tokens wins either way)
    kw: dict[str, Any] = {"max_new_tokens": int(max_new_tokens), "max_length": None, "do_sample": bool(do_sample)}
    if eos_token_id:
        kw["eos_token_id"] = list(eos_token_id)
    if do_sample:
        kw["temperature"] = float(temperature)
        if top_p is not None:
            kw["top_p"] = float(top_p)
    else:  # greedy: neutralise sampling settings a checkpoint's generation_config may carry
        kw.update(temperature=None, top_p=None, top_k=None)
    if pad_token_id is not None:
        kw["pad_token_id"] = int(pad_token_id)
    return kw


def _check_generation(max_new_tokens: int, batch_size: int, temperature: float) -> None:
    if max_new_tokens < 1:
        raise ConfigError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
    if temperature <= 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")


class HFCaptioner:
    """Captions from a transformers image-text-to-text model (e.g. ``llava-hf/llava-1.5-7b-hf``).

    ``pad_images`` (default True): when the image processor would crop (see :func:`crop_padding`),
    centre every image on a canvas of the processor's mean colour first, as LLaVA-1.5 does, so that
    the model sees the whole person; False hands images to the processor unchanged. Captions are
    cleaned with :func:`~dlcr.generation.outfit_text.clean_generated_text`.
    """

    name = "hf"
    #: 2: images padded before a cropping processor, captions cleaned, stops at every eos id
    output_version = 2

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        prompt: str = outfit_text.DEFAULT_CAPTION_PROMPT,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_p: float | None = None,
        seed: int = 0,
        batch_size: int = 8,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        revision: str | None = None,
        pad_images: bool = True,
    ):
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        _check_generation(max_new_tokens, batch_size, temperature)
        if local_model_missing(str(model)):
            raise CheckpointError(f"captioner model folder not found: {model}")
        self.prompt = str(prompt)
        self.max_new_tokens, self.do_sample = int(max_new_tokens), bool(do_sample)
        self.temperature, self.top_p, self.seed = float(temperature), top_p, int(seed)
        self.batch_size = int(batch_size)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        kw = {
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
            "revision": revision,
        }
        try:
            self.processor = AutoProcessor.from_pretrained(str(model), **kw)
        except Exception as e:
            raise _load_failed("the processor of", model, e) from None
        tok = getattr(self.processor, "tokenizer", None)
        if tok is None:
            raise CheckpointError(
                f"{str(model)!r} has no tokenizer in its processor; is it a vision-language model?"
            )
        _prepare_tokenizer(tok)
        self.tokenizer = tok
        try:
            net = AutoModelForImageTextToText.from_pretrained(str(model), dtype=self.dtype, **kw)
        except Exception as e:
            raise _load_failed("the image-text-to-text model", model, e) from None
        self.net = net.to(self.device).eval()
        self.model = str(model)
        self.pad_images = bool(pad_images)
        image_processor = getattr(self.processor, "image_processor", None)
        #: how images are padded before the processor (None: they are not)
        self.padding = crop_padding(image_processor) if self.pad_images else None
        self.pad_colour = mean_colour(image_processor)
        self.eos_token_id = _eos_ids(self.net, tok)
        self._text = self._prompt_text()
        self._torch = torch

    def _prompt_text(self) -> str:
        conversation = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": self.prompt}]}
        ]
        if getattr(self.processor, "chat_template", None):
            return self.processor.apply_chat_template(
                conversation, add_generation_prompt=True, tokenize=False
            )
        image_token = getattr(self.processor, "image_token", "<image>")
        log.warning("%s has no chat template; using a plain LLaVA-1.5 style prompt", self.model)
        return f"USER: {image_token}\n{self.prompt} ASSISTANT:"

    def generate(self, images: Sequence[np.ndarray]) -> list[str]:
        """The model's answer to the prompt for each image, in batches of ``batch_size``."""
        from PIL import Image

        torch = self._torch
        out: list[str] = []
        for chunk in batched(check_images(images), self.batch_size):
            if self.padding is not None:
                chunk = [pad_for_crop(a, self.padding, self.pad_colour) for a in chunk]
            pil = [Image.fromarray(a) for a in chunk]
            inputs = self.processor(
                images=pil, text=[self._text] * len(pil), return_tensors="pt", padding=True
            )
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
                inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
            kw = _generate_kwargs(
                self.max_new_tokens,
                self.do_sample,
                self.temperature,
                self.top_p,
                self.tokenizer.pad_token_id,
                self.eos_token_id,
            )
            # sampling draws from torch's global generators (generate takes none): seeded per batch
            # for this call only, the caller's random state is left as it was
            seeded = seeded_torch(self.seed + len(out), self.device) if self.do_sample else contextlib.nullcontext()
            with seeded, torch.inference_mode():
                ids = self.net.generate(**inputs, **kw)
            new = ids[:, inputs["input_ids"].shape[1] :]
            out += [
                outfit_text.clean_generated_text(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)
            ]
        return out

    def __call__(self, images: list[np.ndarray], labels: list[np.ndarray | None] | None = None) -> list[str]:
        if labels is not None and len(labels) != len(images):
            raise InputError(f"{len(images)} images but {len(labels)} label maps")
        return self.generate(images)  # the VLM looks at the whole image; label maps are not used


class HFSummarizer:
    """Outfits from a transformers causal LM run on every caption, then a per-part vote.

    Answers are cleaned with :func:`~dlcr.generation.outfit_text.clean_generated_text` before they are
    split into parts; generation is greedy whatever the checkpoint's generation config says.
    """

    name = "hf"
    #: 2: answers cleaned before they are parsed, stops at every eos id
    output_version = 2

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        prompt: str = outfit_text.DEFAULT_SUMMARY_PROMPT,
        max_new_tokens: int = 64,
        batch_size: int = 16,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        trust_remote_code: bool = False,
        gguf_file: str | None = None,
        revision: str | None = None,
    ):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        _check_generation(max_new_tokens, batch_size, 1.0)
        if local_model_missing(str(model)):
            raise CheckpointError(f"summarizer model folder not found: {model}")
        self.prompt = str(prompt)
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self.device = resolve_device(device)
        # GGUF weights are dequantised to float32 by transformers
        self.dtype = resolve_dtype("float32" if gguf_file and dtype is None else dtype, self.device)
        kw: dict[str, Any] = {
            "local_files_only": local_files_only,
            "trust_remote_code": trust_remote_code,
            "revision": revision,
        }
        if gguf_file:
            kw["gguf_file"] = str(gguf_file)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(model), **kw)
        except Exception as e:
            raise _load_failed("the tokenizer of", model, e) from None
        _prepare_tokenizer(self.tokenizer)
        try:
            net = AutoModelForCausalLM.from_pretrained(str(model), dtype=self.dtype, **kw)
        except Exception as e:
            raise _load_failed("the causal language model", model, e) from None
        self.net = net.to(self.device).eval()
        self.model = str(model) + (f"#{gguf_file}" if gguf_file else "")
        self.chat = bool(getattr(self.tokenizer, "chat_template", None))
        self.eos_token_id = _eos_ids(self.net, self.tokenizer)
        self._torch = torch

    def prompt_text(self, caption: str) -> str:
        """The text the LM sees for one caption (chat-templated when the tokenizer has a template)."""
        request = self.prompt + " ".join(str(caption).split())
        if self.chat:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": request}], add_generation_prompt=True, tokenize=False
            )
        return request + "\n"

    def answer(self, captions: Sequence[str]) -> list[str]:
        """The LM's answer for every caption (greedy), in batches of ``batch_size``.

        Captions repeat a lot (one outfit seen in many images gets the same description), so each
        distinct prompt is run once and its answer shared.
        """
        torch = self._torch
        prompts = [self.prompt_text(c) for c in captions]
        answers: dict[str, str] = {}
        for chunk in batched(list(dict.fromkeys(prompts)), self.batch_size):
            # a chat template already holds the special tokens the model expects
            enc = self.tokenizer(
                list(chunk), return_tensors="pt", padding=True, add_special_tokens=not self.chat
            )
            enc = {k: v.to(self.device) for k, v in enc.items()}
            kw = _generate_kwargs(
                self.max_new_tokens, False, 1.0, None, self.tokenizer.pad_token_id, self.eos_token_id
            )
            with torch.inference_mode():
                ids = self.net.generate(**enc, **kw)
            new = ids[:, enc["input_ids"].shape[1] :]
            decoded = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            answers.update(zip(chunk, (outfit_text.clean_generated_text(t) for t in decoded), strict=True))
        return [answers[p] for p in prompts]

    def summarize_many(self, items: Sequence[tuple[str, Sequence[str]]]) -> list[Outfit]:
        """Outfits of several clothes ids; the LM calls are batched across ids."""
        flat = [c for _, caps in items for c in caps]
        answers = iter(self.answer(flat))
        return [outfit_text.outfit_from_texts(key, [next(answers) for _ in caps]) for key, caps in items]

    def __call__(self, clothes_key: str, captions: list[str]) -> Outfit:
        return self.summarize_many([(clothes_key, captions)])[0]


__all__ = ["HFCaptioner", "HFSummarizer", "crop_padding", "mean_colour", "pad_for_crop", "resolve_dtype"]
