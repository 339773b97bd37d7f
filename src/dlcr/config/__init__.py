"""Configuration: frozen dataclass schemas, YAML files with ``_base_`` inheritance, ``--set`` overrides.

Only the CLI reads configuration; library functions take plain arguments (docs/design.md §1).

* A YAML file may name one or more bases with ``_base_: other.yaml`` (or a list). Bases are
  resolved relative to the file, then among the packaged configs (``dlcr/configs``); they are merged
  in order and the file's own keys win. Mappings merge key by key; everything else is replaced.
* ``--set a.b=c`` overrides one key; the value is parsed as YAML (``--set train.epochs=10``,
  ``--set data.size=[128,64]``, ``--set model.pretrained=null``).
* Building the schema checks every key and type. A misspelt key or a wrong type is a one-line
  :class:`~dlcr.errors.ConfigError` naming the full key and suggesting the closest valid one.
* Every float must be finite, and every number meets its key's range in :data:`RULES` (one table for
  the whole schema: positive sizes, batch sizes and epochs, non-negative workers, probabilities in
  [0, 1], ...), so a bad value is refused when the config is loaded, not deep inside a run.

The packaged configs live inside the package (``src/dlcr/configs``) rather than at the repo root, so
that an installed ``dlcr`` finds them without a checkout.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from dlcr.errors import ConfigError, did_you_mean

# --------------------------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True)
class DataConfig:
    name: str = "synthcc"
    root: str = "data"
    csv: str | None = None  # dataset `custom`: the CSV (path,pid,camid,clothes,split) describing the images
    height: int = 384
    width: int = 192
    workers: int = 2
    strict: bool = True  # a file name that breaks the dataset's pattern is an error (False: skip + warn)
    seq_len: int = 4  # frames per clip for video datasets (CCVID)
    # Training augmentation; defaults are CAL's image recipe (docs/recipes.md, dlcr.data.transforms).
    # crop: "cal" = with p=crop_prob enlarge 1.125x and crop back at a random position (CAL
    # RandomCroping); "pad" = BoT's zero-pad `pad` px + random crop (not CAL: an ablation option);
    # "none" = no crop (CAL's video recipe).
    crop: Literal["cal", "pad", "none"] = "cal"
    crop_prob: float = 0.5  # CAL AUG.RC_PROB
    flip_prob: float = 0.5  # CAL AUG.RF_PROB
    pad: int | None = None  # crop="pad" only; None: BoT's 10 px at 384 high, scaled to `height`
    random_erasing: float = 0.5  # probability (CAL AUG.RE_PROB; 0 in CAL's video recipe)
    # "cal": CAL's RandomErasing (uniform aspect, 100 tries, fill 0.4914/0.4822/0.4465 after
    # normalisation); "torchvision": v2.RandomErasing (log-uniform aspect, 10 tries, fill 0)
    erasing: Literal["cal", "torchvision"] = "cal"
    interpolation: Literal["bilinear", "bicubic"] = "bilinear"  # resize; CAL's video recipe: bicubic
    cache_images: bool = False  # keep decoded, resized training images in RAM (small datasets)


@dataclass(frozen=True)
class ModelConfig:
    name: str = "cal_resnet50"
    pretrained: str | None = "imagenet"  # "imagenet", a local weights file, or null for random init
    # small_resnet only: channels of its four stages (null: (32, 64, 128, 256)); the demo's narrower net
    widths: tuple[int, ...] | None = None


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (20, 40)
    gamma: float = 0.1
    clothes_lr: float = 3.5e-4
    # CAL builds its MultiStepLR for the identity optimiser only: the clothes classifier keeps
    # clothes_lr for the whole run. True decays it at `milestones` too (not CAL).
    clothes_lr_decay: bool = False


@dataclass(frozen=True)
class LossConfig:
    label_smooth: float = 0.1
    triplet_margin: float = 0.3
    triplet_weight: float = 0.0  # CAL LOSS.PAIR_LOSS_WEIGHT: 0, except LaST (1.0, configs/last.yaml)
    # CAL's TripletLoss: 1 - cosine of L2-normalised features; "euclidean": BoT's distance (not CAL)
    triplet_metric: Literal["cosine", "euclidean"] = "cosine"
    clothes_scale: float = 16.0
    cal_epsilon: float = 0.1
    cal_start_epoch: int = 25
    cal_weight: float = 1.0


@dataclass(frozen=True)
class SamplerConfig:
    batch_size: int = 32  # real images per batch (paired mode adds as many generated ones)
    num_instances: int = 8  # K images per identity in a P×K batch (CAL DATA.NUM_INSTANCES)
    # "cal": CAL's DistributedRandomIdentitySampler (all K-chunks shuffled, P consecutive chunks per
    # batch, an identity may fill two); "distinct": P distinct identities per batch (BoT, not CAL)
    batching: Literal["cal", "distinct"] = "cal"
    mode: Literal["none", "concat", "paired"] = "paired"
    # "official": the released DLCR curriculum (CL.THRESHOLDS 5/10/15, CL.PERCENTAGES .25/.5/.75 of
    # each image's variants); "progressive": planner partitions, one more every `progressive_every`
    # epochs (the demo's, scaled to its short runs); "all": no curriculum
    schedule: Literal["progressive", "official", "all"] = "official"
    num_partitions: int = 4
    progressive_every: int = 5
    generated_clothes_label: Literal["none", "target"] = "none"
    # concat ablation: "paired" = the same images per step (2 × batch_size) and steps per epoch as the
    # paired sampler (equal compute); "full" = a P×K pass over the whole real + generated pool.
    concat_budget: Literal["paired", "full"] = "paired"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 60
    eval_every: int = 5
    seed: int = 1  # CAL SEED
    amp: bool = False  # CAL TRAIN.AMP (its script.sh adds --amp for DeepChange and LaST only)
    # CAL's set_seed: cudnn.deterministic = True, cudnn.benchmark = False (GPU only; false lets cuDNN
    # pick its fastest, non-deterministic kernels)
    cudnn_deterministic: bool = True
    # autocast dtype of train.amp (CUDA only): float16 scales the loss with a GradScaler (CAL's AMP);
    # bfloat16 has float32's exponent range and needs no scaler (A100 / H100 / H200)
    amp_dtype: Literal["float16", "bfloat16"] = "float16"
    # model and input batches in torch.channels_last memory format (CUDA only; faster convolutions
    # under AMP on tensor-core GPUs); off keeps the CPU path and today's GPU path as they are
    channels_last: bool = False
    # steps between two host syncs of the running losses (the NaN-loss check included); 0: once at
    # the end of the epoch. The per-epoch averages do not depend on it.
    sync_every: int = 0
    out_dir: str = "runs"
    name: str = "default"


@dataclass(frozen=True)
class GenerateConfig:
    parser: str = "schp"
    parser_model: str | None = None
    # {class name: LIP id}: overrides the built-in name mapping of the `hf` and `schp` parsers
    parser_label_map: dict[str, int] | None = None
    captioner: str = "rule"
    captioner_model: str | None = None
    captioner_pad: bool = True  # hf: pad to the processor's crop shape with its mean colour (LLaVA-1.5)
    summarizer: str = "vote"
    summarizer_model: str | None = None
    backend: str = "diffusers"
    model: str | None = "runwayml/stable-diffusion-inpainting"
    scheduler: str | None = "ddim"  # null: keep the checkpoint's own scheduler
    k: int = 10
    steps: int = 50
    height: int = 768
    width: int = 256
    guidance_scale: float = 7.5
    negative_prompt: str = ""
    batch_size: int = 4
    # UNet/VAE calls of exactly micro_batch jobs, so a job's image does not depend on its batch (False:
    # one call per batch, faster for big batches, +-1-2 grey levels between batch sizes)
    batch_invariant: bool = True
    micro_batch: int = 4
    seed: int = 0
    allow_same_person: bool = False
    # what may be repainted: "clothes" (the paper's ID-preserving mask) or "person" (every non-background
    # label, identity cues included: Table A1's "standard diffusion" ablation); in the generation signature
    mask_region: Literal["clothes", "person"] = "clothes"
    # target prompts: "dataset" (the described outfits of other training clothes, the paper) or
    # "vocabulary" (random garment-vocabulary prompts, Table A3 row 1); in the plan signature
    prompt_source: Literal["dataset", "vocabulary"] = "dataset"
    query_variants: int = 6
    query_steps: int = 10
    trust_remote_code: bool = False
    # optional discriminator guidance (paper suppl. §12), off unless a checkpoint is named
    discriminator: str | None = None
    guidance_weight: float = 1.0
    guidance_min_t: int = 200
    # diffusers backend speed-ups (CUDA; off by default, and only recorded in the generation
    # signature when set): the UNet in channels_last memory format, and torch.compile of the UNet
    # (false, true or a torch.compile mode such as "max-autotune"; the shapes are static: the UNet
    # sees calls of exactly micro_batch jobs at the two fixed sizes of training and query variants)
    channels_last: bool = False
    compile: bool | Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = False


@dataclass(frozen=True)
class EvalConfig:
    batch_size: int = 128
    flip: bool = True
    refine: bool = False
    refine_l: int = 6
    refine_m: int = 5
    refine_variant: Literal["paper", "official"] = "paper"
    # GiB for the per-block arrays of one query/gallery pair: queries are scored (and refined) a block
    # at a time within it, with results identical to the whole matrix at once (LaST: 10k x 125k)
    max_memory_gb: float = 4.0
    # feature extraction in half precision on CUDA (float16 autocast; the features are still
    # float32 after normalisation); ignored on the CPU
    half: bool = False


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------------------------
# Value ranges: one table for every numeric key of the schema


@dataclass(frozen=True)
class Range:
    """Allowed values of a number (and of each item of a list / mapping of numbers): ``lo`` <= v <= ``hi``
    (``lo_open``: ``lo`` < v, ``hi_open``: v < ``hi``); ``None``: unbounded on that side."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def allows(self, v: float) -> bool:
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def describe(self, integer: bool = False) -> str:
        lo = "" if self.lo is None else f"{'>' if self.lo_open else '>='} {self.lo:g}"
        hi = "" if self.hi is None else f"{'<' if self.hi_open else '<='} {self.hi:g}"
        return ("an integer " if integer else "a number ") + " and ".join(x for x in (lo, hi) if x)


POSITIVE_INT = Range(lo=1)  # sizes, batch sizes, counts, epochs
NON_NEGATIVE = Range(lo=0)  # workers, seeds, weights, margins; 0 means "off" where the key says so
POSITIVE = Range(lo=0, lo_open=True)  # learning rates, scales
PROBABILITY = Range(lo=0, hi=1)

# Section schema -> {key: range}. Every int / float key (or list / mapping of them) of the schema is
# listed here; tests/reliability/test_config_sweep.py fails for one that is not.
RULES: dict[type, dict[str, Range]] = {
    DataConfig: {"height": POSITIVE_INT, "width": POSITIVE_INT, "workers": NON_NEGATIVE,
                 "seq_len": POSITIVE_INT, "pad": NON_NEGATIVE, "random_erasing": PROBABILITY,
                 "crop_prob": PROBABILITY, "flip_prob": PROBABILITY},
    OptimConfig: {"lr": POSITIVE, "weight_decay": NON_NEGATIVE, "milestones": POSITIVE_INT,
                  "gamma": POSITIVE, "clothes_lr": POSITIVE},
    LossConfig: {"label_smooth": Range(lo=0, hi=1, hi_open=True), "triplet_margin": NON_NEGATIVE,
                 "triplet_weight": NON_NEGATIVE, "clothes_scale": POSITIVE, "cal_epsilon": PROBABILITY,
                 "cal_start_epoch": NON_NEGATIVE, "cal_weight": NON_NEGATIVE},
    ModelConfig: {"widths": POSITIVE_INT},
    SamplerConfig: {"batch_size": POSITIVE_INT, "num_instances": POSITIVE_INT, "num_partitions": POSITIVE_INT,
                    "progressive_every": POSITIVE_INT},
    TrainConfig: {"epochs": POSITIVE_INT, "eval_every": NON_NEGATIVE, "seed": NON_NEGATIVE,
                  "sync_every": NON_NEGATIVE},
    GenerateConfig: {"parser_label_map": NON_NEGATIVE, "k": POSITIVE_INT, "steps": POSITIVE_INT,
                     "height": POSITIVE_INT, "width": POSITIVE_INT, "guidance_scale": NON_NEGATIVE,
                     "batch_size": POSITIVE_INT, "micro_batch": POSITIVE_INT, "seed": NON_NEGATIVE,
                     "query_variants": POSITIVE_INT, "query_steps": POSITIVE_INT,
                     "guidance_weight": NON_NEGATIVE, "guidance_min_t": NON_NEGATIVE},
    EvalConfig: {"batch_size": POSITIVE_INT, "refine_l": POSITIVE_INT, "refine_m": POSITIVE_INT,
                 "max_memory_gb": POSITIVE},
}


def _check_range(value: Any, rule: Range, key: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_range(v, rule, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_range(v, rule, f"{key}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool) and not rule.allows(value):
        raise ConfigError(f"config key {key!r} must be {rule.describe(isinstance(value, int))}, got {value!r}")


# --------------------------------------------------------------------------------------------
# Building a schema from a mapping, with key and type checks

T = TypeVar("T")


# Names people reach for that spelling similarity would not find (``generate.inpainter`` is closer to
# ``generate.parser`` by letters, but means ``generate.backend``): last key part -> the schema's name.
KEY_SYNONYMS: dict[str, dict[str, str]] = {
    "generate": {
        "inpainter": "backend", "inpainting": "backend", "generator": "backend", "pipeline": "model",
        "inpainter_model": "model", "inpaint_model": "model", "diffusion_model": "model", "sd_model": "model",
        "num_inference_steps": "steps", "num_steps": "steps", "inference_steps": "steps",
        "cfg": "guidance_scale", "cfg_scale": "guidance_scale", "guidance": "guidance_scale",
        "sampler": "scheduler", "negative": "negative_prompt", "variants": "k", "num_variants": "k",
        "segmenter": "parser", "human_parser": "parser", "parser_checkpoint": "parser_model",
        "schp_checkpoint": "parser_model", "label_map": "parser_label_map",
        "vlm": "captioner", "vlm_model": "captioner_model", "llm": "summarizer", "llm_model": "summarizer_model",
        "query_k": "query_variants", "l": "query_variants",
    },
    "eval": {"l": "refine_l", "m": "refine_m", "rerank_l": "refine_l"},
    "train": {"epoch": "epochs", "num_epochs": "epochs", "max_epochs": "epochs"},
    "sampler": {"k": "num_instances", "instances": "num_instances"},
}


def _suggest(key: str, options: list[str]) -> str:
    section, _, leaf = key.rpartition(".")
    synonym = KEY_SYNONYMS.get(section, {}).get(leaf.lower())
    if synonym and f"{section}.{synonym}" in options:
        return f" (did you mean {section + '.' + synonym!r}?)"
    return did_you_mean(key, options, cutoff=0.5)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad()
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise bad()
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return build(tp, value, prefix=key)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise bad()
        args = typing.get_args(tp)
        item_t = args[0] if args else Any
        items = [_coerce(v, item_t, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            raise bad() from None
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if value is None and tp is type(None):
        return None
    raise bad()


def build(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a (partial) mapping, checking keys and types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    for k in data:
        if k not in names:
            full = f"{prefix}.{k}" if prefix else str(k)
            options = [f"{prefix}.{n}" if prefix else n for n in names]
            raise ConfigError(f"unknown config key {full!r}{_suggest(full, options)}")
    kwargs = {}
    rules = RULES.get(cls, {})
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            full = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], full)
            if f.name in rules:
                _check_range(kwargs[f.name], rules[f.name], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    """Plain YAML/JSON-ready mapping of a config (tuples become lists)."""
    if is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, tuple | list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


# --------------------------------------------------------------------------------------------
# YAML with _base_ inheritance and --set overrides


def packaged_config_dir() -> Path:
    return Path(str(resources.files("dlcr") / "configs"))


def list_packaged_configs() -> list[str]:
    return sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A YAML path, or the name of a packaged config (``synthcc`` or ``base/train``)."""
    p = Path(name_or_path)
    candidates = []
    if relative_to is not None and not p.is_absolute():
        candidates.append(relative_to / p)
    candidates.append(p)
    stem = p.as_posix().removesuffix(".yaml")
    candidates.append(packaged_config_dir() / f"{stem}.yaml")
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"config {str(name_or_path)!r} not found (a YAML path, or one of the packaged configs: "
        f"{', '.join(list_packaged_configs())})"
    )


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config and merge its ``_base_`` chain."""
    p = resolve_config_path(path)
    rp = p.resolve()
    if rp in _seen:
        raise ConfigError(f"config {p} inherits from itself through _base_")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {p} is not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
                          "save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML in {p}{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {p} must be a mapping at top level")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for b in bases:
        bp = resolve_config_path(b, relative_to=p.parent)
        merged = deep_merge(merged, load_yaml(bp, _seen + (rp,)))
    return deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    out = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node: dict[str, Any] = {}
        cur = node
        parts = key.split(".")
        for part in parts[:-1]:
            cur[part] = {}
            cur = cur[part]
        cur[parts[-1]] = value
        out = deep_merge(out, node)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                schema: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load ``path`` (or the schema's defaults), apply ``--set`` overrides, validate."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return build(schema, data)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

