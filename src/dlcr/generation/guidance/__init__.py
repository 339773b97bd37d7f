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

Layout: :mod:`~dlcr.generation.guidance.model` (the discriminator and the schedule helpers),
:mod:`~dlcr.generation.guidance.checkpoint` (save / load), :mod:`~dlcr.generation.guidance.hook` (the
correction inside the sampler, what the diffusers inpainter attaches) and
:mod:`~dlcr.generation.guidance.training` (encoding, training, a work folder's training sets). This
package imports the first three; the training names are loaded on first access, so the inpainters,
which import this package, never pull in the generation stages that training reads.
"""

from __future__ import annotations

from dlcr.generation.guidance.checkpoint import FORMAT, FORMAT_VERSION, load_discriminator, save_discriminator
from dlcr.generation.guidance.hook import (
    DiscriminatorGuidance,
    attach_guidance,
    check_compatible,
    correction_for_prediction,
    guidance_correction,
)
from dlcr.generation.guidance.model import (
    MASK_MODES,
    LatentDiscriminator,
    alpha_bar_at,
    scheduler_alphas_cumprod,
    timestep_embedding,
)
from dlcr.registry import lazy_attributes

__all__ = [
    "FORMAT", "FORMAT_VERSION", "MASK_MODES", "DiscriminatorGuidance", "ImageLike", "LatentDiscriminator",
    "alpha_bar_at", "attach_guidance", "check_compatible", "correction_for_prediction", "encode_latents",
    "fit_discriminator", "guidance_correction", "latent_masks", "load_discriminator", "save_discriminator",
    "scheduler_alphas_cumprod", "timestep_embedding", "train_discriminator", "work_training_sets",
]

# the training side, loaded on first access (it imports the inpainting helpers and the generation stages)
__getattr__ = lazy_attributes(__name__, {
    name: "dlcr.generation.guidance.training"
    for name in ("ImageLike", "encode_latents", "fit_discriminator", "latent_masks", "train_discriminator",
                 "work_training_sets", "_Parts", "_pipeline_parts", "_as_rgb", "_as_mask")
})
