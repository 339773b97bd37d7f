"""A tiny Stable-Diffusion inpainting pipeline built offline, for tests and ``--backend tiny``.

The pipeline has the exact layout of an SD-1.5/2 inpainting checkpoint (a UNet with 9 input
channels, an ``AutoencoderKL``, a CLIP text encoder with its BPE tokenizer, a scheduler) but every
component is small and randomly initialised (3.6 M parameters, half of them the 49,408-token
embedding table; the VAE downsamples by 8 like SD's). It is written with ``save_pretrained`` into a folder
and loaded back through ``AutoPipelineForInpainting.from_pretrained(folder)``, exactly as a user's
model folder would be, so the tiny backend exercises the real diffusers code path. (Fixtures laid
out like the public SD-1.5 / SD-2 / SDXL checkpoints, with hand-written configs, are in
``tests/public_formats/sd.py``.)

Nothing is downloaded. The tokenizer is OpenAI's real CLIP BPE (49408 tokens, 77-token context) when
``open-clip-torch`` is installed: its wheel ships the BPE merges file (``bpe_simple_vocab_16e6.txt.gz``),
which is located (never imported) and converted into ``vocab.json`` / ``merges.txt``; install it with
``pip install --no-deps open-clip-torch==3.3.0``. Without it, a small CLIP-style BPE is trained here
(with the ``tokenizers`` library) on a clothing word list, so any text still tokenizes. The cached
folder name records which tokenizer the pipeline has.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlcr.io.atomic import umask_mode

TINY_VERSION = "v3"  # v2: the real CLIP tokenizer when open-clip-torch is installed; v3: SD latent geometry (1/8)
TINY_DIRNAME = f"tiny-sd-inpaint-{TINY_VERSION}"

#: Where OpenAI's CLIP BPE merges ship: a data file of the ``open_clip`` package (open-clip-torch).
CLIP_BPE_PACKAGE = "open_clip"
CLIP_BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SIZE = 49408  # 256 byte symbols x 2 (with and without </w>) + 48894 merges + 2 special tokens
CLIP_CONTEXT = 77

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


def clip_bpe_path() -> Path | None:
    """OpenAI's CLIP BPE merges file inside the installed ``open_clip`` package, or None.

    The package is located, not imported (importing it needs timm, ftfy and more, none of which this
    project uses).
    """
    from dlcr.utils.packages import package_file

    return package_file(CLIP_BPE_PACKAGE, CLIP_BPE_FILE)


def byte_symbols() -> list[str]:
    """The 256 printable stand-ins of the bytes 0..255 used by byte-level BPEs (GPT-2 / CLIP).

    Bytes that are printable Latin-1 characters stand for themselves; the others (control
    characters, space, a few Latin-1 gaps) take the code points from 256 upwards, in byte order.
    The list is indexed by byte value.
    """
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    kept = set(keep)
    out, extra = [], 0
    for b in range(256):
        if b in kept:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def write_clip_vocab_from_bpe(bpe_file: str | os.PathLike, folder: str | os.PathLike) -> tuple[Path, Path]:
    """Write CLIP's ``vocab.json`` + ``merges.txt`` from open_clip's gzipped BPE merges file.

    The ids are laid out as CLIP lays them out: the 256 byte symbols (the printable ones first, then
    the remapped ones, each group in byte order), the same 256 with ``</w>``, one token per merge
    (48894), then ``<|startoftext|>`` and ``<|endoftext|>``: 49408 ids.
    """
    with gzip.open(bpe_file, "rt", encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    n_merges = CLIP_VOCAB_SIZE - 2 * 256 - 2
    merges = lines[1 : 1 + n_merges]  # line 0 is a version header
    if len(merges) != n_merges or any(len(m.split()) != 2 for m in merges):
        raise ValueError(f"{bpe_file} is not CLIP's BPE merges file (expected {n_merges} merge lines)")
    sym = byte_symbols()
    # CLIP orders the byte symbols by their byte value within the printable ranges first, then the rest
    printable = [s for s in sym if ord(s) < 256]
    ordered = printable + [s for s in sym if ord(s) >= 256]
    tokens = ordered + [s + "</w>" for s in ordered] + ["".join(m.split()) for m in merges] + [_BOS, _EOS]
    vocab = {t: i for i, t in enumerate(tokens)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"{bpe_file}: built {len(vocab)} distinct tokens, expected {CLIP_VOCAB_SIZE}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    return vocab_path, merges_path


def tiny_tokenizer_kind() -> str:
    """``"clip"`` when the real CLIP BPE is installed (open-clip-torch), else ``"local"``."""
    return "clip" if clip_bpe_path() is not None else "local"


def build_tiny_tokenizer(kind: str | None = None) -> Any:
    """The tiny pipeline's ``CLIPTokenizer``: the real CLIP BPE (``"clip"``, 77 tokens) or the locally
    trained one (``"local"``, 32 tokens); ``None`` picks ``"clip"`` when available."""
    from transformers import CLIPTokenizer

    kind = kind or tiny_tokenizer_kind()
    with tempfile.TemporaryDirectory(prefix="dlcr-tiny-tok-") as tok_dir:
        if kind == "clip":
            bpe = clip_bpe_path()
            if bpe is None:
                raise FileNotFoundError(
                    "open-clip-torch's CLIP vocabulary is not installed (pip install --no-deps open-clip-torch==3.3.0)"
                )
            write_clip_vocab_from_bpe(bpe, tok_dir)
            return CLIPTokenizer.from_pretrained(tok_dir, model_max_length=CLIP_CONTEXT)
        if kind != "local":
            raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'clip' or 'local'")
        write_tiny_clip_vocab(tok_dir)
        return CLIPTokenizer.from_pretrained(tok_dir, model_max_length=32)


def build_tiny_inpaint_pipeline(folder: str | os.PathLike, seed: int = 0, tokenizer: str | None = None) -> Path:
    """Build the tiny pipeline from configs and ``save_pretrained`` it into ``folder``.

    ``tokenizer``: ``"clip"`` (real CLIP BPE), ``"local"`` (trained here) or None (``"clip"`` when
    open-clip-torch is installed). Everything is deterministic in ``seed``. Returns ``folder``.
    """
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    folder = Path(folder)
    tokenizer = build_tiny_tokenizer(tokenizer)
    max_length = int(tokenizer.model_max_length)

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
    # SD's geometry: four encoder blocks, so latents are 1/8 of the image side (vae_scale_factor 8, as
    # in every SD-1.5/2 checkpoint; 768x256 -> 96x32). Channels keep SD's 1:2:4:4 proportions.
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=64,
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


def cached_build(
    dirname: str, marker: str, build: Callable[..., Path], cache_dir: str | os.PathLike | None, seed: int
) -> Path:
    """``<cache_dir>/<dirname>[-s<seed>]``, built by ``build(folder, seed=seed)`` on first use.

    ``marker`` is a file the finished build holds. The build goes to a temp folder beside the target
    and is renamed into place, so concurrent callers (or a killed build) never leave a half-written
    model folder behind.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / (dirname if seed == 0 else f"{dirname}-s{seed}")
    if (target / marker).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".building", dir=root))
    try:
        build(tmp, seed=seed)
        tmp.chmod(umask_mode(0o777))  # mkdtemp's 0700 would hide a shared cache from other users
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            if not (target / marker).is_file():
                raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(tmp)
    return target


def tiny_pipeline_path(cache_dir: str | os.PathLike | None = None, seed: int = 0) -> Path:
    """Return the folder of the tiny pipeline, building it on first use (see :func:`cached_build`)."""
    kind = tiny_tokenizer_kind()  # a pipeline built before open-clip-torch was installed is not reused
    return cached_build(f"{TINY_DIRNAME}-{kind}", "model_index.json",
                        functools.partial(build_tiny_inpaint_pipeline, tokenizer=kind), cache_dir, seed)
