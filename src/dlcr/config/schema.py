"""The configuration's schemas: one frozen dataclass per section (:class:`Config` holds them all), and
the value range of every numeric key (:data:`RULES`). :mod:`dlcr.config` re-exports the names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# --------------------------------------------------------------------------------------------
# Schemas


@dataclass(frozen=True)
class DataConfig:
    name: str = "synthcc"
    root: str = "data"
    csv: str | None = None  # dataset `custom`: the CSV (path,pid,camid,clothes,split) describing the images
    # a samples.parquet written by `dlcr data prepare`: the stages read the dataset from it (no re-parse)
    samples: str | None = None
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
    # null: the architecture's own backbone; "timm:<name>": any timm model as the feature extractor
    backbone: str | None = None


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
    # k-reciprocal re-ranking (Zhong et al. 2017) as extra results (`dlcr evaluate --rerank`): its
    # k1 (neighbourhood), k2 (query expansion) and lambda (weight of the original distance)
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3


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
                 "max_memory_gb": POSITIVE, "rerank_k1": POSITIVE_INT, "rerank_k2": POSITIVE_INT,
                 "rerank_lambda": PROBABILITY},
}
