"""``diffusers`` / ``tiny``: Stable-Diffusion inpainting through diffusers.

Any SD-1.5 / SD-2 inpainting checkpoint in the diffusers layout (a hub id or a local folder) is
loaded with ``StableDiffusionInpaintPipeline.from_pretrained`` (fp16 on CUDA, fp32 on CPU, no
safety checker, no remote code). Attention uses PyTorch's scaled-dot-product attention, the
default processor of diffusers on torch 2.

Per batch: jobs are grouped by kind (training variants use ``steps`` at ``height x width``, query
variants ``query_steps`` at ``query_scale`` of that size, as in the paper: 10 steps, half
resolution), each image/mask is resized to the working size, every job gets its own
``torch.Generator`` seeded by the job seed (CPU generators, so the noise is the same on every
device), and the prompt embeddings of each distinct outfit prompt are encoded once and cached for
the life of the inpainter. The output is resized back to the source size and composited so that
pixels outside the mask are bit-identical to the source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from dlcr.distributed.env import resolve_device
from dlcr.errors import CheckpointError, ConfigError, did_you_mean, first_line
from dlcr.generation.inpainting import InpaintItem, composite, pipeline_image, pipeline_mask, resize_rgb
from dlcr.generation.parsing import resolve_dtype
from dlcr.io.paths import local_model_missing
from dlcr.utils.logging import get_logger

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


def _multiple_of_8(name: str, value: int) -> int:
    value = int(value)
    if value <= 0 or value % 8:
        raise ConfigError(f"{name} must be a positive multiple of 8, got {value}")
    return value


class DiffusersInpainter:
    """Inpaint clothes with a diffusers Stable-Diffusion inpainting pipeline.

    Args:
        model: hub id or local folder of a diffusers inpainting checkpoint.
        scheduler: a name from ``SCHEDULERS`` (``ddim``, ``pndm``, ``euler``, ``euler_a``,
            ``dpm++``, ``unipc``, ``lms``...), or ``None`` to keep the checkpoint's own.
        steps / guidance_scale / negative_prompt / height / width: generation settings of
            training variants (the paper: 50 DDIM steps at 768x256, H x W).
        query_steps / query_scale: settings of query (refinement) variants: 10 steps at half size.
        max_batch: largest number of images per pipeline call (``None``: the whole batch).
        device / dtype: default CUDA (the local rank's GPU) + fp16 when available, else CPU + fp32.
        local_files_only: never contact the hub (always true for a local folder).
        discriminator / guidance_weight / guidance_min_t: optional discriminator guidance
            (``dlcr.generation.guidance``): a checkpoint from ``dlcr generate guidance-train``
            corrects the noise prediction with weight ``w`` at timesteps ``t > guidance_min_t``.
            Off (and nothing loaded) unless ``discriminator`` is given.
    """

    name = "diffusers"

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
    ):
        import torch
        from diffusers import StableDiffusionInpaintPipeline

        self.model = str(model)
        self.steps = int(steps)
        self.query_steps = int(query_steps)
        if self.steps < 1 or self.query_steps < 1:
            raise ConfigError(f"steps must be >= 1, got steps={steps}, query_steps={query_steps}")
        self.guidance_scale = float(guidance_scale)
        self.negative_prompt = negative_prompt or ""
        self.height = _multiple_of_8("height", height)
        self.width = _multiple_of_8("width", width)
        self.query_height = max(8, int(round(self.height * query_scale / 8)) * 8)
        self.query_width = max(8, int(round(self.width * query_scale / 8)) * 8)
        self.strength = float(strength)
        self.max_batch = int(max_batch) if max_batch else None
        self.device = torch.device(resolve_device(device))
        self.dtype = resolve_dtype(dtype, str(self.device))
        is_local = Path(self.model).is_dir()
        if local_model_missing(self.model):
            raise CheckpointError(f"inpainting model folder not found: {self.model}")
        try:
            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                self.model,
                **{_dtype_kwarg(): self.dtype},
                safety_checker=None,
                feature_extractor=None,
                requires_safety_checker=False,
                local_files_only=local_files_only or is_local,
            )
        except (OSError, ValueError, TypeError, KeyError) as e:
            first = first_line(e)
            raise CheckpointError(f"cannot load diffusers inpainting model {self.model!r}: {first}") from None
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
        pipe = pipe.to(self.device)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self._embeds: dict[str, tuple[Any, Any]] = {}
        self.encode_count = 0  # how many prompts were run through the text encoder
        self.guidance: Any = None  # a DiscriminatorGuidance hook on pipe.unet, only when asked for
        if discriminator:  # None or "" (an unset config value): off
            from dlcr.generation.guidance import attach_guidance

            self.guidance = attach_guidance(pipe, discriminator, weight=guidance_weight,
                                            min_t=guidance_min_t, device=self.device)

    # -- prompt embeddings -------------------------------------------------------------------
    @property
    def do_cfg(self) -> bool:
        return self.guidance_scale > 1.0

    def prompt_embeddings(self, prompt: str) -> tuple[Any, Any]:
        """(prompt_embeds, negative_prompt_embeds) of ``prompt``, encoded once and cached."""
        hit = self._embeds.get(prompt)
        if hit is None:
            import torch

            with torch.inference_mode():
                pe, npe = self.pipe.encode_prompt(
                    prompt, self.device, 1, self.do_cfg, negative_prompt=self.negative_prompt or None
                )
            hit = (pe, npe)
            self._embeds[prompt] = hit
            self.encode_count += 1
        return hit

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
        embeds = [self.prompt_embeddings(it.job.prompt) for it in items]
        prompt_embeds = torch.cat([e[0] for e in embeds])
        negative = torch.cat([e[1] for e in embeds]) if self.do_cfg else None
        images = [pipeline_image(it.image, h, w) for it in items]
        masks = [pipeline_mask(it.mask, h, w) for it in items]
        generators = [torch.Generator(device="cpu").manual_seed(int(it.job.seed)) for it in items]
        with torch.inference_mode():
            masked_latents = self._masked_image_latents(images, masks, h, w)
            result = self.pipe(
                masked_image_latents=masked_latents,
                prompt_embeds=prompt_embeds,
                negative_prompt_embeds=negative,
                image=images,
                mask_image=masks,
                height=h,
                width=w,
                strength=self.strength,
                num_inference_steps=steps,
                guidance_scale=self.guidance_scale,
                generator=generators,
                output_type="np",
            ).images
        return [paste_back(it, g) for it, g in zip(items, result, strict=True)]


    def _masked_image_latents(self, images: list[Image.Image], masks: list[Image.Image], h: int, w: int) -> Any:
        """VAE latents of the masked source images, encoded in ONE batched call.

        The stock pipeline encodes them one image at a time when it is given one generator per job. We take the mean of the latent
        distribution instead of a sample: no random draw, so the jobs' generators feed only the
        initial noise and each job stays deterministic whatever batch it lands in. Only for
        9-channel inpainting UNets (the legacy 4-channel mode does not use these latents).
        """
        if int(self.pipe.unet.config.in_channels) != 9:
            return None
        pipe = self.pipe
        init = pipe.image_processor.preprocess(images, height=h, width=w).float()
        cond = pipe.mask_processor.preprocess(masks, height=h, width=w)
        masked = (init * (cond < 0.5)).to(device=self.device, dtype=self.dtype)
        latents = pipe.vae.encode(masked).latent_dist.mode()
        return latents * pipe.vae.config.scaling_factor


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
    from dlcr.testing.tiny_diffusion import tiny_pipeline_path

    path = tiny_pipeline_path(cache_dir)
    inp = DiffusersInpainter(path, steps=steps, height=height, width=width, query_steps=query_steps, **kwargs)
    inp.name = "tiny"
    return inp
