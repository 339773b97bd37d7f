"""Loading and checking the ``diffusers`` inpainting backend's pipeline (see
:mod:`dlcr.generation.inpainters.diffusers_backend`): the schedulers by name, the pipeline classes
it loads and their families, the checks of a loaded UNet, the speed-up options (``channels_last``,
``torch.compile``) and the attention processor. diffusers and torch are imported inside the
functions, so importing this module stays light.
"""

from __future__ import annotations

from typing import Any

from dlcr.errors import CheckpointError, ConfigError, did_you_mean, first_line
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


def load_inpaint_pipeline(model: str, dtype: Any, local_files_only: bool) -> tuple[str, Any]:
    """``(family, pipeline)`` of a diffusers inpainting checkpoint (a hub id or a local folder), loaded
    through ``AutoPipelineForInpainting`` in ``dtype`` with no safety checker; one-line errors for a
    missing folder, a pipeline class this backend does not load, or a failed load."""
    from pathlib import Path

    from diffusers import AutoPipelineForInpainting

    is_local = Path(model).is_dir()
    if local_model_missing(model):
        raise CheckpointError(f"inpainting model folder not found: {model}")
    local_only = bool(local_files_only or is_local)
    family = pipeline_family(read_model_index(model, local_only), model)
    extra: dict[str, Any] = {}
    if family == "sd":
        extra = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    _quiet_loading()
    try:
        pipe = AutoPipelineForInpainting.from_pretrained(
            model, **{_dtype_kwarg(): dtype}, **extra, local_files_only=local_only
        )
    except Exception as e:  # noqa: BLE001 -- any failure to load a user's model is one line
        raise CheckpointError(f"cannot load diffusers inpainting model {model!r}: "
                              f"{type(e).__name__}: {first_line(e)}") from e
    if type(pipe).__name__ != FAMILY_PIPELINE[family]:
        raise CheckpointError(f"model {model!r} loaded as {type(pipe).__name__}, expected "
                              f"{FAMILY_PIPELINE[family]}")
    return family, pipe


def check_unet(pipe: Any, model: str) -> None:
    """Refuse a UNet that is neither a 9-channel inpainting one nor a 4-channel one (warned about:
    diffusers then blends latents inside the mask), or whose cross-attention width is not what its
    text encoder(s) produce."""
    in_ch = int(pipe.unet.config.in_channels)
    if in_ch not in (4, 9):
        raise CheckpointError(
            f"model {model!r}: UNet has {in_ch} input channels; an "
            "inpainting UNet has 9 (or 4 for the legacy blend mode)"
        )
    if in_ch == 4:
        log.warning(
            "model %s is not an inpainting checkpoint (4-channel UNet); diffusers "
            "falls back to blending latents inside the mask",
            model,
        )
    widths = [int(te.config.hidden_size) for te in (pipe.text_encoder, getattr(pipe, "text_encoder_2", None))
              if te is not None]
    want = getattr(pipe.unet.config, "cross_attention_dim", None)
    if isinstance(want, int) and widths and sum(widths) != want:
        names = " + ".join(str(w) for w in widths)
        raise CheckpointError(f"model {model!r}: the UNet's cross_attention_dim is {want}, but its text "
                              f"encoder{'s' if len(widths) > 1 else ''} give{'' if len(widths) > 1 else 's'} "
                              f"{names}")


def accelerate(pipe: Any, accel: dict[str, Any]) -> None:
    """Apply the speed-ups of :func:`check_accel`'s ``accel`` to ``pipe`` (channels-last UNet and VAE,
    a compiled UNet forward)."""
    import torch

    if accel["channels_last"]:
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.vae.to(memory_format=torch.channels_last)
    if accel["compile"]:
        mode = None if accel["compile"] is True else str(accel["compile"])
        # the bound forward is compiled (the module stays a UNet2DConditionModel, its hooks and
        # config as they are); dynamic=False: DLCR's shapes are fixed, one graph per shape
        pipe.unet.forward = torch.compile(pipe.unet.forward, mode=mode, dynamic=False,
                                          backend=accel["compile_backend"])
