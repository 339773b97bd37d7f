"""The time-conditioned latent discriminator of discriminator guidance and its noise-schedule helpers
(see :mod:`dlcr.generation.guidance`). Imports only torch and :mod:`dlcr.errors`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dlcr.errors import ConfigError, InputError

MASK_MODES = ("none", "input", "weight")


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
# The noise schedule
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


def scheduler_alphas_cumprod(scheduler: Any) -> torch.Tensor:
    """The scheduler's training-time ``alphas_cumprod`` (float32, CPU), whatever its class."""
    ac = getattr(scheduler, "alphas_cumprod", None)
    if ac is None:  # schedulers that only keep sigmas: rebuild the table from the same config
        from diffusers import DDPMScheduler

        ac = DDPMScheduler.from_config(scheduler.config).alphas_cumprod
    return torch.as_tensor(ac).detach().float().cpu().clone()
