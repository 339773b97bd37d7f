"""Everything a training run is made of, built from its :class:`~dlcr.engine.settings.TrainSettings`:
:func:`build_training`.

:class:`~dlcr.engine.trainer.Trainer` holds the :class:`TrainingParts` and runs the epochs; this
module builds them, in a fixed order that the run's numbers depend on:

1. the device (``cuda:<local rank>`` under torchrun) and the settings' checks;
2. **the global RNGs are re-seeded** (python, numpy, torch) from ``run.seed + rank``
   (:func:`seed_everything`): every random number drawn afterwards (the model's initial weights
   first) is a function of the seed, so two builds from one set of settings give bit-identical runs;
3. the training pool (real images, then the generated variants), the model, the clothes
   classifier, the optimisers and schedulers, the losses, the sampler, the transforms, the dataset
   and the loader;
4. the DDP wrapper, the cuDNN flags, AMP and the memory format.

Changing this order changes the numbers of every run (the reseeding must come before the model is
built). The data plumbing (:class:`TrainData`, :class:`GeneratedData`, :func:`build_pool`) lives
here too; import it from here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from dlcr.data.loaders import Item, add_generated, items_from_samples, make_dataset
from dlcr.distributed.env import DistEnv, dist_env, resolve_device
from dlcr.engine.settings import InputSettings, SamplerSettings, TrainSettings
from dlcr.errors import ConfigError, DatasetError
from dlcr.types import EvalProtocol, Sample
from dlcr.utils.logging import get_logger

log = get_logger("dlcr.engine.trainer")  # the training messages, under one name


# ----------------------------------------------------------------------------- data plumbing
@dataclass
class TrainData:
    """What the loop needs from a dataset, as plain values."""

    root: Path
    train: list[Sample]
    eval_splits: dict[str, list[Sample]]
    protocols: tuple[EvalProtocol, ...]
    num_pids: int
    num_clothes: int
    pid2clothes: np.ndarray
    video: bool = False
    name: str = ""

    @classmethod
    def from_dataset(cls, ds: Any) -> TrainData:
        splits = {k: list(v) for k, v in ds.splits.items() if k != "train"}
        return cls(root=Path(ds.root), train=list(ds.train), eval_splits=splits,
                   protocols=tuple(ds.protocols), num_pids=int(ds.num_train_pids),
                   num_clothes=int(ds.num_train_clothes), pid2clothes=np.asarray(ds.pid2clothes),
                   video=bool(ds.video), name=str(ds.name))

    def validation_protocols(self) -> tuple[EvalProtocol, ...]:
        """Protocols on a validation split, used for model selection (never the test splits)."""
        if "val_query" in self.eval_splits and "val_gallery" in self.eval_splits:
            return (EvalProtocol("val", "val_query", "val_gallery", "standard"),)
        return ()


@dataclass
class GeneratedData:
    """Generated training variants: the manifest rows and the folder their files are relative to."""

    rows: list[dict[str, Any]]
    root: Path


def build_pool(data: TrainData, generated: GeneratedData | None, *, target_clothes: bool = False
               ) -> tuple[list[Item], list[list[int]]]:
    real = items_from_samples(data.train)
    if generated is None:
        return real, [[] for _ in real]
    key_to_id: dict[str, int] | None = None
    if target_clothes:
        key_to_id = {s.clothes_key: s.clothes_id for s in data.train}
    rows = [r for r in generated.rows if r.get("kind", "train") == "train" and r.get("file")]
    pool, variants = add_generated(real, rows, generated.root, target_clothes=key_to_id)
    n_gen = len(pool) - len(real)
    if n_gen == 0:
        raise DatasetError(f"no generated variant in {generated.root} matches a training image of {data.name!r}")
    log.info("training pool: %d real + %d generated images", len(real), n_gen)
    return pool, variants


def seed_everything(seed: int) -> None:
    """Re-seed the global RNGs of python, numpy and torch (CPU and every CUDA device)."""
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------- the parts
@dataclass
class TrainingParts:
    """The built pieces of one training run, as :class:`~dlcr.engine.trainer.Trainer` holds them."""

    settings: TrainSettings
    data: TrainData
    out_dir: Path
    env: DistEnv
    device: torch.device
    pool: list[Item]
    variants: list[list[int]]
    model: nn.Module
    clothes: nn.Module
    pos_mask: torch.Tensor  # (identities, clothes): which clothes each identity wears
    opt: torch.optim.Optimizer
    opt_c: torch.optim.Optimizer
    sched: Any
    sched_c: Any
    ce: nn.Module
    triplet: nn.Module
    adv: nn.Module
    sampler: Any
    loader_generator: torch.Generator
    loader: DataLoader
    max_steps: int | None  # concat arm at the paired budget: the paired arm's steps per epoch
    forward: nn.Module  # the model, or its DDP wrapper; called with with_logits=True
    amp: bool
    amp_dtype: torch.dtype
    scaler: Any
    channels_last: bool
    sync_every: int


def build_training(settings: TrainSettings, data: TrainData, out_dir: str | os.PathLike, *,
                   generated: GeneratedData | None = None, device: str | None = None,
                   env: DistEnv | None = None) -> TrainingParts:
    """Build the parts of a training run from ``settings``, in the order the module docstring gives.

    Re-seeds the global RNGs (:func:`seed_everything` with ``run.seed + rank``) before the pool and
    the model are built.
    """
    from dlcr.losses import ClothesAdversarialLoss, CrossEntropyLabelSmooth, TripletLoss
    from dlcr.models import ClothesClassifier, create_model, model_options

    env = env or dist_env()
    dev = torch.device(resolve_device(device))
    if env.is_distributed and dev.type == "cuda":
        dev = torch.device("cuda", env.local_rank)
    sc = settings.sampler
    if sc.mode != "none" and generated is None:
        raise ConfigError(f"sampler.mode={sc.mode!r} needs generated images (a manifest); "
                          "use sampler.mode=none to train on the originals only")
    if sc.mode == "none":
        generated = None
    if data.num_pids < 2:
        raise DatasetError("training needs at least 2 identities")

    seed_everything(settings.run.seed + env.rank)  # before anything random is drawn: see the module docstring
    pool, variants = build_pool(data, generated, target_clothes=sc.generated_clothes_label == "target")
    ms = settings.model
    model = create_model(ms.name, data.num_pids, pretrained=ms.pretrained,
                         **model_options(ms.name, ms.widths, backbone=ms.backbone)).to(dev)
    clothes = ClothesClassifier(model.feat_dim, max(1, data.num_clothes), scale=settings.loss.clothes_scale).to(dev)
    pos_mask = torch.as_tensor(data.pid2clothes, dtype=torch.float32, device=dev)

    oc = settings.optim
    opt = torch.optim.Adam(model.parameters(), lr=oc.lr, weight_decay=oc.weight_decay)
    opt_c = torch.optim.Adam(clothes.parameters(), lr=oc.clothes_lr, weight_decay=oc.weight_decay)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(oc.milestones), gamma=oc.gamma)
    # CAL never decays the clothes classifier's rate (optim.clothes_lr_decay=false is its recipe)
    sched_c = torch.optim.lr_scheduler.MultiStepLR(
        opt_c, list(oc.milestones) if oc.clothes_lr_decay else [], gamma=oc.gamma)

    lc = settings.loss
    ce = CrossEntropyLabelSmooth(epsilon=lc.label_smooth)
    triplet = TripletLoss(margin=lc.triplet_margin, metric=lc.triplet_metric)
    adv = ClothesAdversarialLoss(scale=lc.clothes_scale, epsilon=lc.cal_epsilon)

    sampler = make_sampler(sc, settings.run.seed, env, pool, variants)
    loader_generator, loader, max_steps = _make_loader(settings.input, sc, data, env, dev, pool, sampler)
    forward, amp, amp_dtype, scaler, channels_last, sync_every = _device_setup(settings, env, dev, model)
    return TrainingParts(settings=settings, data=data, out_dir=Path(out_dir), env=env, device=dev, pool=pool,
                         variants=variants, model=model, clothes=clothes, pos_mask=pos_mask, opt=opt, opt_c=opt_c,
                         sched=sched, sched_c=sched_c, ce=ce, triplet=triplet, adv=adv, sampler=sampler,
                         loader_generator=loader_generator, loader=loader, max_steps=max_steps, forward=forward,
                         amp=amp, amp_dtype=amp_dtype, scaler=scaler, channels_last=channels_last,
                         sync_every=sync_every)


def _make_loader(d: InputSettings, sc: SamplerSettings, data: TrainData, env: DistEnv, dev: torch.device,
                 pool: list[Item], sampler: Any) -> tuple[torch.Generator, DataLoader, int | None]:
    """The training transforms, dataset and loader (and the concat arm's step budget)."""
    from dlcr.data.transforms import build_transforms

    pad = d.pad if d.pad is not None else max(1, round(10 * d.height / 384))
    tf = build_transforms(d.height, d.width, train=True, pad=pad, random_erasing=d.random_erasing, crop=d.crop,
                          crop_prob=d.crop_prob, flip_prob=d.flip_prob, erasing=d.erasing,
                          interpolation=d.interpolation)
    cache = (d.height, d.width) if d.cache_images else None
    ds = make_dataset(pool, data.root, tf, data.video, d.seq_len, cache_hw=cache)
    # Loader workers are started afresh every epoch and seeded from (train.seed, epoch, rank) through
    # this generator (re-seeded in train_epoch): the DataLoader draws its workers' base seed from it,
    # and each worker seeds torch / random / numpy from that base seed + its worker id. A resumed
    # epoch therefore draws the augmentations the uninterrupted run drew, for any worker count.
    # (Persistent workers, seeded once from the global RNG when the first epoch starts and carrying
    # their RNG state across epochs, made a resumed run diverge.)
    generator = torch.Generator()
    loader_kw: dict[str, Any] = {"num_workers": d.workers, "pin_memory": dev.type == "cuda",
                                 "persistent_workers": False, "generator": generator}
    max_steps: int | None = None
    if sc.mode == "paired":
        loader = DataLoader(ds, batch_sampler=sampler, **loader_kw)
    else:
        loader = DataLoader(ds, sampler=sampler, batch_size=sampler.batch_size, drop_last=True, **loader_kw)
        if sc.mode == "concat" and sc.concat_budget == "paired":
            max_steps = real_steps(sc, env, pool)
    return generator, loader, max_steps


def _device_setup(settings: TrainSettings, env: DistEnv, dev: torch.device, model: nn.Module
                  ) -> tuple[nn.Module, bool, torch.dtype, Any, bool, int]:
    """DDP wrapper, cuDNN flags, AMP settings, memory format and host-sync interval."""
    # called with with_logits=True: features and identity logits in one forward, so that DDP sees
    # every identity parameter used
    forward: nn.Module = model
    if env.is_distributed:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [dev.index] if dev.type == "cuda" else None
        forward = DDP(forward, device_ids=ids)
    rs = settings.run
    if dev.type == "cuda":  # CAL's set_seed (train.cudnn_deterministic)
        torch.backends.cudnn.deterministic = bool(rs.cudnn_deterministic)
        torch.backends.cudnn.benchmark = not rs.cudnn_deterministic
    on_cuda = dev.type == "cuda"
    amp = bool(rs.amp and on_cuda)
    # train.amp_dtype: float16 (CAL's AMP, with loss scaling) or bfloat16 (no scaler needed)
    amp_dtype = torch.bfloat16 if rs.amp_dtype == "bfloat16" else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp and amp_dtype == torch.float16)
    # train.channels_last: NHWC weights and image batches on CUDA (faster cuDNN convolutions under AMP)
    channels_last = bool(rs.channels_last and on_cuda)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    # running losses are read back to the host every sync_every steps (0: once per epoch); on the
    # CPU, where a read costs nothing, every step (the NaN-loss check then stops at the bad step)
    sync_every = int(rs.sync_every) if on_cuda else 1
    return forward, amp, amp_dtype, scaler, channels_last, sync_every


# ----------------------------------------------------------------------------- samplers
def per_rank_batch(sc: SamplerSettings, env: DistEnv) -> int:
    bs = sc.batch_size
    if bs % env.world_size:
        raise ConfigError(f"sampler.batch_size={bs} is not divisible by the world size {env.world_size}")
    return bs // env.world_size


def make_sampler(sc: SamplerSettings, seed: int, env: DistEnv, pool: list[Item], variants: list[list[int]]
                 ) -> Any:
    """The batch sampler of ``sc.mode``: P×K identities (none, concat) or real + variant pairs."""
    from dlcr.data.samplers import IdentitySampler, PairedSampler

    kw = {"seed": seed, "num_replicas": env.world_size, "rank": env.rank, "batching": sc.batching}
    pids = [it.pid for it in pool]
    if sc.mode == "none":
        return IdentitySampler(pids, per_rank_batch(sc, env), sc.num_instances, **kw)
    if sc.mode == "concat":
        # equal compute with the paired arm: as many images per step (real + generated)
        bs = per_rank_batch(sc, env) * (2 if sc.concat_budget == "paired" else 1)
        return IdentitySampler(pids, bs, sc.num_instances, **kw)
    n_real = len(variants)
    parts = [[pool[i].partition for i in v] for v in variants]
    return PairedSampler(pids[:n_real], variants, parts, per_rank_batch(sc, env), sc.num_instances,
                         schedule=sc.schedule, num_partitions=sc.num_partitions, every=sc.progressive_every,
                         **kw)


def real_steps(sc: SamplerSettings, env: DistEnv, pool: list[Item]) -> int:
    """Steps per epoch of a P×K pass over the real images alone (the paired sampler's length)."""
    from dlcr.data.samplers import IdentitySampler

    real = [it.pid for it in pool if not it.generated]
    return IdentitySampler(real, per_rank_batch(sc, env), sc.num_instances, seed=0,
                           num_replicas=env.world_size, rank=env.rank, batching=sc.batching).num_batches()
