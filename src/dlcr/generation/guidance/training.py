"""Training a discriminator (``dlcr generate guidance-train``): encode real and generated images with the
pipeline's own VAE, then fit :class:`~dlcr.generation.guidance.model.LatentDiscriminator` on noised latents;
:func:`work_training_sets` collects the images (and masks) of a work folder."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dlcr.errors import CheckpointError, ConfigError, InputError, first_line
from dlcr.generation.guidance.model import LatentDiscriminator, scheduler_alphas_cumprod
from dlcr.io.paths import local_model_missing
from dlcr.utils.progress import track
from dlcr.utils.seeding import seeded_torch

ImageLike = np.ndarray | str | os.PathLike


# --------------------------------------------------------------------------------------------
# Pipeline parts: the VAE, the schedule, the image processors
# --------------------------------------------------------------------------------------------


@dataclass
class _Parts:
    vae: Any
    scheduler: Any
    image_processor: Any
    mask_processor: Any
    model: str


def _pipeline_parts(pipe_or_path: Any, device: torch.device) -> _Parts:
    """VAE + scheduler (+ processors) of a pipeline, an inpainter, or a pipeline folder.

    From a folder or hub id only the VAE and the scheduler are loaded (the UNet and text encoder
    are not needed to train the discriminator).
    """
    from diffusers.image_processor import VaeImageProcessor

    obj = getattr(pipe_or_path, "pipe", pipe_or_path)  # a DiffusersInpainter
    if hasattr(obj, "vae") and hasattr(obj, "scheduler"):
        vae, sched = obj.vae, obj.scheduler
        cfg = getattr(obj, "config", None)
        model = str(getattr(pipe_or_path, "model", "") or (cfg.get("_name_or_path", "") if cfg else ""))
    else:
        import diffusers
        from diffusers import AutoencoderKL, DDIMScheduler

        src = str(pipe_or_path)
        local = Path(src).is_dir()
        if local_model_missing(src):
            raise CheckpointError(f"diffusers pipeline folder not found: {src}")
        try:
            vae = AutoencoderKL.from_pretrained(src, subfolder="vae", local_files_only=local)
            cfg = DDIMScheduler.load_config(src, subfolder="scheduler", local_files_only=local)
            sched = getattr(diffusers, cfg.get("_class_name", "DDIMScheduler")).from_config(cfg)
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:  # incl. JSON errors
            first = first_line(e)
            raise CheckpointError(f"cannot load the VAE/scheduler of {src}: {first}") from None
        model = src
        vae = vae.to(device).eval()
    scale = 2 ** (len(vae.config.block_out_channels) - 1)
    image_processor = getattr(obj, "image_processor", None) or VaeImageProcessor(vae_scale_factor=scale)
    mask_processor = getattr(obj, "mask_processor", None) or VaeImageProcessor(
        vae_scale_factor=scale, do_normalize=False, do_binarize=True, do_convert_grayscale=True
    )
    return _Parts(vae, sched, image_processor, mask_processor, model)


def _as_rgb(img: ImageLike) -> np.ndarray:
    from dlcr.io.images import read_rgb

    return read_rgb(img) if isinstance(img, (str, os.PathLike)) else np.asarray(img, dtype=np.uint8)


def _as_mask(mask: Any) -> np.ndarray:
    """A bool mask; a path is read as a LIP label map and turned into the clothes mask."""
    if isinstance(mask, (str, os.PathLike)):
        from dlcr.io.images import read_label_map
        from dlcr.lip import clothes_mask

        return clothes_mask(read_label_map(mask))
    return np.asarray(mask).astype(bool)


@torch.no_grad()
def encode_latents(
    parts: _Parts, images: Sequence[ImageLike], height: int, width: int, *, batch_size: int = 16,
    desc: str = "encode",
) -> torch.Tensor:
    """Scaled VAE latents (N, C, h, w) of ``images`` resized to ``height x width`` (on CPU, float32).

    Exactly the pipeline's convention: pixels -> [-1, 1] by its image processor, the posterior
    mean of its VAE, times ``vae.config.scaling_factor``.
    """
    from dlcr.generation.inpainting import pipeline_image

    param = next(parts.vae.parameters())
    dtype, device = param.dtype, param.device  # encode where the VAE lives
    out = []
    for s in track(range(0, len(images), batch_size), desc=desc, unit="batch"):
        pil = [pipeline_image(_as_rgb(im), height, width) for im in images[s : s + batch_size]]
        px = parts.image_processor.preprocess(pil, height=height, width=width).to(device=device, dtype=dtype)
        lat = parts.vae.encode(px).latent_dist.mode() * parts.vae.config.scaling_factor
        out.append(lat.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def latent_masks(parts: _Parts, masks: Sequence[Any], height: int, width: int) -> torch.Tensor:
    """Masks (N, 1, h, w) at latent size, made exactly as the inpainting pipeline makes its mask
    channel (binarised by its mask processor, then nearest-neighbour downsampling).

    A label-map path that repeats (every generated variant of one source names the source's map) is
    read and converted once.
    """
    from dlcr.generation.inpainting import pipeline_mask

    scale = 2 ** (len(parts.vae.config.block_out_channels) - 1)
    keys = [os.fspath(m) if isinstance(m, (str, os.PathLike)) else i for i, m in enumerate(masks)]
    first: dict[str | int, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    unique = [masks[i] for i in first.values()]
    out = []
    for s in range(0, len(unique), 64):
        pil = [pipeline_mask(_as_mask(m), height, width) for m in unique[s : s + 64]]
        m = parts.mask_processor.preprocess(pil, height=height, width=width)
        out.append(F.interpolate(m.float(), size=(height // scale, width // scale)))
    row = {k: j for j, k in enumerate(first)}
    return torch.cat(out)[[row[k] for k in keys]]


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def train_discriminator(
    pipe_or_path: Any,
    real_images: Sequence[ImageLike],
    fake_images: Sequence[ImageLike],
    masks: tuple[Sequence[Any], Sequence[Any]] | None = None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    height: int | None = None,
    width: int | None = None,
    mask_mode: str | None = None,
    channels: Sequence[int] = (32, 64, 64),
    time_dim: int = 64,
    encode_batch: int = 16,
) -> LatentDiscriminator:
    """Train a :class:`LatentDiscriminator` on real (label 1) vs generated (label 0) images.

    ``pipe_or_path``: a diffusers inpainting pipeline, a ``DiffusersInpainter``, or a pipeline
    folder; its VAE and scheduler define the latents and the noise schedule. Images are RGB uint8
    arrays or paths, resized to ``height x width`` (default: the first real image's size rounded
    down to a multiple of 8; use the generation size). ``masks`` = (one per real image, one per
    fake image), bool arrays or LIP label-map paths; with masks, ``mask_mode`` defaults to
    ``"input"``. The latents are encoded once, then :func:`fit_discriminator` trains on them.
    """
    if not real_images or not fake_images:
        raise InputError(f"need real and generated images, got {len(real_images)} real, {len(fake_images)} fake")
    if masks is not None and (len(masks) != 2 or len(masks[0]) != len(real_images)
                              or len(masks[1]) != len(fake_images)):
        raise InputError("masks must be (one mask per real image, one per generated image)")
    mask_mode = mask_mode or ("input" if masks is not None else "none")
    if mask_mode != "none" and masks is None:
        raise ConfigError(f"mask_mode={mask_mode!r} needs masks")
    dev = torch.device(device)
    parts = _pipeline_parts(pipe_or_path, dev)
    if height is None or width is None:
        h0, w0 = _as_rgb(real_images[0]).shape[:2]
        height, width = height or max(8, h0 // 8 * 8), width or max(8, w0 // 8 * 8)
    if height % 8 or width % 8:
        raise ConfigError(f"height and width must be multiples of 8, got {height}x{width}")

    real = encode_latents(parts, real_images, height, width, batch_size=encode_batch, desc="encode real")
    fake = encode_latents(parts, fake_images, height, width, batch_size=encode_batch, desc="encode fake")
    real_m = fake_m = None
    if mask_mode != "none":
        assert masks is not None
        real_m, fake_m = latent_masks(parts, masks[0], height, width), latent_masks(parts, masks[1], height, width)
    disc = fit_discriminator(real, fake, scheduler_alphas_cumprod(parts.scheduler), real_m, fake_m,
                             steps=steps, batch_size=batch_size, lr=lr, seed=seed, device=dev,
                             mask_mode=mask_mode, channels=channels, time_dim=time_dim)
    disc.info = {
        "model": parts.model,
        "scheduler": type(parts.scheduler).__name__,
        "num_train_timesteps": len(disc.alphas_cumprod),
        "prediction_type": str(parts.scheduler.config.get("prediction_type", "epsilon")),
        "scaling_factor": float(parts.vae.config.scaling_factor),
        "latent_channels": int(real.shape[1]),
        "height": int(height),
        "width": int(width),
        "n_real": len(real_images),
        "n_fake": len(fake_images),
        **disc.info,
    }
    return disc


def fit_discriminator(
    real: torch.Tensor,
    fake: torch.Tensor,
    alphas_cumprod: torch.Tensor,
    real_masks: torch.Tensor | None = None,
    fake_masks: torch.Tensor | None = None,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: str | torch.device = "cpu",
    mask_mode: str | None = None,
    channels: Sequence[int] = (32, 64, 64),
    time_dim: int = 64,
) -> LatentDiscriminator:
    """The training loop on clean latents (N, C, h, w): noise, classify, binary cross-entropy.

    Each step draws ``batch_size / 2`` real and as many fake latents, integer timesteps uniform
    in ``[0, len(alphas_cumprod))`` and noises them as the forward process does:
    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise``. Masks (N, 1, h, w) at latent size are
    used according to ``mask_mode`` (default ``"input"`` when given). Deterministic for a given
    ``seed`` on CPU. Per-step losses end up in ``disc.train_losses``.
    """
    if steps < 1 or batch_size < 2 or not lr > 0:
        raise ConfigError(f"need steps >= 1, batch_size >= 2, lr > 0; got {steps}, {batch_size}, {lr}")
    if len(real) == 0 or len(fake) == 0:
        raise InputError(f"need real and generated latents, got {len(real)} and {len(fake)}")
    mask_mode = mask_mode or ("input" if real_masks is not None else "none")
    if mask_mode != "none" and (real_masks is None or fake_masks is None):
        raise ConfigError(f"mask_mode={mask_mode!r} needs masks")
    dev = torch.device(device)
    real, fake = real.detach().float().cpu(), fake.detach().float().cpu()
    alphas = torch.as_tensor(alphas_cumprod).detach().float().cpu()
    n_t = len(alphas)
    data_std = float(torch.cat([real, fake]).std())
    with seeded_torch(seed):  # the initial weights: a function of the seed; the caller's RNG state is kept
        disc = LatentDiscriminator(real.shape[1], channels, time_dim, mask_mode, n_t, data_std).set_schedule(alphas)
    disc = disc.to(dev)
    opt = torch.optim.Adam(disc.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    half = batch_size // 2
    labels = torch.cat([torch.ones(half), torch.zeros(half)]).to(dev)
    disc.train()
    losses: list[float] = []
    accs: list[float] = []
    for _ in track(range(steps), desc="train discriminator", unit="step"):
        ri = torch.randint(len(real), (half,), generator=gen)
        fi = torch.randint(len(fake), (half,), generator=gen)
        x0 = torch.cat([real[ri], fake[fi]])
        t = torch.randint(n_t, (2 * half,), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        ab = alphas[t].view(-1, 1, 1, 1)
        xt = (ab.sqrt() * x0 + (1 - ab).sqrt() * noise).to(dev)
        m = None
        if mask_mode != "none":
            assert real_masks is not None and fake_masks is not None
            m = torch.cat([real_masks[ri], fake_masks[fi]]).float().to(dev)
        logits = disc(xt, t.to(dev).float(), m)
        loss = F.binary_cross_entropy_with_logits(logits, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        accs.append(float(((logits.detach() > 0).float() == labels).float().mean()))
    disc.eval()
    tail = max(1, steps // 10)
    disc.train_losses = losses
    disc.info = {
        "num_train_timesteps": n_t,
        "train_steps": int(steps),
        "batch_size": int(batch_size),
        "lr": float(lr),
        "seed": int(seed),
        "final_loss": float(np.mean(losses[-tail:])),
        "final_accuracy": float(np.mean(accs[-tail:])),
    }
    return disc


# --------------------------------------------------------------------------------------------
# Training sets from a work folder (for `dlcr generate guidance-train`)
# --------------------------------------------------------------------------------------------


def work_training_sets(
    train: Sequence[Any], image_root: str | os.PathLike, work: str | os.PathLike, *,
    masked: bool, max_images: int = 0, seed: int = 0,
) -> tuple[list[Path], list[Path], tuple[list[Path], list[Path]] | None]:
    """Real training images, generated images (``<work>/generated/manifest.parquet``) and, when
    ``masked``, their label maps (a generated image's region is its source's clothes mask).

    ``max_images`` > 0 keeps a seeded random subset of that many per side.
    """
    from dlcr.generation.layout import GENERATED, MASKS
    from dlcr.generation.outputs import label_path_for, read_manifest
    from dlcr.io.paths import safe_join

    work = Path(work)
    real_rel = [s.frames[0] if getattr(s, "frames", ()) else s.path for s in train]
    records = read_manifest(work / GENERATED)
    if not real_rel or not records:
        raise InputError(f"need real training images and generated images; got {len(real_rel)} and {len(records)}")
    rng = np.random.default_rng(seed)
    if max_images and len(real_rel) > max_images:
        real_rel = [real_rel[i] for i in sorted(rng.choice(len(real_rel), max_images, replace=False))]
    if max_images and len(records) > max_images:
        records = [records[i] for i in sorted(rng.choice(len(records), max_images, replace=False))]
    real = [safe_join(image_root, r) for r in real_rel]
    fake = [safe_join(work / GENERATED, r.file) for r in records]
    masks = None
    if masked:
        masks = ([label_path_for(work / MASKS, r) for r in real_rel],
                 [label_path_for(work / MASKS, r.source) for r in records])
    return real, fake, masks
