"""The training loop: CAL (identity + triplet + clothes-adversarial losses) on real images, optionally
with DLCR's generated variants (concatenated, or paired with progressive learning).

The loop is written out in one place on purpose (torchreid / nanoGPT style): one function builds the
pieces, one runs an epoch, one evaluates. Library code takes plain arguments; the CLI reads YAML and
passes the frozen config dataclasses in.

Per batch (CAL, Gu et al. 2022):

1. ``f = model(x)`` (BN-neck features), identity logits ``model.classify(f)``;
2. the clothes classifier is trained on ``f.detach()`` of the *real* images (clothes id ≥ 0) with its
   own optimiser, from ``loss.cal_start_epoch`` on;
3. from the same epoch on, the clothes-adversarial loss on the clothes logits of ``f`` (classifier
   weights frozen for this term) pushes the features away from the clothes;
4. identity cross-entropy (label smoothing) + weighted batch-hard triplet + adversarial term.

Generated images carry their source's person id and clothes id −1 (out of the clothes losses) unless
``sampler.generated_clothes_label == "target"``.

Distributed: launched by ``torchrun``, the model runs under DDP (gloo on CPU, NCCL on GPU); samplers
split the batches by rank; the clothes classifier's gradients are averaged by hand (it is called twice
per step, which DDP's bookkeeping does not allow). Rank 0 alone evaluates (on the whole split) and
writes checkpoints and logs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from dlcr.config import Config, to_dict
from dlcr.data.loaders import Item, add_generated, items_from_samples, make_dataset
from dlcr.distributed.env import DistEnv, dist_env, resolve_device
from dlcr.errors import ConfigError, DatasetError
from dlcr.io.atomic import atomic_write_text
from dlcr.types import EvalProtocol, Sample
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

log = get_logger(__name__)


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


# ----------------------------------------------------------------------------- helpers
def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def loader_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the data loader's generator for one epoch on one rank (its workers' base seed comes
    from it): a function of the checkpointed state only, never of the process's RNG."""
    return int(np.random.default_rng([int(seed), int(epoch), int(rank), 0x10AD]).integers(2**63))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` take no gradient inside the block (inputs still do)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


def _allreduce_grads(module: nn.Module, world: int) -> None:
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


class JsonlLog:
    """``log.jsonl`` (one JSON object per line, flushed) plus TensorBoard scalars when installed."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self.tb = None
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ----------------------------------------------------------------------------- the trainer
@dataclass
class TrainResult:
    out_dir: Path
    epochs_run: int
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    history: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Builds model, losses, optimisers and sampler from a :class:`Config`; ``fit()`` runs the epochs."""

    def __init__(self, cfg: Config, data: TrainData, out_dir: str | os.PathLike, *,
                 generated: GeneratedData | None = None, device: str | None = None,
                 env: DistEnv | None = None):
        from dlcr.data.transforms import build_transforms
        from dlcr.losses import ClothesAdversarialLoss, CrossEntropyLabelSmooth, TripletLoss
        from dlcr.models import ClothesClassifier, create_model, model_options

        self.cfg = cfg
        self.data = data
        self.out_dir = Path(out_dir)
        self.env = env or dist_env()
        self.device = torch.device(resolve_device(device))
        if self.env.is_distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", self.env.local_rank)
        sc = cfg.sampler
        if sc.mode != "none" and generated is None:
            raise ConfigError(f"sampler.mode={sc.mode!r} needs generated images (a manifest); "
                              "use sampler.mode=none to train on the originals only")
        if sc.mode == "none":
            generated = None
        if data.num_pids < 2:
            raise DatasetError("training needs at least 2 identities")

        seed_everything(cfg.train.seed + self.env.rank)
        self.pool, self.variants = build_pool(data, generated,
                                              target_clothes=sc.generated_clothes_label == "target")
        self.model = create_model(cfg.model.name, data.num_pids, pretrained=cfg.model.pretrained,
                                  **model_options(cfg.model.name, cfg.model.widths)).to(self.device)
        self.clothes = ClothesClassifier(self.model.feat_dim, max(1, data.num_clothes),
                                         scale=cfg.loss.clothes_scale).to(self.device)
        self.pos_mask = torch.as_tensor(data.pid2clothes, dtype=torch.float32, device=self.device)

        oc = cfg.optim
        self.opt = torch.optim.Adam(self.model.parameters(), lr=oc.lr, weight_decay=oc.weight_decay)
        self.opt_c = torch.optim.Adam(self.clothes.parameters(), lr=oc.clothes_lr, weight_decay=oc.weight_decay)
        self.sched = torch.optim.lr_scheduler.MultiStepLR(self.opt, list(oc.milestones), gamma=oc.gamma)
        # CAL never decays the clothes classifier's rate (optim.clothes_lr_decay=false is its recipe)
        self.sched_c = torch.optim.lr_scheduler.MultiStepLR(
            self.opt_c, list(oc.milestones) if oc.clothes_lr_decay else [], gamma=oc.gamma)

        lc = cfg.loss
        self.ce = CrossEntropyLabelSmooth(epsilon=lc.label_smooth)
        self.triplet = TripletLoss(margin=lc.triplet_margin, metric=lc.triplet_metric)
        self.adv = ClothesAdversarialLoss(scale=lc.clothes_scale, epsilon=lc.cal_epsilon)

        self.sampler = self._make_sampler()
        pad = cfg.data.pad if cfg.data.pad is not None else max(1, round(10 * cfg.data.height / 384))
        d = cfg.data
        tf = build_transforms(d.height, d.width, train=True, pad=pad, random_erasing=d.random_erasing, crop=d.crop,
                              crop_prob=d.crop_prob, flip_prob=d.flip_prob, erasing=d.erasing,
                              interpolation=d.interpolation)
        cache = (cfg.data.height, cfg.data.width) if cfg.data.cache_images else None
        ds = make_dataset(self.pool, data.root, tf, data.video, cfg.data.seq_len, cache_hw=cache)
        # Loader workers are started afresh every epoch and seeded from (train.seed, epoch, rank) through
        # this generator (re-seeded in train_epoch): the DataLoader draws its workers' base seed from it,
        # and each worker seeds torch / random / numpy from that base seed + its worker id. A resumed
        # epoch therefore draws the augmentations the uninterrupted run drew, for any worker count.
        # (Persistent workers, seeded once from the global RNG when the first epoch starts and carrying
        # their RNG state across epochs, made a resumed run diverge.)
        self.loader_generator = torch.Generator()
        loader_kw: dict[str, Any] = {"num_workers": cfg.data.workers, "pin_memory": self.device.type == "cuda",
                                     "persistent_workers": False, "generator": self.loader_generator}
        self.max_steps: int | None = None
        if sc.mode == "paired":
            self.loader = DataLoader(ds, batch_sampler=self.sampler, **loader_kw)
        else:
            self.loader = DataLoader(ds, sampler=self.sampler, batch_size=self.sampler.batch_size,
                                     drop_last=True, **loader_kw)
            if sc.mode == "concat" and sc.concat_budget == "paired":
                self.max_steps = self._real_steps()

        # called with with_logits=True: features and identity logits in one forward, so that DDP sees
        # every identity parameter used
        self.forward: nn.Module = self.model
        if self.env.is_distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DDP(self.forward, device_ids=ids)
        if self.device.type == "cuda":  # CAL's set_seed (train.cudnn_deterministic)
            torch.backends.cudnn.deterministic = bool(cfg.train.cudnn_deterministic)
            torch.backends.cudnn.benchmark = not cfg.train.cudnn_deterministic
        on_cuda = self.device.type == "cuda"
        self.amp = bool(cfg.train.amp and on_cuda)
        # train.amp_dtype: float16 (CAL's AMP, with loss scaling) or bfloat16 (no scaler needed)
        self.amp_dtype = torch.bfloat16 if cfg.train.amp_dtype == "bfloat16" else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp and self.amp_dtype == torch.float16)
        # train.channels_last: NHWC weights and image batches on CUDA (faster cuDNN convolutions under AMP)
        self.channels_last = bool(cfg.train.channels_last and on_cuda)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        # running losses are read back to the host every sync_every steps (0: once per epoch); on the
        # CPU, where a read costs nothing, every step (the NaN-loss check then stops at the bad step)
        self.sync_every = int(cfg.train.sync_every) if on_cuda else 1
        self.start_epoch = 0
        self.best: tuple[float, int] | None = None  # (validation mAP, epoch)
        self.history: list[dict[str, Any]] = []
        self.step = 0

    # -- construction helpers
    def _per_rank_batch(self) -> int:
        bs = self.cfg.sampler.batch_size
        if bs % self.env.world_size:
            raise ConfigError(f"sampler.batch_size={bs} is not divisible by the world size {self.env.world_size}")
        return bs // self.env.world_size

    def _make_sampler(self) -> Any:
        from dlcr.data.samplers import IdentitySampler, PairedSampler

        sc, seed = self.cfg.sampler, self.cfg.train.seed
        kw = {"seed": seed, "num_replicas": self.env.world_size, "rank": self.env.rank, "batching": sc.batching}
        pids = [it.pid for it in self.pool]
        if sc.mode == "none":
            return IdentitySampler(pids, self._per_rank_batch(), sc.num_instances, **kw)
        if sc.mode == "concat":
            # equal compute with the paired arm: as many images per step (real + generated)
            bs = self._per_rank_batch() * (2 if sc.concat_budget == "paired" else 1)
            return IdentitySampler(pids, bs, sc.num_instances, **kw)
        n_real = len(self.variants)
        parts = [[self.pool[i].partition for i in v] for v in self.variants]
        return PairedSampler(pids[:n_real], self.variants, parts, self._per_rank_batch(), sc.num_instances,
                             schedule=sc.schedule, num_partitions=sc.num_partitions, every=sc.progressive_every,
                             **kw)

    def _real_steps(self) -> int:
        """Steps per epoch of a P×K pass over the real images alone (the paired sampler's length)."""
        from dlcr.data.samplers import IdentitySampler

        real = [it.pid for it in self.pool if not it.generated]
        return IdentitySampler(real, self._per_rank_batch(), self.cfg.sampler.num_instances, seed=0,
                               num_replicas=self.env.world_size, rank=self.env.rank,
                               batching=self.cfg.sampler.batching).num_batches()

    # -- checkpoints
    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def save(self, epoch: int, name: str) -> Path:
        from dlcr.engine.checkpoint import save_checkpoint

        return save_checkpoint(self.ckpt_dir, model=self.model, clothes_classifier=self.clothes,
                               optimizers={"model": self.opt, "clothes": self.opt_c},
                               schedulers={"model": self.sched, "clothes": self.sched_c},
                               sampler=self.sampler, epoch=epoch, config=to_dict(self.cfg),
                               extra={"best": list(self.best) if self.best else None, "step": self.step},
                               name=name)

    def resume(self) -> bool:
        """Continue from ``checkpoints/last`` when it exists; returns whether it did.

        A damaged ``last`` is a :class:`CheckpointError` unless its kept previous version verifies
        (then that one is used, with a warning); see :func:`dlcr.engine.checkpoint.resume_checkpoint`.
        """
        from dlcr.engine.checkpoint import load_checkpoint, resume_checkpoint

        last, note = resume_checkpoint(self.ckpt_dir)
        if last is None:
            return False
        if note:
            log.warning("%s", note)
        state = load_checkpoint(last, model=self.model, clothes_classifier=self.clothes,
                                optimizers={"model": self.opt, "clothes": self.opt_c},
                                schedulers={"model": self.sched, "clothes": self.sched_c},
                                sampler=self.sampler, map_location=self.device)
        self.start_epoch = int(state["epoch"]) + 1
        extra = state.get("extra") or {}
        self.step = int(extra.get("step", 0))
        if extra.get("best"):
            self.best = (float(extra["best"][0]), int(extra["best"][1]))
        hist = self.out_dir / "history.json"
        if hist.is_file():
            self.history = [h for h in json.loads(hist.read_text()) if h["epoch"] <= self.start_epoch]
        log.info("resumed from %s at epoch %d", last, self.start_epoch)
        return True

    # -- one epoch
    def _autocast(self) -> Any:
        if not self.amp:
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        """One pass over the loader. No host sync per step on CUDA: the batch's real-image selection
        is taken from the loader's CPU tensors, and the running losses (float64, on the device) and
        the first non-finite loss are read back every ``train.sync_every`` steps (0: at the end of
        the epoch), where a non-finite loss raises :class:`FloatingPointError`. On the CPU they are
        read every step, as before. The sums are the float64 sums of the per-step float32 values in
        step order, i.e. the same numbers as Python float accumulation."""
        cfg = self.cfg
        self.model.train()
        self.clothes.train()
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(loader_seed(cfg.train.seed, epoch, self.env.rank))
        use_cal = epoch >= cfg.loss.cal_start_epoch and self.data.num_clothes > 1
        keys = ("loss", "id", "tri", "clothes", "adv", "acc")
        dev = self.device
        on_cuda = dev.type == "cuda"
        sums_t = torch.zeros(len(keys), dtype=torch.float64, device=dev)
        bad_found = torch.zeros((), dtype=torch.bool, device=dev)  # a non-finite loss was seen
        bad_value = torch.zeros((), dtype=torch.float32, device=dev)  # the first one
        zero = torch.zeros((), device=dev)

        def check() -> None:  # one host sync
            if bool(bad_found):
                raise FloatingPointError(f"loss became {float(bad_value)} at epoch {epoch + 1}; lower optim.lr")

        n = 0
        t0 = time.time()
        images = 0
        total = len(self.loader) if self.max_steps is None else min(self.max_steps, len(self.loader))
        for batch in track(itertools.islice(self.loader, total), desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                           total=total, unit="batch"):
            img = batch["img"]
            if self.channels_last and img.ndim == 4:
                x = img.to(dev, non_blocking=True, memory_format=torch.channels_last)
            else:
                x = img.to(dev, non_blocking=True)
            pids = batch["pid"].to(dev, non_blocking=True)
            cids_host = batch["clothes_id"]
            cids = cids_host.to(dev, non_blocking=True)
            with self._autocast():
                feats, logits = self.forward(x, with_logits=True)
                loss_id = self.ce(logits, pids)
                loss_tri = self.triplet(feats, pids)
                loss = loss_id + cfg.loss.triplet_weight * loss_tri
            # generated images carry no clothes label (-1): only real ones train CAL. Which rows are
            # real is read from the loader's CPU tensor (no device sync); on CUDA the rows are then
            # gathered by index (a boolean mask would sync to count them)
            real_host = cids_host >= 0
            any_real = bool(real_host.any())
            real: torch.Tensor = cids >= 0
            if on_cuda and any_real:
                real = torch.nonzero(real_host).squeeze(1).to(dev, non_blocking=True)
            loss_c = zero
            loss_adv = zero
            if use_cal and any_real:
                # CAL's order (Simple-CCReID train.py): the clothes classifier learns on the detached
                # features and steps first; the adversarial loss then sees its updated weights
                with self._autocast():
                    loss_c = F.cross_entropy(self.clothes(feats.detach()[real]).float(), cids[real])
                self.opt_c.zero_grad(set_to_none=True)
                self.scaler.scale(loss_c).backward()
                if self.env.is_distributed:
                    _allreduce_grads(self.clothes, self.env.world_size)
                self.scaler.step(self.opt_c)
                with self._autocast(), frozen(self.clothes):
                    adv_logits = self.clothes(feats[real])
                    loss_adv = self.adv(adv_logits.float(), cids[real], self.pos_mask[pids[real]])
                loss = loss + cfg.loss.cal_weight * loss_adv
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            lv = loss.detach().float()
            finite = torch.isfinite(lv)
            bad_value = torch.where(bad_found | finite, bad_value, lv)
            bad_found = bad_found | ~finite
            n += 1
            self.step += 1
            images += x.shape[0]
            acc = ((logits.mean(-1) if logits.ndim == 3 else logits).argmax(1) == pids).float().mean()
            step_vals = torch.stack([v.detach().float().reshape(()) for v in
                                     (loss, loss_id, loss_tri, loss_c, loss_adv, acc)])
            sums_t += step_vals.double()
            if self.sync_every and n % self.sync_every == 0:
                check()
        check()
        sums = dict(zip(keys, sums_t.tolist(), strict=True))
        self.sched.step()
        with warnings.catch_warnings():  # before cal_start_epoch the clothes optimiser has not stepped yet
            warnings.simplefilter("ignore", UserWarning)
            self.sched_c.step()
        dt = time.time() - t0
        out = {k: v / max(n, 1) for k, v in sums.items()}
        out.update(batches=n, seconds=dt, images_per_s=images / dt if dt > 0 else 0.0,
                   lr=self.opt.param_groups[0]["lr"])
        return out

    # -- evaluation
    def evaluate(self, protocols: Sequence[EvalProtocol] | None = None) -> dict[str, Any]:
        from dlcr.engine.evaluate import EvalSettings, evaluate_model

        protocols = tuple(protocols if protocols is not None else self.data.protocols)
        return evaluate_model(self.model, self.data.eval_splits, self.data.root, protocols,
                              EvalSettings.from_config(self.cfg), device=self.device, video=self.data.video)

    # -- the loop
    def fit(self, *, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        cfg = self.cfg
        main = self.env.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            from dlcr.config import dump_yaml

            atomic_write_text(self.out_dir / "config.yaml", dump_yaml(cfg))  # as `dlcr config show` prints it
        logger = JsonlLog(self.out_dir, main)
        val = self.data.validation_protocols()
        if main and not val:
            log.info("%s has no validation split: the last checkpoint is the default model; test metrics "
                     "are logged but never used for selection", self.data.name or "this dataset")
        elif main and cfg.train.eval_every > 0:
            log.info("model selection: checkpoints/best keeps the highest validation mAP (%d queries, %d "
                     "gallery images), evaluated every %d epoch(s)", len(self.data.eval_splits["val_query"]),
                     len(self.data.eval_splits["val_gallery"]), cfg.train.eval_every)
        elif main:
            log.info("train.eval_every=0: the validation split is not evaluated, so no best checkpoint is kept")
        last_ckpt: Path | None = None
        for epoch in range(self.start_epoch, cfg.train.epochs):
            stats = self.train_epoch(epoch)
            rec: dict[str, Any] = {"epoch": epoch + 1, **stats}
            final = epoch + 1 == cfg.train.epochs
            if main and cfg.train.eval_every > 0 and ((epoch + 1) % cfg.train.eval_every == 0 or final):
                if val:
                    vm = self.evaluate(val)["val"]
                    rec["val_mAP"] = vm["mAP"]
                    if self.best is None or vm["mAP"] > self.best[0]:
                        self.best = (vm["mAP"], epoch + 1)
                        self.save(epoch, "best")
                test = self.evaluate()
                for pname, m in test.items():
                    for k in ("top1", "mAP"):
                        rec[f"{pname}_{k}"] = m[k]
            if main:
                last_ckpt = self.save(epoch, "last")
                self.history.append(rec)
                atomic_write_text(self.out_dir / "history.json", json.dumps(self.history, indent=1))
                logger.write(rec, step=epoch + 1)
                log.info("epoch %d: %s", epoch + 1, ", ".join(f"{k}={v:.4g}" for k, v in rec.items()
                                                              if isinstance(v, float)))
            if self.env.is_distributed:
                import torch.distributed as dist

                dist.barrier()
            if on_epoch is not None:
                on_epoch(rec)
        logger.close()
        best_path = self.ckpt_dir / "best.json"
        return TrainResult(out_dir=self.out_dir, epochs_run=cfg.train.epochs - self.start_epoch,
                           last_checkpoint=last_ckpt or (self.ckpt_dir / "last.json"),
                           best_checkpoint=best_path if best_path.is_file() else None,
                           history=self.history, metrics=self.history[-1] if self.history else {})


def init_distributed(env: DistEnv) -> None:
    """Join the process group torchrun set up (gloo on CPU, NCCL on GPU)."""
    if not env.is_distributed:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(env.local_rank)
        dist.init_process_group(backend=backend)


def train(cfg: Config, data: TrainData, out_dir: str | os.PathLike, *, generated: GeneratedData | None = None,
          resume: bool = False, device: str | None = None) -> TrainResult:
    """Train one model; ``resume=True`` continues from ``out_dir/checkpoints/last`` when present."""
    from dlcr.engine.checkpoint import latest_checkpoint, resume_checkpoint

    if resume:  # a damaged checkpoint stops the run here, before anything is built or written
        resume_checkpoint(Path(out_dir) / "checkpoints")
    else:  # any checkpoint counts, e.g. last.prev.json left by a run killed mid-save, or a damaged one
        ck = Path(out_dir) / "checkpoints"
        found = latest_checkpoint(ck)
        if found is not None:
            raise ConfigError(f"{out_dir} already holds a run ({found.name}); pass --resume to continue it "
                              "or choose another name")
        held = sorted(p.name for p in ck.glob("*") if not p.name.startswith(".")
                      and p.name.endswith((".json", ".safetensors"))) if ck.is_dir() else []
        if held:
            raise ConfigError(f"{out_dir} already holds a run whose checkpoint is incomplete or damaged "
                              f"({', '.join(held)}); pass --resume to continue it or choose another name")
    env = dist_env()
    init_distributed(env)
    trainer = Trainer(cfg, data, out_dir, generated=generated, device=device, env=env)
    if resume:
        trainer.resume()
    return trainer.fit()
