"""Batch-size independence, prompt fitting and the composite for the ``diffusers`` inpainting backend (see
:mod:`dlcr.generation.inpainters.diffusers_backend`): fixed-size chunks (:func:`padded_chunks`), the
UNet wrapper that calls the UNet in them (:class:`_FixedBatchUNet`), the VAE called in them
(:func:`vae_call`), outfit prompts shortened part by part to fit a tokenizer (:func:`shorten_prompt`)
and a pipeline output pasted back into its source image (:func:`paste_back`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dlcr.generation.inpainting import InpaintItem, composite, resize_rgb
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

_PROMPT_PREFIX = "a person wearing "


def shorten_prompt(prompt: str, n_tokens: Callable[[str], int], limit: int) -> str | None:
    """``prompt`` cut to at most ``limit`` tokens part by part, or None when that is impossible.

    ``prompt`` is an outfit prompt (``"a person wearing <upper>, <lower>, <footwear>"``,
    :attr:`dlcr.types.Outfit.prompt`). Words are dropped from the part with the most tokens until
    the prompt fits: the word just before the part's last one (the garment) while the part has more
    than two words, so leading colour words go last, then the first word; every part keeps at least
    its garment noun. None when even one word per part does not fit. ``n_tokens`` counts a text's tokens with the special tokens.
    """
    body, prefix = (prompt[len(_PROMPT_PREFIX):], _PROMPT_PREFIX) if prompt.startswith(_PROMPT_PREFIX) else (prompt, "")
    parts = [p.split() for p in body.split(",") if p.strip()]

    def text() -> str:
        return prefix + ", ".join(" ".join(p) for p in parts)

    while n_tokens(text()) > limit:
        longer = [i for i, p in enumerate(parts) if len(p) > 1]
        if not longer:
            return None
        i = max(longer, key=lambda j: (n_tokens(" ".join(parts[j])), -j))
        del parts[i][-2 if len(parts[i]) > 2 else 0]
    return text()


def fit_to_tokenizers(prompt: str, tokenizers: list[Any], shortened_before: int) -> tuple[str, bool]:
    """``(prompt, too long)``: ``prompt`` shortened part by part (:func:`shorten_prompt`) when it has
    more tokens than one of ``tokenizers`` takes, with a warning that counts it (``shortened_before``:
    how many prompts were too long before this one)."""
    limit = min(int(t.model_max_length) for t in tokenizers)

    def n_tokens(text: str) -> int:
        return max(len(t(text, truncation=False)["input_ids"]) for t in tokenizers)

    n = n_tokens(prompt)
    if n <= limit:
        return prompt, False
    short = shorten_prompt(prompt, n_tokens, limit)
    count = shortened_before + 1
    if short is None:
        log.warning("prompt of %d tokens does not fit the tokenizer's %d even with one word per part; it is "
                    "cut at the limit (%d prompts too long so far): %r", n, limit, count, prompt)
        return prompt, True
    log.warning("prompt of %d tokens shortened to fit the tokenizer's %d (%d prompts shortened so far): %r -> %r",
                n, limit, count, prompt, short)
    return short, True


def padded_chunks(n: int, size: int) -> list[tuple[list[int], int]]:
    """``range(n)`` cut into chunks of exactly ``size`` indices, the last one padded by repeating its
    last index: ``[(indices, n_real), ...]``."""
    out = []
    for s in range(0, n, size):
        real = list(range(s, min(s + size, n)))
        out.append((real + [real[-1]] * (size - len(real)), len(real)))
    return out


class _FixedBatchUNet:
    """Replaces a UNet's ``forward``: calls of exactly ``size`` jobs whatever the pipeline's batch.

    The pipeline stacks the jobs of a batch, twice with classifier-free guidance
    (``[uncond_0..uncond_{B-1}, cond_0..cond_{B-1}]``). With ``jobs`` (= B) set, the jobs are sent
    through the original ``forward`` ``size`` at a time, in the same layout (``[uncond of the
    chunk, cond of the chunk]``); the last chunk is padded with copies of its last job and the
    padding's outputs are dropped. Forward hooks (discriminator guidance) still see the whole batch.
    """

    def __init__(self, unet: Any, size: int):
        self.forward = unet.forward
        self.size = int(size)
        self.jobs: int | None = None

    @staticmethod
    def _rows(x: Any, n: int, idx: Any) -> Any:
        import torch

        if torch.is_tensor(x) and x.ndim >= 1 and x.shape[0] == n:
            return x[idx]
        if isinstance(x, dict):
            return {k: _FixedBatchUNet._rows(v, n, idx) for k, v in x.items()}
        return x

    def __call__(self, sample: Any, *args: Any, **kwargs: Any) -> Any:
        import torch
        from diffusers.models.unets.unet_2d_condition import UNet2DConditionOutput

        n, jobs = int(sample.shape[0]), self.jobs
        if not jobs or n % jobs:  # not called by the engine (or an unknown layout): one plain call
            return self.forward(sample, *args, **kwargs)
        return_dict = kwargs.pop("return_dict", True)
        per = n // jobs  # rows per job: 2 with classifier-free guidance
        out = None
        for chunk, real in padded_chunks(jobs, self.size):
            ids = torch.tensor(chunk, device=sample.device)
            idx = (torch.arange(per, device=sample.device)[:, None] * jobs + ids[None, :]).reshape(-1)
            a = [self._rows(x, n, idx) for x in args]
            kw = {k: self._rows(v, n, idx) for k, v in kwargs.items()}
            res = self.forward(sample[idx], *a, return_dict=False, **kw)[0]
            if out is None:
                out = res.new_empty((n, *res.shape[1:]))
            res = res.reshape(per, self.size, *res.shape[1:])[:, :real]
            out.view(per, jobs, *res.shape[2:])[:, chunk[:real]] = res
        return UNet2DConditionOutput(sample=out) if return_dict else (out,)


def vae_call(vae: Any, fn: Callable[[Any], Any], x: Any, *, device: Any, micro_batch: int | None) -> Any:
    """``fn`` applied to ``x`` with the VAE's weights, in calls of exactly ``micro_batch`` rows (the last
    one padded, see :func:`padded_chunks`; ``None``: one call), in fp32 when the VAE's config asks for
    it (``force_upcast``: SDXL's VAE overflows in fp16)."""
    import torch

    upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
    dtype = torch.float32 if upcast else vae.dtype
    if upcast:
        vae.to(torch.float32)
    try:
        if not micro_batch:
            return fn(x.to(device=device, dtype=dtype))
        outs = [fn(x[chunk].to(device=device, dtype=dtype))[:real]
                for chunk, real in padded_chunks(int(x.shape[0]), micro_batch)]
        return torch.cat(outs)
    finally:
        if upcast:
            vae.to(torch.float16)


def paste_back(item: InpaintItem, generated: Any) -> np.ndarray:
    """A pipeline output (RGB floats in [0, 1] at the working size) as uint8, resized to the source
    image's size and composited into it, so pixels outside the mask are the source's."""
    gen = np.clip(np.rint(np.asarray(generated, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    H, W = item.image.shape[:2]
    return composite(item.image, resize_rgb(gen, H, W), item.mask)
