"""Discriminator guidance for the inpainting sampler (paper, supplementary §12), done consistently.

A small time-conditioned discriminator ``d(x_t, t)`` learns to tell noisy latents of *real* training
images (label 1) from noisy latents of *generated* ones (label 0). While sampling, the noise
prediction is corrected with

    eps <- eps - w * sqrt(1 - abar_t) * grad_{x_t} log(d / (1 - d))

which adds ``w * grad log(d/(1-d))`` (an estimate of the log density ratio real/generated) to the
score. ``log(d/(1-d))`` is exactly the discriminator's logit, so we differentiate the logit
itself (no clamped ``log`` of a sigmoid).

What "consistently" means here (the released code gets each of these wrong):

- the discriminator is trained on exactly what the UNet sees: images normalised to [-1, 1],
  encoded by the *pipeline's own* VAE, latents multiplied by ``vae.config.scaling_factor``;
- latents are noised with the pipeline scheduler's own discrete ``alphas_cumprod`` at sampled
  integer timesteps, and the same table gives ``abar_t`` at sampling time. The UNet's input is the
  variance-preserving ``x_t`` for every diffusers scheduler (``scale_model_input`` turns the
  sigma-parameterised latents of Euler/DPM-style schedulers back into it), so the discriminator is
  evaluated on the UNet's input latents;
- the checkpoint records the scaling factor and the schedule, and loading it into a pipeline with
  another one fails loudly; a missing or damaged checkpoint is an error, never a silent no-op;
- nothing is loaded unless a checkpoint is asked for.

With classifier-free guidance the correction is added to both halves (unconditional and
conditional) before they are combined; since ``eps_u + s (eps_c - eps_u)`` is affine with weights
summing to one, that equals adding it once to the combined prediction.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlcr.errors import CheckpointError, ConfigError, InputError, first_line
from dlcr.io.atomic import atomic_write_bytes, atomic_write_json
from dlcr.io.paths import local_model_missing
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

log = get_logger(__name__)

FORMAT = "dlcr-latent-discriminator"
FORMAT_VERSION = 1
MASK_MODES = ("none", "input", "weight")
_MODEL_PREFIX = "model."

ImageLike = np.ndarray | str | os.PathLike


# --------------------------------------------------------------------------------------------
# The discriminator
# --------------------------------------------------------------------------------------------


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps ``t`` (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


class _Block(nn.Module):
    """conv -> GroupNorm -> FiLM from the time embedding -> SiLU.

    GroupNorm (not BatchNorm) keeps every sample's logit a function of that sample alone, so the
    gradient of the summed logits is each sample's own gradient.
    """

    def __init__(self, cin: int, cout: int, stride: int, time_dim: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
        self.norm = nn.GroupNorm(min(8, cout), cout)
        self.film = nn.Linear(time_dim, 2 * cout)

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(temb)[:, :, None, None].chunk(2, dim=1)
        return F.silu(self.norm(self.conv(h)) * (1 + scale) + shift)


class LatentDiscriminator(nn.Module):
    """Time-conditioned conv net on SD latents; returns one logit per sample (real = positive).

    The net computes a logit *map* (first block at latent resolution, the others halve it) and
    pools it to one logit. ``mask_mode`` restricts it to the inpainted region, with the mask at
    latent resolution (1 = region that is inpainted, as in the UNet's mask channel):

    - ``"none"``: the whole latent, mean-pooled;
    - ``"input"``: the latent is multiplied by the mask before the net (the gradient is then zero
      outside the mask);
    - ``"weight"``: the logit map is averaged with the mask as weights (so the loss only sees the
      masked region; context outside the mask is still visible to the convolutions).

    ``info`` carries what the checkpoint must remember besides the weights (scheduler, scaling
    factor, training settings); the buffer ``alphas_cumprod`` is the noise schedule it was trained
    with (saved with the weights, checked against the pipeline's before use).

    With ``data_std`` set (training sets it to the std of the clean training latents) the input is
    preconditioned as in EDM: ``x_t / sqrt(abar_t * data_std^2 + 1 - abar_t)`` has about unit
    variance at every ``t``, whatever the VAE's latent scale (SD's scaled latents have a std near 1,
    so there it changes little).
    """

    def __init__(
        self,
        in_channels: int = 4,
        channels: Sequence[int] = (32, 64, 64),
        time_dim: int = 64,
        mask_mode: str = "none",
        num_train_timesteps: int = 1000,
        data_std: float | None = None,
    ):
        super().__init__()
        if mask_mode not in MASK_MODES:
            raise ConfigError(f"unknown mask_mode {mask_mode!r}; use one of {', '.join(MASK_MODES)}")
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1 or int(time_dim) < 2:
            raise ConfigError(f"bad discriminator size: channels={channels}, time_dim={time_dim}")
        self.config = {
            "in_channels": int(in_channels),
            "channels": channels,
            "time_dim": int(time_dim),
            "mask_mode": mask_mode,
            "num_train_timesteps": int(num_train_timesteps),
            "data_std": None if data_std is None else float(data_std),
        }
        self.data_std = None if data_std is None else float(data_std)
        self.register_buffer("alphas_cumprod", torch.ones(int(num_train_timesteps)))
        self.mask_mode = mask_mode
        self.time_dim = int(time_dim)
        self.time_mlp = nn.Sequential(nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim))
        blocks, cin = [], int(in_channels)
        for i, c in enumerate(channels):
            blocks.append(_Block(cin, c, stride=1 if i == 0 else 2, time_dim=time_dim))
            cin = c
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, 1, 1)
        self.info: dict[str, Any] = {}
        self.train_losses: list[float] = []

    @property
    def uses_mask(self) -> bool:
        return self.mask_mode != "none"

    def set_schedule(self, alphas_cumprod: torch.Tensor) -> LatentDiscriminator:
        """Record the noise schedule (the scheduler's ``alphas_cumprod``) this net is trained for."""
        ac = torch.as_tensor(alphas_cumprod).detach().float()
        if ac.shape != self.alphas_cumprod.shape:
            raise ConfigError(f"schedule has {ac.numel()} steps, the discriminator {self.alphas_cumprod.numel()}")
        self.alphas_cumprod.copy_(ac.to(self.alphas_cumprod.device))
        return self

    def logit_map(self, x: torch.Tensor, t: torch.Tensor | float, mask: torch.Tensor | None = None) -> torch.Tensor:
        t = torch.as_tensor(t, device=x.device).float().reshape(-1).expand(x.shape[0])
        temb = self.time_mlp(timestep_embedding(t, self.time_dim))
        h = x * mask if self.mask_mode == "input" else x
        if self.data_std is not None:
            ab = alpha_bar_at(self.alphas_cumprod, t).to(h.dtype).view(-1, 1, 1, 1)
            h = h * torch.rsqrt(ab * self.data_std**2 + 1 - ab)
        for block in self.blocks:
            h = block(h, temb)
        return self.head(h)

    def forward(self, x: torch.Tensor, t: torch.Tensor | float, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B,) = log(d / (1 - d)) of latents ``x`` (B, C, h, w) at timesteps ``t``."""
        if self.uses_mask and mask is None:
            raise InputError(f"this discriminator was trained with mask_mode={self.mask_mode!r}; pass the mask")
        if mask is not None:
            mask = mask.to(dtype=x.dtype)
        lmap = self.logit_map(x, t, mask)
        if self.mask_mode == "weight":
            wts = F.adaptive_avg_pool2d(mask, lmap.shape[-2:])
            return (lmap * wts).flatten(1).sum(1) / wts.flatten(1).sum(1).clamp_min(1e-6)
        return lmap.flatten(1).mean(1)


# --------------------------------------------------------------------------------------------
# The guidance term
# --------------------------------------------------------------------------------------------


def alpha_bar_at(alphas_cumprod: torch.Tensor, t: torch.Tensor | float | int) -> torch.Tensor:
    """``abar_t`` for (possibly fractional) timesteps ``t``; linear interpolation between entries.

    Integer timesteps (DDIM, PNDM, DPM-Solver...) index the table exactly; some Euler-type
    schedulers feed the UNet fractional timesteps.
    """
    ac = alphas_cumprod
    tt = torch.as_tensor(t).to(device=ac.device, dtype=ac.dtype).reshape(-1).clamp(0, len(ac) - 1)
    lo = tt.floor().long()
    hi = (lo + 1).clamp_max(len(ac) - 1)
    frac = tt - lo.to(ac.dtype)
    return ac[lo] * (1 - frac) + ac[hi] * frac


def guidance_correction(
    disc: nn.Module,
    latents: torch.Tensor,
    t: torch.Tensor | float | int,
    alphas_cumprod: torch.Tensor,
    w: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """The term added to the noise prediction: ``-w * sqrt(1 - abar_t) * grad_x log(d/(1-d))``.

    ``latents`` (B, C, h, w) are the UNet's input ``x_t``; ``t`` a scalar or (B,) timesteps;
    ``disc(x, t, mask)`` returns logits (B,). Works inside ``torch.inference_mode`` / ``no_grad``
    (the pipeline's): the gradient is taken on a fresh copy of the latents. Returns a tensor like
    ``latents`` (same dtype and device).
    """
    param = next(iter(disc.parameters()), None)
    dev = param.device if param is not None else latents.device
    dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
    b = latents.shape[0]
    tt = torch.as_tensor(t).reshape(-1).expand(b) if torch.as_tensor(t).numel() == 1 else torch.as_tensor(t)
    abar = alpha_bar_at(alphas_cumprod.detach().double().cpu(), tt.cpu())
    scale = (-float(w) * torch.sqrt(1.0 - abar)).to(device=dev, dtype=dtype).view(b, *[1] * (latents.ndim - 1))
    with torch.inference_mode(False), torch.enable_grad():
        x = latents.detach().to(device=dev, dtype=dtype).clone().requires_grad_(True)
        m = mask.detach().to(device=dev, dtype=dtype).clone() if mask is not None else None
        logits = disc(x, tt.to(dev).float().clone(), m)
        (grad,) = torch.autograd.grad(logits.sum(), x)
    return (scale * grad).to(device=latents.device, dtype=latents.dtype)


def correction_for_prediction(
    eps_correction: torch.Tensor, alpha_bar: torch.Tensor, prediction_type: str
) -> torch.Tensor:
    """Turn a correction of ``eps`` into the correction of what the UNet predicts.

    For ``v_prediction`` (``v = sqrt(abar) eps - sqrt(1-abar) x0`` with ``x_t`` fixed) a change
    ``delta`` of ``eps`` changes ``v`` by ``delta / sqrt(abar)``.
    """
    if prediction_type == "epsilon":
        return eps_correction
    if prediction_type == "v_prediction":
        a = alpha_bar.to(device=eps_correction.device, dtype=eps_correction.dtype)
        return eps_correction / torch.sqrt(a).view(-1, *[1] * (eps_correction.ndim - 1))
    raise ConfigError(f"discriminator guidance supports epsilon and v_prediction UNets, not {prediction_type!r}")


# --------------------------------------------------------------------------------------------
# Pipeline parts: the VAE, the schedule, the image processors
# --------------------------------------------------------------------------------------------


def scheduler_alphas_cumprod(scheduler: Any) -> torch.Tensor:
    """The scheduler's training-time ``alphas_cumprod`` (float32, CPU), whatever its class."""
    ac = getattr(scheduler, "alphas_cumprod", None)
    if ac is None:  # schedulers that only keep sigmas: rebuild the table from the same config
        from diffusers import DDPMScheduler

        ac = DDPMScheduler.from_config(scheduler.config).alphas_cumprod
    return torch.as_tensor(ac).detach().float().cpu().clone()


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
        from dlcr.generation.parsing import clothes_mask
        from dlcr.io.images import read_label_map

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
    torch.manual_seed(seed)  # the initial weights
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
# Checkpoints
# --------------------------------------------------------------------------------------------


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix == ".json":
        p = p.with_suffix(".safetensors")
    elif p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


def save_discriminator(disc: LatentDiscriminator, path: str | os.PathLike) -> Path:
    """Write ``<path>.safetensors`` (weights, incl. the schedule buffer) and ``<path>.json`` atomically.

    The JSON holds the architecture, what it was trained for and the SHA-256 of the weights file; it
    is written last, so a killed save never leaves a pair that loads.
    """
    from safetensors.torch import save

    weights, meta = _paths(path)
    tensors = {_MODEL_PREFIX + k: v.detach().cpu().contiguous() for k, v in disc.state_dict().items()}
    blob = save(tensors)
    atomic_write_bytes(weights, blob)
    atomic_write_json(meta, {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "architecture": disc.config,
        **disc.info,
        "weights": weights.name,
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
    })
    return weights


def load_discriminator(path: str | os.PathLike, device: str | torch.device = "cpu") -> LatentDiscriminator:
    """Load a discriminator saved by :func:`save_discriminator`; any problem is a one-line
    :class:`CheckpointError` (missing files, damaged or mismatched weights)."""
    from safetensors.torch import load

    weights, meta_path = _paths(path)
    for p, what in ((weights, "weights"), (meta_path, "metadata")):
        if not p.is_file():
            raise CheckpointError(f"discriminator {what} not found: {p}")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        if int(meta.get("version", 0)) > FORMAT_VERSION:
            raise ValueError(f"format version {meta['version']} is newer than this dlcr ({FORMAT_VERSION})")
        arch = meta["architecture"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"bad discriminator metadata {meta_path}: {e}") from None
    blob = weights.read_bytes()
    if meta.get("weights_sha256") and hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(f"discriminator weights {weights} do not match {meta_path.name} (damaged or replaced)")
    try:
        tensors = load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"cannot read discriminator weights {weights}: {first_line(e)}") from None
    try:
        disc = LatentDiscriminator(arch["in_channels"], arch["channels"], arch["time_dim"], arch["mask_mode"],
                                   arch["num_train_timesteps"], arch["data_std"])
        state = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
        disc.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ConfigError) as e:
        raise CheckpointError(f"discriminator {weights} does not fit its architecture: "
                              f"{first_line(e)}") from None
    skip = {"format", "version", "architecture", "weights", "weights_sha256"}
    disc.info = {k: v for k, v in meta.items() if k not in skip}
    return disc.to(device).eval()


def check_compatible(disc: LatentDiscriminator, pipe: Any, source: str = "discriminator") -> None:
    """Refuse a discriminator trained for other latents or another noise schedule than ``pipe``'s."""
    info = disc.info
    sf = float(pipe.vae.config.scaling_factor)
    if "scaling_factor" not in info or abs(float(info["scaling_factor"]) - sf) > 1e-6:
        raise CheckpointError(f"{source} was trained on latents scaled by {info.get('scaling_factor')}, "
                              f"this pipeline's VAE uses {sf}")
    ch = int(pipe.unet.config.out_channels)
    if int(disc.config["in_channels"]) != ch:
        raise CheckpointError(f"{source} takes {disc.config['in_channels']}-channel latents, the UNet has {ch}")
    ac = scheduler_alphas_cumprod(pipe.scheduler)
    own = disc.alphas_cumprod.detach().float().cpu()
    if own.shape != ac.shape or not torch.allclose(own, ac, rtol=1e-5, atol=1e-7):
        raise CheckpointError(f"{source} was trained with another noise schedule "
                              f"({info.get('scheduler')}, {info.get('num_train_timesteps')} steps) than this pipeline's")
    if disc.uses_mask and int(pipe.unet.config.in_channels) != 9:
        raise ConfigError(f"{source} uses the inpainting mask (mask_mode={disc.mask_mode!r}) but the UNet "
                          "is not a 9-channel inpainting UNet")


# --------------------------------------------------------------------------------------------
# Inside the sampler
# --------------------------------------------------------------------------------------------


class DiscriminatorGuidance:
    """A forward hook on the pipeline's UNet that returns the corrected noise prediction.

    Hooking the UNet's output (instead of editing the pipeline's loop) keeps every diffusers
    pipeline and scheduler working unchanged. The UNet input's first ``C`` channels are ``x_t``
    (with an inpainting UNet the next one is the mask at latent size). With classifier-free
    guidance the batch holds the unconditional then the conditional half; both have the same
    ``x_t``, so the gradient is computed once and added to each half. Counters ``calls`` /
    ``corrected`` say how many UNet calls were seen / corrected.
    """

    def __init__(self, disc: nn.Module, alphas_cumprod: torch.Tensor, *, weight: float = 1.0,
                 min_t: float = 200, prediction_type: str = "epsilon", latent_channels: int = 4):
        if not math.isfinite(float(weight)):
            raise ConfigError(f"guidance weight must be finite, got {weight}")
        correction_for_prediction(torch.zeros(1), torch.ones(1), prediction_type)  # validates the type
        self.disc = disc
        self.alphas_cumprod = alphas_cumprod.detach().float().cpu()
        self.weight = float(weight)
        self.min_t = float(min_t)
        self.prediction_type = prediction_type
        self.latent_channels = int(latent_channels)
        self.uses_mask = bool(getattr(disc, "uses_mask", False))
        self.calls = 0
        self.corrected = 0
        self._handle: Any = None

    def attach(self, unet: nn.Module) -> DiscriminatorGuidance:
        self._handle = unet.register_forward_hook(self, with_kwargs=True)
        return self

    def remove(self) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def correct(self, sample: torch.Tensor, t: Any, eps: torch.Tensor) -> torch.Tensor:
        """``eps`` plus the guidance term for UNet input ``sample`` at timestep(s) ``t``."""
        b = sample.shape[0]
        tt = torch.as_tensor(t).detach().float().cpu().reshape(-1).expand(b)
        active = tt > self.min_t
        if not bool(active.any()):
            return eps
        c = self.latent_channels
        x = sample[:, :c]
        mask = sample[:, c : c + 1] if self.uses_mask else None
        if b % 2 == 0 and torch.equal(x[: b // 2], x[b // 2 :]) and torch.equal(tt[: b // 2], tt[b // 2 :]) and (
            mask is None or torch.equal(mask[: b // 2], mask[b // 2 :])
        ):  # the two CFG halves share x_t: one gradient serves both
            h = b // 2
            corr = guidance_correction(self.disc, x[:h], tt[:h], self.alphas_cumprod, self.weight,
                                       None if mask is None else mask[:h])
            corr = torch.cat([corr, corr])
        else:
            corr = guidance_correction(self.disc, x, tt, self.alphas_cumprod, self.weight, mask)
        corr = correction_for_prediction(corr, alpha_bar_at(self.alphas_cumprod, tt), self.prediction_type)
        corr = corr * active.to(device=corr.device, dtype=corr.dtype).view(-1, *[1] * (corr.ndim - 1))
        self.corrected += 1
        return eps + corr

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict, output: Any) -> Any:
        self.calls += 1
        sample = args[0] if args else kwargs["sample"]
        t = args[1] if len(args) > 1 else kwargs["timestep"]
        if isinstance(output, tuple):
            return (self.correct(sample, t, output[0]), *output[1:])
        output.sample = self.correct(sample, t, output.sample)
        return output


def attach_guidance(pipe: Any, discriminator: str | os.PathLike | LatentDiscriminator, *, weight: float = 1.0,
                    min_t: float = 200, device: str | torch.device | None = None) -> DiscriminatorGuidance:
    """Load (if a path) and check ``discriminator`` against ``pipe``, and hook it into the UNet."""
    dev = torch.device(device) if device is not None else pipe.unet.device
    disc = discriminator if isinstance(discriminator, nn.Module) else load_discriminator(discriminator, dev)
    disc = disc.to(dev).eval()
    for p in disc.parameters():
        p.requires_grad_(False)  # only the gradient w.r.t. the latents is needed
    check_compatible(disc, pipe, source=f"discriminator {discriminator}" if not isinstance(
        discriminator, nn.Module) else "discriminator")
    guide = DiscriminatorGuidance(
        disc, scheduler_alphas_cumprod(pipe.scheduler), weight=weight, min_t=min_t,
        prediction_type=str(pipe.scheduler.config.get("prediction_type", "epsilon")),
        latent_channels=int(pipe.unet.config.out_channels),
    )
    log.info("discriminator guidance: w=%g for t > %g (%s)", weight, min_t, disc.info.get("model", ""))
    return guide.attach(pipe.unet)


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
    from dlcr.generation.runner import label_path_for, read_manifest
    from dlcr.generation.stages import GENERATED, MASKS
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
