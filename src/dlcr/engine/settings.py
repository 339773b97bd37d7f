"""What a training run reads, as the engine's own small frozen dataclasses (no configuration object).

:func:`~dlcr.engine.build.build_training`, :class:`~dlcr.engine.trainer.Trainer` and
:func:`~dlcr.engine.trainer.train` take a :class:`TrainSettings`; the CLI and the demo make one from
their configuration with :func:`dlcr.config_args.train_settings`. Each part is named by what it
sets up:

* :class:`ModelSettings`: the re-id model to build;
* :class:`OptimSettings`: the two Adam optimisers and their step schedules;
* :class:`LossSettings`: the loss terms and their weights, and the epoch CAL's losses start at;
* :class:`SamplerSettings`: how batches are drawn (and whether generated images are used);
* :class:`InputSettings`: the training images' size, augmentation, caching and loader workers;
* :class:`RunSettings`: epochs, evaluation interval, seed and the device options (AMP, cuDNN, ...).

Two fields are opaque records of the run's full configuration, written out as they are given:
``record`` (the mapping every checkpoint saves under ``config``; ``dlcr evaluate`` reads the model
and input keys back from it) and ``config_yaml`` (the text of ``<run>/config.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dlcr.engine.evaluate import EvalSettings


@dataclass(frozen=True)
class ModelSettings:
    name: str
    pretrained: str | None  # "imagenet", a weights file, or None (random init)
    widths: tuple[int, ...] | None = None  # small_resnet's stage widths
    backbone: str | None = None  # e.g. "timm:resnet18"; None: the architecture's own


@dataclass(frozen=True)
class OptimSettings:
    lr: float
    weight_decay: float
    clothes_lr: float
    milestones: tuple[int, ...]
    gamma: float
    clothes_lr_decay: bool  # False (CAL): the clothes classifier keeps clothes_lr for the whole run


@dataclass(frozen=True)
class LossSettings:
    label_smooth: float
    triplet_margin: float
    triplet_metric: str
    triplet_weight: float
    clothes_scale: float
    cal_epsilon: float
    cal_start_epoch: int
    cal_weight: float


@dataclass(frozen=True)
class SamplerSettings:
    mode: str  # "none", "concat" or "paired"
    batch_size: int  # over all ranks
    num_instances: int
    batching: str
    schedule: str
    num_partitions: int
    progressive_every: int
    generated_clothes_label: str
    concat_budget: str


@dataclass(frozen=True)
class InputSettings:
    height: int
    width: int
    workers: int
    seq_len: int
    crop: str
    crop_prob: float
    flip_prob: float
    pad: int | None  # crop="pad" only; None: 10 px at 384 high, scaled to height
    random_erasing: float
    erasing: str
    interpolation: str
    cache_images: bool


@dataclass(frozen=True)
class RunSettings:
    epochs: int
    eval_every: int
    seed: int
    amp: bool
    amp_dtype: str
    cudnn_deterministic: bool
    channels_last: bool
    sync_every: int


@dataclass(frozen=True)
class TrainSettings:
    """Everything one training run reads, plus the two records of its configuration."""

    model: ModelSettings
    optim: OptimSettings
    loss: LossSettings
    sampler: SamplerSettings
    input: InputSettings
    run: RunSettings
    eval: EvalSettings  # the periodic evaluation during training
    record: Mapping[str, Any]  # saved as each checkpoint's ``config``
    config_yaml: str  # written to <out_dir>/config.yaml
