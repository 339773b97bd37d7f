"""A tiny Stable-Diffusion inpainting pipeline built offline, for tests and ``--backend tiny``.

The pipeline has the exact layout of an SD-1.5/2 inpainting checkpoint (a UNet with 9 input
channels, an ``AutoencoderKL``, a CLIP text encoder with its BPE tokenizer, a scheduler) but every
component is a few kilobytes of random weights. It is written with ``save_pretrained`` into a folder
and loaded back through ``StableDiffusionInpaintPipeline.from_pretrained(folder)``, exactly as a
user's model folder would be, so the tiny backend exercises the real diffusers code path.

Nothing is downloaded: the tokenizer's ``vocab.json`` / ``merges.txt`` are trained here (with the
``tokenizers`` library) on a small clothing word list, so any text tokenizes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

TINY_VERSION = "v1"
TINY_DIRNAME = f"tiny-sd-inpaint-{TINY_VERSION}"

# Words the tiny tokenizer knows as single tokens (everything else falls back to byte symbols).
_WORDS = tuple(
    "a person wearing with and the of in on shirt t-shirt tshirt blouse sweater hoodie jacket coat "  # noqa: SIM905
    "dress skirt pants jeans trousers shorts leggings shoes sneakers boots sandals socks "
    "red orange yellow green blue purple pink brown black white gray grey beige navy khaki "
    "striped checked plaid dotted polka plain floral long short sleeve sleeveless".split()
)


_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"
# CLIP's pre-tokenisation pattern: special tokens, common English contractions, letter runs, single
# digits, runs of other non-space characters.
_CLIP_SPLIT = (
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
)


def default_cache_dir() -> Path:
    """Where built tiny models live: ``$DLCR_CACHE_DIR`` or ``~/.cache/dlcr``."""
    env = os.environ.get("DLCR_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "dlcr"


def write_tiny_clip_vocab(folder: str | os.PathLike, words: tuple[str, ...] = _WORDS) -> tuple[Path, Path]:
    """Train a small CLIP-style byte-level BPE on ``words``; write ``vocab.json`` + ``merges.txt``.

    The model uses CLIP's conventions (lower-casing, CLIP's word-splitting pattern, byte-level
    symbols, a ``</w>`` end-of-word suffix, ``<|startoftext|>`` / ``<|endoftext|>``). Every byte
    symbol is in the vocabulary alone and with ``</w>``, so any text tokenizes without unknowns.
    """
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token=_EOS))
    tok.normalizer = normalizers.Sequence(
        [normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()]
    )
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_CLIP_SPLIT), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    trainer = trainers.BpeTrainer(
        vocab_size=4096,
        min_frequency=1,
        special_tokens=[_BOS, _EOS],
        initial_alphabet=alphabet,
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    tok.train_from_iterator([" ".join(words)], trainer)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = (Path(p) for p in tok.model.save(str(folder)))
    vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
    for sym in sorted(alphabet):
        vocab.setdefault(sym, len(vocab))
        vocab.setdefault(sym + "</w>", len(vocab))
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return vocab_path, merges_path


def build_tiny_inpaint_pipeline(folder: str | os.PathLike, seed: int = 0, max_length: int = 32) -> Path:
    """Build the tiny pipeline from configs and ``save_pretrained`` it into ``folder``.

    Everything is deterministic in ``seed``. Returns ``folder``.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = Path(folder)
    with tempfile.TemporaryDirectory(prefix="dlcr-tiny-tok-") as tok_dir:
        write_tiny_clip_vocab(tok_dir)
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir, model_max_length=max_length)

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=9,  # 4 noisy latents + 1 mask + 4 masked-image latents
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=32,
    )
    torch.manual_seed(seed + 2)
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        projection_dim=32,
    )
    text_encoder = CLIPTextModel(text_config)
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_pipeline_path(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Return the folder of the tiny pipeline, building it on first use.

    The build goes to a temp folder beside the target and is renamed into place, so concurrent
    callers (or a killed build) never leave a half-written model folder behind.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / (TINY_DIRNAME if seed == 0 else f"{TINY_DIRNAME}-s{seed}")
    if (target / "model_index.json").is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".building", dir=root))
    try:
        build_tiny_inpaint_pipeline(tmp, seed=seed)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / "model_index.json").is_file():
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return target
