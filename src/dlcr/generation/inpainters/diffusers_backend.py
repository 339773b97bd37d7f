"""``diffusers`` / ``tiny``: Stable-Diffusion inpainting through diffusers.

Any SD-1.5 / SD-2 / SDXL inpainting checkpoint in the diffusers layout (a hub id or a local folder)
is loaded through ``AutoPipelineForInpainting``, diffusers' own choice of pipeline from the class
its ``model_index.json`` names (fp16 on CUDA, fp32 on CPU, no safety checker, no remote code).
Attention uses PyTorch's scaled-dot-product attention, the default processor of diffusers on torch 2.

Per batch: jobs are grouped by kind (training variants use ``steps`` at ``height x width``, query
variants ``query_steps`` at ``query_scale`` of that size, as in the paper: 10 steps, half
resolution), each image/mask is resized to the working size, every job gets its own
``torch.Generator`` seeded by the job seed (CPU generators, so the noise is the same on every
device), and the prompt embeddings of each distinct outfit prompt (with SDXL also the pooled ones)
are encoded once and cached for the life of the inpainter. The UNet and the VAE run in calls of a
fixed number of jobs, so a job's output does not depend on its batch (see :class:`DiffusersInpainter`). The output is
resized back to the source size and composited so that pixels outside the mask are bit-identical to
the source.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlcr.distributed.env import resolve_device
from dlcr.errors import CheckpointError, ConfigError, did_you_mean, first_line
from dlcr.generation.inpainting import InpaintItem, composite, pipeline_image, pipeline_mask, resize_rgb
from dlcr.io.paths import local_model_missing
from dlcr.utils.logging import get_logger
from dlcr.utils.torch_device import resolve_dtype

log = get_logger(__name__)

# name -> diffusers scheduler class name; each is created with .from_config(pipe.scheduler.config)
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),
    "ddpm": ("DDPMScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),  # needs scipy
    "euler": ("EulerDiscreteScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "dpm++": ("DPMSolverMultistepScheduler", {}),
    "dpm++_karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++_sde": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++"}),
    "dpm_single": ("DPMSolverSinglestepScheduler", {}),
    "kdpm2": ("KDPM2DiscreteScheduler", {}),
    "deis": ("DEISMultistepScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
}
SCHEDULER_ALIASES = {"dpmpp": "dpm++", "dpm": "dpm++", "euler_ancestral": "euler_a", "k_lms": "lms"}


def scheduler_key(name: str) -> str:
    """The ``SCHEDULERS`` key of ``name`` (aliases accepted); an unknown name is a one-line error."""
    key = SCHEDULER_ALIASES.get(name.lower(), name.lower())
    if key not in SCHEDULERS:
        hint = did_you_mean(key, [*SCHEDULERS, *SCHEDULER_ALIASES])
        raise ConfigError(f"unknown scheduler {name!r}{hint}; known: {', '.join(sorted(SCHEDULERS))}")
    return key


def make_scheduler(name: str, config: Any) -> Any:
    """Create scheduler ``name`` (see ``SCHEDULERS``) from another scheduler's config."""
    import diffusers

    cls_name, extra = SCHEDULERS[scheduler_key(name)]
    return getattr(diffusers, cls_name).from_config(config, **extra)


def _dtype_kwarg() -> str:
    """``dtype`` on diffusers versions that renamed ``torch_dtype`` (which then warns), else the old name."""
    from diffusers.pipelines import pipeline_utils

    return "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"


#: ``model_index.json`` classes this backend loads (through ``AutoPipelineForInpainting``, which maps
#: a text-to-image or image-to-image checkpoint to the inpainting pipeline of its family), by family.
LOADABLE_PIPELINES: dict[str, str] = {
    "StableDiffusionInpaintPipeline": "sd",
    "StableDiffusionPipeline": "sd",
    "StableDiffusionImg2ImgPipeline": "sd",
    "StableDiffusionXLInpaintPipeline": "sdxl",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
}
#: The pipeline class each family must load as.
FAMILY_PIPELINE = {"sd": "StableDiffusionInpaintPipeline", "sdxl": "StableDiffusionXLInpaintPipeline"}

_PROMPT_PREFIX = "a person wearing "


def _quiet_loading() -> None:
    """With DLCR_NO_PROGRESS=1, no 'Loading pipeline components' / 'Loading weights' bars either."""
    from dlcr.utils.progress import progress_enabled

    if not progress_enabled():
        import diffusers.utils.logging
        import transformers.utils.logging

        diffusers.utils.logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()


def _positive_int(name: str, value: Any) -> int:
    value = int(value)
    if value <= 0:
        raise ConfigError(f"{name} must be a positive integer, got {value}")
    return value


def _check_multiple(name: str, value: int, factor: int, model: str) -> int:
    if value % factor:
        raise ConfigError(f"{name} must be a positive multiple of {factor} (the VAE of {model} downsamples by "
                          f"{factor}), got {value}")
    return value


def read_model_index(model: str, local_files_only: bool) -> dict[str, Any]:
    """The ``model_index.json`` of a diffusers pipeline folder or hub id (a one-line error if none)."""
    from diffusers import AutoPipelineForInpainting

    try:
        index = AutoPipelineForInpainting.load_config(model, local_files_only=local_files_only)
    except (OSError, ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"cannot load diffusers inpainting model {model!r}: {first_line(e)}") from None
    return dict(index)


def pipeline_family(index: dict[str, Any], model: str) -> str:
    """``"sd"`` (SD-1.x / 2.x) or ``"sdxl"``, from ``model_index.json``'s ``_class_name``."""
    name = index.get("_class_name")
    if not isinstance(name, str):  # ["file.py", "Class"]: a custom pipeline, i.e. remote code
        raise CheckpointError(f"model {model!r} names a custom pipeline ({name!r}); dlcr never runs a "
                              "checkpoint's own code")
    family = LOADABLE_PIPELINES.get(name)
    if family is None:
        raise CheckpointError(f"model {model!r} is a {name}; the diffusers backend inpaints with Stable Diffusion "
                              f"1.x/2.x and SDXL checkpoints ({', '.join(sorted(LOADABLE_PIPELINES))})")
    return family


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


#: ``torch.compile`` modes accepted by ``generate.compile`` (``true``: the default mode).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def check_accel(accel: dict[str, Any]) -> dict[str, Any]:
    """The speed-up options of :class:`DiffusersInpainter` with their defaults; unknown keys and
    values are a :class:`ConfigError`."""
    known = {"channels_last": False, "compile": False, "compile_backend": "inductor"}
    unknown = sorted(set(accel) - set(known))
    if unknown:
        raise ConfigError(f"unknown diffusers inpainter option(s): {', '.join(unknown)} "
                          f"(speed-ups: {', '.join(sorted(known))})")
    out = {**known, **accel}
    out["channels_last"] = bool(out["channels_last"])
    comp = out["compile"]
    if isinstance(comp, str):
        if comp.lower() in ("false", "no", "off", ""):
            comp = False
        elif comp.lower() in ("true", "yes", "on"):
            comp = True
        elif comp not in COMPILE_MODES:
            raise ConfigError(f"generate.compile must be true, false or one of {', '.join(COMPILE_MODES)}, "
                              f"got {comp!r}")
    elif not isinstance(comp, bool):
        raise ConfigError(f"generate.compile must be true, false or a torch.compile mode, got {comp!r}")
    out["compile"] = comp
    out["compile_backend"] = str(out["compile_backend"])
    return out


def use_sdpa(unet: Any) -> str:
    """Make every attention layer of ``unet`` use PyTorch's scaled-dot-product attention (diffusers'
    ``AttnProcessor2_0``, its default on torch 2, set here explicitly in case a checkpoint or an
    earlier call changed it); layers with another processor class of their own (IP-adapter, custom
    code) are left alone. Returns the processor name in use."""
    try:
        from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
    except ImportError:  # pragma: no cover - very old diffusers
        return "unknown"
    procs = getattr(unet, "attn_processors", None)
    if not procs:
        return "none"
    plain = all(type(p) in (AttnProcessor, AttnProcessor2_0) for p in procs.values())
    if plain and any(type(p) is AttnProcessor for p in procs.values()):
        unet.set_attn_processor(AttnProcessor2_0())
    names = sorted({type(p).__name__ for p in unet.attn_processors.values()})
    return ",".join(names)


class DiffusersInpainter:
    """Inpaint clothes with a diffusers Stable-Diffusion (1.x, 2.x or XL) inpainting pipeline.

    The folder or hub id is loaded through diffusers' own pipeline selection
    (``AutoPipelineForInpainting``, from the class ``model_index.json`` names), so an SD-1.5/2
    inpainting checkpoint loads as ``StableDiffusionInpaintPipeline`` and an SDXL one (two text
    encoders) as ``StableDiffusionXLInpaintPipeline``; a text-to-image checkpoint of either family
    loads as its inpainting pipeline with a 4-channel UNet, where diffusers blends latents inside the
    mask (a warning says so). Anything else, and custom pipeline code, is refused with one line. Any
    failure of the model inside the pipeline (a shape mismatch, a wrong call) is a
    :class:`~dlcr.errors.CheckpointError` naming the model and the first line of the cause.

    Batch invariance: a job's output does not depend on the batch it is in (with
    ``batch_invariant``, the default). Batched float kernels do not compute a row the same way at
    every batch size: on the CPU the matrix products behind a linear layer or a 1x1 convolution
    (first seen in a UNet's ``conv_shortcut``) block their work by the total number of rows, so the
    same job rounds differently in a batch of 8 than in a batch of 3 (about 1e-6 in the UNet
    output; ±1 grey level in 8 of 32 images of ``benchmarks/bench_inpaint.py``). For a fixed shape
    they do compute every row the same way, whatever its position and its neighbours (blocking and
    thread split depend on the shape only). So the engine keeps batching what is per job anyway
    (prompt encoding once per outfit, preprocessing, the scheduler, the pipeline's per-step work)
    and runs the UNet and the VAE in calls of exactly ``micro_batch`` jobs (the last one padded
    with copies of its last job, whose outputs are dropped), so every call has the same shape
    whatever ``max_batch`` or the batch the runner hands in; the noise comes from each job's own
    generator. Outputs are then bit-identical across batch sizes on a given machine, thread count
    and library versions (tested). ``micro_batch=1`` (one job per call) does not even rely on the
    row independence at a fixed shape. ``batch_invariant=False`` sends each batch through the UNet
    and the VAE in one call (fastest; outputs then differ by float rounding between batch sizes,
    ±2 grey levels in the tests). With discriminator guidance the discriminator's gradient is taken
    over the whole batch, so guided outputs may also differ by rounding.

    Args:
        model: hub id or local folder of a diffusers SD / SDXL inpainting checkpoint.
        scheduler: a name from ``SCHEDULERS`` (``ddim``, ``pndm``, ``euler``, ``euler_a``,
            ``dpm++``, ``unipc``, ``lms``...), or ``None`` to keep the checkpoint's own.
        steps / guidance_scale / negative_prompt / height / width: generation settings of
            training variants (the paper: 50 DDIM steps at 768x256, H x W). Height and width must
            be multiples of the VAE's downsampling factor (8 for every SD checkpoint), read from its
            config.
        query_steps / query_scale: settings of query (refinement) variants: 10 steps at half size.
        max_batch: largest number of images per pipeline call (``None``: the whole batch).
        device / dtype: default CUDA (the local rank's GPU) + fp16 when available, else CPU + fp32.
            A VAE whose config sets ``force_upcast`` (SDXL's) encodes and decodes in fp32.
        local_files_only: never contact the hub (always true for a local folder).
        discriminator / guidance_weight / guidance_min_t: optional discriminator guidance
            (``dlcr.generation.guidance``): a checkpoint from ``dlcr generate guidance-train``
            corrects the noise prediction with weight ``w`` at timesteps ``t > guidance_min_t``.
            Off (and nothing loaded) unless ``discriminator`` is given.
        batch_invariant / micro_batch: UNet and VAE calls of exactly ``micro_batch`` jobs, see
            above.
        **accel: speed-ups that keep the model's maths (``generate.channels_last`` /
            ``generate.compile``; none by default, and only recorded in the generation signature
            when given, because they may change float rounding): ``channels_last=True`` puts the
            UNet (and the VAE) in ``torch.channels_last`` memory format; ``compile=True`` or a
            ``torch.compile`` mode (``"max-autotune"``...) compiles the UNet's forward with static
            shapes (with ``batch_invariant`` every UNet call has ``micro_batch`` jobs, at the
            training and the query size: two graphs); ``compile_backend`` picks the
            ``torch.compile`` backend (default ``inductor``; ``eager`` checks the wiring without
            code generation). Attention runs through PyTorch's scaled-dot-product attention
            (diffusers' ``AttnProcessor2_0``), which is checked at load.

    Prompts longer than the tokenizer's context (77 tokens for CLIP) are shortened part by part
    (:func:`shorten_prompt`: every garment is kept) instead of being cut at the limit; each one is
    logged once, with a running count (``prompts_shortened``).
    """

    name = "diffusers"
    #: 2: SDXL support, fixed-size UNet/VAE calls (batch invariance), prompts shortened part by part.
    output_version = 2

    def __init__(
        self,
        model: str | os.PathLike,
        *,
        scheduler: str | None = "ddim",
        steps: int = 50,
        guidance_scale: float = 7.5,
        negative_prompt: str = "",
        height: int = 768,
        width: int = 256,
        query_steps: int = 10,
        query_scale: float = 0.5,
        strength: float = 1.0,
        max_batch: int | None = None,
        device: str | None = None,
        dtype: str | None = None,
        local_files_only: bool = False,
        discriminator: str | os.PathLike | None = None,
        guidance_weight: float = 1.0,
        guidance_min_t: int = 200,
        batch_invariant: bool = True,
        micro_batch: int = 4,
        **accel: Any,
    ):
        import torch
        from diffusers import AutoPipelineForInpainting

        self.accel = check_accel(accel)

        self.model = str(model)
        self.steps = int(steps)
        self.query_steps = int(query_steps)
        if self.steps < 1 or self.query_steps < 1:
            raise ConfigError(f"steps must be >= 1, got steps={steps}, query_steps={query_steps}")
        self.guidance_scale = float(guidance_scale)
        self.negative_prompt = negative_prompt or ""
        self.height = _positive_int("height", height)
        self.width = _positive_int("width", width)
        self.query_scale = float(query_scale)
        self.strength = float(strength)
        if not 0.0 < self.strength <= 1.0:
            raise ConfigError(f"strength must be in (0, 1], got {strength}")
        self.max_batch = int(max_batch) if max_batch else None
        self.batch_invariant = bool(batch_invariant)
        self.micro_batch = int(micro_batch)
        if self.micro_batch < 1:
            raise ConfigError(f"micro_batch must be >= 1, got {micro_batch}")
        self.device = torch.device(resolve_device(device))
        self.dtype = resolve_dtype(dtype, str(self.device))
        is_local = Path(self.model).is_dir()
        if local_model_missing(self.model):
            raise CheckpointError(f"inpainting model folder not found: {self.model}")
        local_only = bool(local_files_only or is_local)
        self.family = pipeline_family(read_model_index(self.model, local_only), self.model)
        extra: dict[str, Any] = {}
        if self.family == "sd":
            extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
        _quiet_loading()
        try:
            pipe = AutoPipelineForInpainting.from_pretrained(
                self.model, **{_dtype_kwarg(): self.dtype}, **extra, local_files_only=local_only
            )
        except Exception as e:  # noqa: BLE001 -- any failure to load a user's model is one line
            raise CheckpointError(f"cannot load diffusers inpainting model {self.model!r}: "
                                  f"{type(e).__name__}: {first_line(e)}") from e
        if type(pipe).__name__ != FAMILY_PIPELINE[self.family]:
            raise CheckpointError(f"model {self.model!r} loaded as {type(pipe).__name__}, expected "
                                  f"{FAMILY_PIPELINE[self.family]}")
        if scheduler:
            pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        self.scheduler = type(pipe.scheduler).__name__
        in_ch = int(pipe.unet.config.in_channels)
        if in_ch not in (4, 9):
            raise CheckpointError(
                f"model {self.model!r}: UNet has {in_ch} input channels; an "
                "inpainting UNet has 9 (or 4 for the legacy blend mode)"
            )
        if in_ch == 4:
            log.warning(
                "model %s is not an inpainting checkpoint (4-channel UNet); diffusers "
                "falls back to blending latents inside the mask",
                self.model,
            )
        self._check_text_width(pipe)
        # the latent grid: the VAE downsamples by 2 per encoder block after the first (8 for SD)
        self.vae_scale = int(pipe.vae_scale_factor)
        f = self.vae_scale
        _check_multiple("height", self.height, f, self.model)
        _check_multiple("width", self.width, f, self.model)
        self.query_height = max(f, int(round(self.height * self.query_scale / f)) * f)
        self.query_width = max(f, int(round(self.width * self.query_scale / f)) * f)
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.attention = use_sdpa(pipe.unet)
        if self.accel["channels_last"]:
            pipe.unet.to(memory_format=torch.channels_last)
            pipe.vae.to(memory_format=torch.channels_last)
        if self.accel["compile"]:
            mode = None if self.accel["compile"] is True else str(self.accel["compile"])
            # the bound forward is compiled (the module stays a UNet2DConditionModel, its hooks and
            # config as they are); dynamic=False: DLCR's shapes are fixed, one graph per shape
            pipe.unet.forward = torch.compile(pipe.unet.forward, mode=mode, dynamic=False,
                                              backend=self.accel["compile_backend"])
        self._unet_split: _FixedBatchUNet | None = None
        if self.batch_invariant:
            self._unet_split = _FixedBatchUNet(pipe.unet, self.micro_batch)
            pipe.unet.forward = self._unet_split
        self._embeds: dict[str, dict[str, Any]] = {}
        self.encode_count = 0  # how many prompts were run through the text encoder(s)
        self.prompts_shortened = 0  # how many prompts were shortened to fit the tokenizer
        self.guidance: Any = None  # a DiscriminatorGuidance hook on pipe.unet, only when asked for
        if discriminator:  # None or "" (an unset config value): off
            from dlcr.generation.guidance import attach_guidance

            self.guidance = attach_guidance(pipe, discriminator, weight=guidance_weight,
                                            min_t=guidance_min_t, device=self.device)

    def _check_text_width(self, pipe: Any) -> None:
        """Refuse a UNet whose cross-attention width is not what its text encoder(s) produce."""
        widths = [int(te.config.hidden_size) for te in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
                  if te is not None]
        want = getattr(pipe.unet.config, "cross_attention_dim", None)
        if isinstance(want, int) and widths and sum(widths) != want:
            names = " + ".join(str(w) for w in widths)
            raise CheckpointError(f"model {self.model!r}: the UNet's cross_attention_dim is {want}, but its text "
                                  f"encoder{'s' if len(widths) > 1 else ''} give{'' if len(widths) > 1 else 's'} "
                                  f"{names}")

    # -- prompts -------------------------------------------------------------------------------
    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def _tokenizers(self) -> list[Any]:
        return [t for t in (self.pipe.tokenizer, getattr(self.pipe, "tokenizer_2", None)) if t is not None]

    def fit_prompt(self, prompt: str) -> str:
        """``prompt``, shortened part by part when it has more tokens than a tokenizer takes."""
        toks = self._tokenizers()
        limit = min(int(t.model_max_length) for t in toks)

        def n_tokens(text: str) -> int:
            return max(len(t(text, truncation=False)["input_ids"]) for t in toks)

        n = n_tokens(prompt)
        if n <= limit:
            return prompt
        short = shorten_prompt(prompt, n_tokens, limit)
        self.prompts_shortened += 1
        if short is None:
            log.warning("prompt of %d tokens does not fit the tokenizer's %d even with one word per part; it is "
                        "cut at the limit (%d prompts too long so far): %r", n, limit, self.prompts_shortened, prompt)
            return prompt
        log.warning("prompt of %d tokens shortened to fit the tokenizer's %d (%d prompts shortened so far): %r -> %r",
                    n, limit, self.prompts_shortened, prompt, short)
        return short

    def prompt_embeddings(self, prompt: str) -> dict[str, Any]:
        """The pipeline's prompt-embedding arguments for ``prompt`` (``prompt_embeds``,
        ``negative_prompt_embeds``, and for SDXL the pooled ones), encoded once and cached."""
        hit = self._embeds.get(prompt)
        if hit is None:
            import torch

            text = self.fit_prompt(prompt)
            with torch.inference_mode():
                out = self.pipe.encode_prompt(
                    prompt=text, device=self.device, num_images_per_prompt=1,
                    do_classifier_free_guidance=self.do_cfg, negative_prompt=self.negative_prompt or None,
                )
            keys = ["prompt_embeds", "negative_prompt_embeds"]
            if self.family == "sdxl":
                keys += ["pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
            hit = dict(zip(keys, out, strict=True))
            self._embeds[prompt] = hit
            self.encode_count += 1
        return hit

    def _embedding_kwargs(self, items: Sequence[InpaintItem]) -> dict[str, Any]:
        import torch

        embeds = [self.prompt_embeddings(it.job.prompt) for it in items]
        kw = {}
        for key in embeds[0]:
            if key.startswith("negative") and not self.do_cfg:
                continue
            kw[key] = torch.cat([e[key] for e in embeds])
        return kw

    # -- generation --------------------------------------------------------------------------
    def __call__(self, items: Sequence[InpaintItem]) -> list[np.ndarray]:
        out: list[np.ndarray | None] = [None] * len(items)
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            groups.setdefault("query" if it.job.kind == "query" else "train", []).append(i)
        for kind, idx in groups.items():
            step = self.max_batch or len(idx)
            for s in range(0, len(idx), step):
                chunk = idx[s : s + step]
                for i, img in zip(chunk, self._run([items[i] for i in chunk], kind), strict=True):
                    out[i] = img
        return [o for o in out if o is not None]

    def _run(self, items: Sequence[InpaintItem], kind: str) -> list[np.ndarray]:
        import torch

        if kind == "query":
            h, w, steps = self.query_height, self.query_width, self.query_steps
        else:
            h, w, steps = self.height, self.width, self.steps
        images = [pipeline_image(it.image, h, w) for it in items]
        masks = [pipeline_mask(it.mask, h, w) for it in items]
        generators = [torch.Generator(device="cpu").manual_seed(int(it.job.seed)) for it in items]
        embeds = self._embedding_kwargs(items)
        if self._unet_split is not None:
            self._unet_split.jobs = len(items)
        try:
            with torch.inference_mode():
                masked_latents = self._masked_image_latents(images, masks, h, w)
                latents = self.pipe(
                    **embeds,
                    masked_image_latents=masked_latents,
                    image=images,
                    mask_image=masks,
                    height=h,
                    width=w,
                    strength=self.strength,
                    num_inference_steps=steps,
                    guidance_scale=self.guidance_scale,
                    generator=generators,
                    output_type="latent",
                ).images
                result = self._decode(latents)
        except torch.OutOfMemoryError:
            raise
        except (RuntimeError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise CheckpointError(f"inpainting model {self.model!r} failed: {type(e).__name__}: "
                                  f"{first_line(e)}") from e
        finally:
            if self._unet_split is not None:
                self._unet_split.jobs = None
        return [paste_back(it, g) for it, g in zip(items, result, strict=True)]

    def _vae_call(self, fn: Callable[[Any], Any], x: Any) -> Any:
        """``fn`` applied to ``x`` chunk by chunk with the VAE's weights, in fp32 when the VAE's config
        asks for it (``force_upcast``: SDXL's VAE overflows in fp16)."""
        import torch

        vae = self.pipe.vae
        upcast = vae.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False))
        dtype = torch.float32 if upcast else vae.dtype
        if upcast:
            vae.to(torch.float32)
        try:
            if not self.batch_invariant:
                return fn(x.to(device=self.device, dtype=dtype))
            outs = [fn(x[chunk].to(device=self.device, dtype=dtype))[:real]
                    for chunk, real in padded_chunks(int(x.shape[0]), self.micro_batch)]
            return torch.cat(outs)
        finally:
            if upcast:
                vae.to(torch.float16)

    def _masked_image_latents(self, images: list[Image.Image], masks: list[Image.Image], h: int, w: int) -> Any:
        """VAE latents of the masked source images (VAE calls of ``micro_batch`` images, or one).

        The stock pipeline encodes them one image at a time when it is given one generator per job,
        drawing a sample of the latent distribution. We take its mean instead: no random draw, so
        the jobs' generators feed only the initial noise. Only for 9-channel inpainting UNets (the
        legacy 4-channel mode does not use these latents).
        """
        if int(self.pipe.unet.config.in_channels) != 9:
            return None
        pipe = self.pipe
        init = pipe.image_processor.preprocess(images, height=h, width=w).float()
        cond = pipe.mask_processor.preprocess(masks, height=h, width=w)
        masked = init * (cond < 0.5)
        latents = self._vae_call(lambda x: pipe.vae.encode(x).latent_dist.mode(), masked)
        return (latents * pipe.vae.config.scaling_factor).to(self.dtype)

    def _decode(self, latents: Any) -> np.ndarray:
        """Pipeline latents -> RGB floats in [0, 1], (N, H, W, 3), as the pipeline's own decode does."""
        import torch

        cfg = self.pipe.vae.config
        mean, std = getattr(cfg, "latents_mean", None), getattr(cfg, "latents_std", None)
        if mean is not None and std is not None:  # the SDXL pipeline's denormalisation, when configured
            m = torch.tensor(mean).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            s = torch.tensor(std).view(1, -1, 1, 1).to(latents.device, latents.dtype)
            latents = latents * s / cfg.scaling_factor + m
        else:
            latents = latents / cfg.scaling_factor
        image = self._vae_call(lambda z: self.pipe.vae.decode(z, return_dict=False)[0], latents)
        return (image / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).float().cpu().numpy()


def paste_back(item: InpaintItem, generated: Any) -> np.ndarray:
    """A pipeline output (RGB floats in [0, 1] at the working size) as uint8, resized to the source
    image's size and composited into it, so pixels outside the mask are the source's."""
    gen = np.clip(np.rint(np.asarray(generated, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    H, W = item.image.shape[:2]
    return composite(item.image, resize_rgb(gen, H, W), item.mask)


def make_tiny_inpainter(
    cache_dir: str | os.PathLike | None = None,
    *,
    steps: int = 2,
    height: int = 64,
    width: int = 32,
    query_steps: int = 2,
    **kwargs: Any,
) -> DiffusersInpainter:
    """The ``diffusers`` backend on the tiny offline pipeline (built into ``cache_dir`` on first use)."""
    from dlcr.generation.tiny_models.diffusion import tiny_pipeline_path

    path = tiny_pipeline_path(cache_dir)
    inp = DiffusersInpainter(path, steps=steps, height=height, width=width, query_steps=query_steps, **kwargs)
    inp.name = "tiny"
    return inp
