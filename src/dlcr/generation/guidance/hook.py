"""The guidance term inside the sampler: a forward hook on the pipeline's UNet that corrects its noise
prediction (what the diffusers inpainter attaches with :func:`attach_guidance`).

Imports only the discriminator (:mod:`~dlcr.generation.guidance.model`) and its checkpoint format
(:mod:`~dlcr.generation.guidance.checkpoint`), never the generation stages or the inpainters.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
from torch import nn

from dlcr.errors import CheckpointError, ConfigError
from dlcr.generation.guidance.checkpoint import load_discriminator
from dlcr.generation.guidance.model import LatentDiscriminator, alpha_bar_at, scheduler_alphas_cumprod
from dlcr.utils.logging import get_logger

log = get_logger(__name__)


# --------------------------------------------------------------------------------------------
# The guidance term
# --------------------------------------------------------------------------------------------


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
