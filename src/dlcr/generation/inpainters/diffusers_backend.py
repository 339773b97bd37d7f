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
from typing import Any

import numpy as np
from PIL import Image

from dlcr.distributed.env import resolve_device
from dlcr.errors import CheckpointError, ConfigError, first_line
from dlcr.generation.inpainters.diffusers_batching import (
    _FixedBatchUNet,
    fit_to_tokenizers,
    padded_chunks,
    paste_back,
    shorten_prompt,
    vae_call,
)
from dlcr.generation.inpainters.diffusers_setup import (
    COMPILE_MODES,
    FAMILY_PIPELINE,
    LOADABLE_PIPELINES,
    SCHEDULER_ALIASES,
    SCHEDULERS,
    _check_multiple,
    _positive_int,
    accelerate,
    check_accel,
    check_unet,
    load_inpaint_pipeline,
    make_scheduler,
    pipeline_family,
    read_model_index,
    scheduler_key,
    use_sdpa,
)
from dlcr.generation.inpainting import InpaintItem, pipeline_image, pipeline_mask
from dlcr.utils.torch_device import resolve_dtype


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
        import diffusers  # noqa: F401 -- without diffusers, that is the first error
        import torch

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
        self.family, pipe = load_inpaint_pipeline(self.model, self.dtype, local_files_only)
        if scheduler:
            pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
        self.scheduler = type(pipe.scheduler).__name__
        check_unet(pipe, self.model)
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
        accelerate(pipe, self.accel)
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

    # -- prompts -------------------------------------------------------------------------------
    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def _tokenizers(self) -> list[Any]:
        return [t for t in (self.pipe.tokenizer, getattr(self.pipe, "tokenizer_2", None)) if t is not None]

    def fit_prompt(self, prompt: str) -> str:
        """``prompt``, shortened part by part when it has more tokens than a tokenizer takes."""
        text, too_long = fit_to_tokenizers(prompt, self._tokenizers(), self.prompts_shortened)
        self.prompts_shortened += int(too_long)
        return text

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
        """``fn`` applied to ``x`` chunk by chunk with the VAE's weights (see :func:`vae_call`)."""
        chunk = self.micro_batch if self.batch_invariant else None
        return vae_call(self.pipe.vae, fn, x, device=self.device, micro_batch=chunk)

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


__all__ = [
    "COMPILE_MODES",
    "FAMILY_PIPELINE",
    "LOADABLE_PIPELINES",
    "SCHEDULERS",
    "SCHEDULER_ALIASES",
    "DiffusersInpainter",
    "check_accel",
    "make_scheduler",
    "make_tiny_inpainter",
    "padded_chunks",
    "paste_back",
    "pipeline_family",
    "read_model_index",
    "scheduler_key",
    "shorten_prompt",
    "use_sdpa",
]
