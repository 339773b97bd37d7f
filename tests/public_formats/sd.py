"""Stable-Diffusion inpainting checkpoints in the diffusers folder layout, tiny and random.

Three families, each laid out like its public checkpoint on the hub:

- ``sd15_inpainting``: runwayml/stable-diffusion-inpainting. ``model_index.json`` names
  ``StableDiffusionInpaintPipeline`` with a CLIP ViT-L text encoder (``CLIPTextModel``), a
  ``CLIPTokenizer``, a 9-channel ``UNet2DConditionModel`` (4 noisy latents + 1 mask + 4
  masked-image latents, ``attention_head_dim`` a single number), an ``AutoencoderKL`` and the
  ``PNDMScheduler`` the checkpoint ships (``skip_prk_steps``, ``steps_offset`` 1, scaled-linear
  betas 0.00085..0.012). Here ``safety_checker`` and ``feature_extractor`` are written as
  ``[null, null]`` (the form diffusers writes for a pipeline saved without them).
- ``sd2_inpainting``: stabilityai/stable-diffusion-2-inpainting: an OpenCLIP ViT-H text encoder
  (``gelu``, the tokenizer pads with ``!``), a UNet with ``use_linear_projection`` and one head
  count per block, and a ``DDIMScheduler``.
- ``sdxl_inpainting``: diffusers/stable-diffusion-xl-1.0-inpainting-0.1:
  ``StableDiffusionXLInpaintPipeline`` with two text encoders (``CLIPTextModel`` +
  ``CLIPTextModelWithProjection``, whose pooled projection conditions the UNet), two tokenizers, a
  UNet with ``addition_embed_type: "text_time"`` (pooled text + 6 size/crop ids) whose cross
  attention takes both encoders' hidden states side by side, an ``EulerDiscreteScheduler`` and a
  VAE with ``force_upcast`` and SDXL's ``scaling_factor`` 0.13025.

Every ``config.json`` is written key by key as the public file has it, with tiny widths; the models
are then built from those very files and their random weights written as ``.safetensors`` or as
``.bin`` (``torch.save`` of the state dict, the pickle format older checkpoints ship). The
tokenizers have CLIP's files (``vocab.json``, ``merges.txt``, ``special_tokens_map.json``,
``tokenizer_config.json``, 77-token context) with a small byte-level BPE vocabulary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"

# The scaled-linear schedule every SD-1.x / 2.x / XL checkpoint was trained with.
_BETAS = {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085}


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save_weights(model: Any, folder: Path, stem: str, weights: str) -> None:
    """``<stem>.safetensors`` or ``<stem>.bin`` (a pickled state dict) of ``model``."""
    import torch

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if weights == "safetensors":
        from safetensors.torch import save_file

        save_file(state, str(folder / f"{stem}.safetensors"), metadata={"format": "pt"})
    elif weights == "bin":
        torch.save(state, folder / f"{stem}.bin")
    else:
        raise ValueError(f"weights must be 'safetensors' or 'bin', got {weights!r}")


# ------------------------------------------------------------------------------------- tokenizer
def write_clip_tokenizer(folder: Path, *, pad_token: str = _EOS, max_length: int = 77) -> None:
    """A ``CLIPTokenizer`` folder as SD checkpoints ship it (the vocabulary is small)."""
    from dlcr.generation.tiny_models.diffusion import write_tiny_clip_vocab

    folder.mkdir(parents=True, exist_ok=True)
    write_tiny_clip_vocab(folder)  # vocab.json + merges.txt (byte-level BPE, CLIP conventions)

    def token(content: str) -> dict[str, Any]:
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True,
                "rstrip": False, "single_word": False}

    _write_json(folder / "special_tokens_map.json", {
        "bos_token": {"content": _BOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "eos_token": {"content": _EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
        "pad_token": pad_token,
        "unk_token": {"content": _EOS, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False},
    })
    _write_json(folder / "tokenizer_config.json", {
        "add_prefix_space": False,
        "bos_token": token(_BOS),
        "do_lower_case": True,
        "eos_token": token(_EOS),
        "errors": "replace",
        "model_max_length": max_length,
        "name_or_path": "openai/clip-vit-large-patch14",
        "pad_token": pad_token if pad_token != _EOS else token(_EOS),
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": token(_EOS),
    })


def _vocab_size(tokenizer_dir: Path) -> int:
    return len(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8")))


def _pad_id(tokenizer_dir: Path, pad_token: str) -> int:
    return int(json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))[pad_token])


# ---------------------------------------------------------------------------------- text encoder
def write_text_encoder(folder: Path, tokenizer_dir: Path, *, hidden: int, heads: int, layers: int,
                       act: str, projection_dim: int, with_projection: bool, pad_token: str,
                       weights: str, seed: int) -> None:
    """``text_encoder`` (``CLIPTextModel``) or ``text_encoder_2`` (``CLIPTextModelWithProjection``)."""
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    vocab = json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    arch = "CLIPTextModelWithProjection" if with_projection else "CLIPTextModel"
    cfg = {
        "_name_or_path": "openai/clip-vit-large-patch14",
        "architectures": [arch],
        "attention_dropout": 0.0,
        "bos_token_id": int(vocab[_BOS]),
        "dropout": 0.0,
        "eos_token_id": int(vocab[_EOS]),
        "hidden_act": act,
        "hidden_size": hidden,
        "initializer_factor": 1.0,
        "initializer_range": 0.02,
        "intermediate_size": hidden * 4,
        "layer_norm_eps": 1e-05,
        "max_position_embeddings": 77,
        "model_type": "clip_text_model",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "pad_token_id": _pad_id(tokenizer_dir, pad_token),
        "projection_dim": projection_dim,
        "torch_dtype": "float32",
        "transformers_version": "4.22.0.dev0",
        "vocab_size": len(vocab),
    }
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", cfg)
    config = CLIPTextConfig.from_pretrained(folder)
    torch.manual_seed(seed)
    model = (CLIPTextModelWithProjection if with_projection else CLIPTextModel)(config)
    _save_weights(model, folder, "pytorch_model" if weights == "bin" else "model", weights)


# ------------------------------------------------------------------------------------------ UNet
def write_unet(folder: Path, cfg: dict[str, Any], weights: str, seed: int) -> None:
    import torch
    from diffusers import UNet2DConditionModel

    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", cfg)
    torch.manual_seed(seed)
    model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder))
    _save_weights(model, folder, "diffusion_pytorch_model", weights)


def _sd_unet_config(*, cross_attention_dim: int, attention_head_dim: Any, linear: bool | None,
                    diffusers_version: str, in_channels: int = 9) -> dict[str, Any]:
    """SD-1.5 / SD-2 inpainting UNet config keys (tiny: two levels, 32 / 64 channels)."""
    cfg = {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": diffusers_version,
        "act_fn": "silu",
        "attention_head_dim": attention_head_dim,
        "block_out_channels": [32, 64],
        "center_input_sample": False,
        "cross_attention_dim": cross_attention_dim,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "downsample_padding": 1,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": in_channels,
        "layers_per_block": 1,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "out_channels": 4,
        "sample_size": 64,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    }
    if linear is not None:  # SD-2 configs carry these keys, SD-1 configs do not
        cfg.update({"dual_cross_attention": False, "use_linear_projection": linear})
    return cfg


# ------------------------------------------------------------------------------------------- VAE
def write_vae(folder: Path, *, down_factor: int, weights: str, seed: int, scaling_factor: float | None = None,
              force_upcast: bool | None = None, sample_size: int = 512) -> None:
    """``AutoencoderKL`` downsampling by ``down_factor`` (2 ** (blocks - 1): 4 -> 3 blocks, 8 -> 4)."""
    import torch
    from diffusers import AutoencoderKL

    blocks = {2: 2, 4: 3, 8: 4}[down_factor]
    cfg: dict[str, Any] = {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.6.0",
        "act_fn": "silu",
        "block_out_channels": [16, 32, 32, 32][:blocks],
        "down_block_types": ["DownEncoderBlock2D"] * blocks,
        "in_channels": 3,
        "latent_channels": 4,
        "layers_per_block": 1,
        "norm_num_groups": 16,
        "out_channels": 3,
        "sample_size": sample_size,
        "up_block_types": ["UpDecoderBlock2D"] * blocks,
    }
    if scaling_factor is not None:
        cfg["scaling_factor"] = scaling_factor
    if force_upcast is not None:
        cfg["force_upcast"] = force_upcast
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", cfg)
    torch.manual_seed(seed)
    model = AutoencoderKL.from_config(AutoencoderKL.load_config(folder))
    _save_weights(model, folder, "diffusion_pytorch_model", weights)


# ------------------------------------------------------------------------------------- pipelines
def build_sd15_inpainting(folder: str | Path, *, vae_factor: int = 8, weights: str = "safetensors",
                          cross_attention_dim: int | None = None, text_to_image: bool = False, seed: int = 0) -> Path:
    """runwayml/stable-diffusion-inpainting, tiny. ``cross_attention_dim`` (default: the text
    encoder's width) lets a test build a UNet that does not fit its text encoder;
    ``text_to_image`` writes the text-to-image checkpoint instead (stable-diffusion-v1-5:
    ``StableDiffusionPipeline``, a 4-channel UNet)."""
    folder = Path(folder)
    hidden = 32
    _write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionPipeline" if text_to_image else "StableDiffusionInpaintPipeline",
        "_diffusers_version": "0.6.0",
        "feature_extractor": [None, None],
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "PNDMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    _write_json(folder / "scheduler" / "scheduler_config.json", {
        "_class_name": "PNDMScheduler",
        "_diffusers_version": "0.6.0",
        **_BETAS,
        "num_train_timesteps": 1000,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
        "clip_sample": False,
    })
    write_clip_tokenizer(folder / "tokenizer")
    write_text_encoder(folder / "text_encoder", folder / "tokenizer", hidden=hidden, heads=4, layers=2,
                       act="quick_gelu", projection_dim=hidden, with_projection=False, pad_token=_EOS,
                       weights=weights, seed=seed + 1)
    write_unet(folder / "unet", _sd_unet_config(cross_attention_dim=cross_attention_dim or hidden,
                                                attention_head_dim=8, linear=None, diffusers_version="0.6.0",
                                                in_channels=4 if text_to_image else 9),
               weights, seed + 2)
    write_vae(folder / "vae", down_factor=vae_factor, weights=weights, seed=seed + 3, sample_size=512)
    return folder


def build_sd2_inpainting(folder: str | Path, *, weights: str = "safetensors", seed: int = 0) -> Path:
    """stabilityai/stable-diffusion-2-inpainting, tiny (linear projections, per-block head counts, DDIM)."""
    folder = Path(folder)
    hidden = 48
    _write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionInpaintPipeline",
        "_diffusers_version": "0.8.0",
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    _write_json(folder / "feature_extractor" / "preprocessor_config.json", {
        "crop_size": 224, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
        "do_resize": True, "feature_extractor_type": "CLIPFeatureExtractor",
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "resample": 3, "size": 224,
    })
    _write_json(folder / "scheduler" / "scheduler_config.json", {
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.8.0",
        **_BETAS,
        "clip_sample": False,
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "trained_betas": None,
    })
    write_clip_tokenizer(folder / "tokenizer", pad_token="!")
    write_text_encoder(folder / "text_encoder", folder / "tokenizer", hidden=hidden, heads=4, layers=2,
                       act="gelu", projection_dim=32, with_projection=False, pad_token="!",
                       weights=weights, seed=seed + 1)
    write_unet(folder / "unet", _sd_unet_config(cross_attention_dim=hidden, attention_head_dim=[2, 4],
                                                linear=True, diffusers_version="0.8.0"), weights, seed + 2)
    write_vae(folder / "vae", down_factor=8, weights=weights, seed=seed + 3, sample_size=512)
    return folder


def build_sdxl_inpainting(folder: str | Path, *, weights: str = "safetensors", seed: int = 0) -> Path:
    """diffusers/stable-diffusion-xl-1.0-inpainting-0.1, tiny."""
    folder = Path(folder)
    h1, h2, proj, time_dim = 32, 64, 32, 8
    _write_json(folder / "model_index.json", {
        "_class_name": "StableDiffusionXLInpaintPipeline",
        "_diffusers_version": "0.21.0.dev0",
        "force_zeros_for_empty_prompt": True,
        "requires_aesthetics_score": False,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    })
    _write_json(folder / "scheduler" / "scheduler_config.json", {
        "_class_name": "EulerDiscreteScheduler",
        "_diffusers_version": "0.21.0.dev0",
        **_BETAS,
        "clip_sample": False,
        "interpolation_type": "linear",
        "num_train_timesteps": 1000,
        "prediction_type": "epsilon",
        "sample_max_value": 1.0,
        "set_alpha_to_one": False,
        "skip_prk_steps": True,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": None,
        "use_karras_sigmas": False,
    })
    write_clip_tokenizer(folder / "tokenizer")
    write_clip_tokenizer(folder / "tokenizer_2", pad_token="!")
    write_text_encoder(folder / "text_encoder", folder / "tokenizer", hidden=h1, heads=4, layers=2,
                       act="quick_gelu", projection_dim=h1, with_projection=False, pad_token=_EOS,
                       weights=weights, seed=seed + 1)
    write_text_encoder(folder / "text_encoder_2", folder / "tokenizer_2", hidden=h2, heads=4, layers=2,
                       act="gelu", projection_dim=proj, with_projection=True, pad_token="!",
                       weights=weights, seed=seed + 2)
    write_unet(folder / "unet", {
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.21.0.dev0",
        "act_fn": "silu",
        "addition_embed_type": "text_time",
        "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": time_dim,
        "attention_head_dim": [2, 4],
        "block_out_channels": [32, 64],
        "center_input_sample": False,
        "class_embed_type": None,
        "class_embeddings_concat": False,
        "conv_in_kernel": 3,
        "conv_out_kernel": 3,
        "cross_attention_dim": h1 + h2,  # both encoders' penultimate hidden states, concatenated
        "cross_attention_norm": None,
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "downsample_padding": 1,
        "dual_cross_attention": False,
        "encoder_hid_dim": None,
        "encoder_hid_dim_type": None,
        "flip_sin_to_cos": True,
        "freq_shift": 0,
        "in_channels": 9,
        "layers_per_block": 1,
        "mid_block_only_cross_attention": None,
        "mid_block_scale_factor": 1,
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "norm_eps": 1e-05,
        "norm_num_groups": 32,
        "num_attention_heads": None,
        "num_class_embeds": None,
        "only_cross_attention": False,
        "out_channels": 4,
        "projection_class_embeddings_input_dim": 6 * time_dim + proj,  # 6 size ids + pooled text
        "resnet_out_scale_factor": 1.0,
        "resnet_skip_time_act": False,
        "resnet_time_scale_shift": "default",
        "sample_size": 128,
        "time_cond_proj_dim": None,
        "time_embedding_act_fn": None,
        "time_embedding_dim": None,
        "time_embedding_type": "positional",
        "timestep_post_act": None,
        "transformer_layers_per_block": [1, 2],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "upcast_attention": None,
        "use_linear_projection": True,
    }, weights, seed + 3)
    write_vae(folder / "vae", down_factor=8, weights=weights, seed=seed + 4, scaling_factor=0.13025,
              force_upcast=True, sample_size=1024)
    return folder
