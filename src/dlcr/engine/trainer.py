"""The training loop: CAL (identity + triplet + clothes-adversarial losses) on real images, optionally
with DLCR's generated variants (concatenated, or paired with progressive learning).

The loop is written out in one place on purpose (torchreid / nanoGPT style): :mod:`dlcr.engine.build`
builds the pieces (and re-seeds the global RNGs, see there), :class:`Trainer` holds them and runs
``fit`` → ``train_epoch`` → ``evaluate`` / ``save``. It reads no configuration: it takes the engine's
own settings (:class:`~dlcr.engine.settings.TrainSettings`), which the CLI and the demo make from
theirs (:func:`dlcr.config_args.train_settings`).

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

import itertools
import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dlcr.distributed.env import DistEnv, dist_env
from dlcr.engine.build import (
    GeneratedData,
    TrainData,
    TrainingParts,
    build_training,
)
from dlcr.engine.loop_parts import EpochTally, JsonlLog, allreduce_grads, frozen, loader_seed
from dlcr.engine.settings import TrainSettings
from dlcr.errors import ConfigError
from dlcr.io.atomic import atomic_write_text
from dlcr.types import EvalProtocol
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import track

__all__ = ["TrainResult", "Trainer", "init_distributed", "train"]

log = get_logger(__name__)


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
    """Holds the parts of a training run (:class:`~dlcr.engine.build.TrainingParts`) and runs it:
    ``fit()`` runs the epochs, ``resume()`` continues from the last checkpoint.

    ``Trainer(settings, data, out_dir, ...)`` builds the parts with :func:`~dlcr.engine.build.build_training`
    (which re-seeds the global RNGs from ``settings.run.seed + rank`` before building the model);
    :meth:`from_parts` takes parts built already.
    """

    def __init__(self, settings: TrainSettings, data: TrainData, out_dir: str | os.PathLike, *,
                 generated: GeneratedData | None = None, device: str | None = None,
                 env: DistEnv | None = None):
        self._hold(build_training(settings, data, out_dir, generated=generated, device=device, env=env))

    @classmethod
    def from_parts(cls, parts: TrainingParts) -> Trainer:
        self = cls.__new__(cls)
        self._hold(parts)
        return self

    def _hold(self, p: TrainingParts) -> None:
        self.parts = p
        self.settings, self.data, self.out_dir, self.env, self.device = (p.settings, p.data, p.out_dir, p.env,
                                                                         p.device)
        self.pool, self.variants = p.pool, p.variants
        self.model, self.clothes, self.pos_mask = p.model, p.clothes, p.pos_mask
        self.opt, self.opt_c, self.sched, self.sched_c = p.opt, p.opt_c, p.sched, p.sched_c
        self.ce, self.triplet, self.adv = p.ce, p.triplet, p.adv
        self.sampler, self.loader_generator, self.loader, self.max_steps = (p.sampler, p.loader_generator,
                                                                            p.loader, p.max_steps)
        self.forward, self.amp, self.amp_dtype, self.scaler = p.forward, p.amp, p.amp_dtype, p.scaler
        self.channels_last, self.sync_every = p.channels_last, p.sync_every
        self.start_epoch = 0
        self.best: tuple[float, int] | None = None  # (validation mAP, epoch)
        self.history: list[dict[str, Any]] = []
        self.step = 0

    # -- checkpoints
    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    def save(self, epoch: int, name: str) -> Path:
        from dlcr.engine.checkpoint import save_checkpoint

        return save_checkpoint(self.ckpt_dir, model=self.model, clothes_classifier=self.clothes,
                               optimizers={"model": self.opt, "clothes": self.opt_c},
                               schedulers={"model": self.sched, "clothes": self.sched_c},
                               sampler=self.sampler, epoch=epoch, config=self.settings.record,
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
        use_cal = self._start_epoch(epoch)
        tally = EpochTally(self.device, epoch)
        t0 = time.time()
        images = 0
        total = len(self.loader) if self.max_steps is None else min(self.max_steps, len(self.loader))
        for batch in track(itertools.islice(self.loader, total), desc=f"epoch {epoch + 1}/{self.settings.run.epochs}",
                           total=total, unit="batch"):
            x, pids, logits, terms = self._train_step(batch, use_cal, tally.zero)
            tally.add(terms, logits, pids)
            self.step += 1
            images += x.shape[0]
            if self.sync_every and tally.n % self.sync_every == 0:
                tally.check()
        tally.check()
        sums = tally.sums()
        self.sched.step()
        with warnings.catch_warnings():  # before cal_start_epoch the clothes optimiser has not stepped yet
            warnings.simplefilter("ignore", UserWarning)
            self.sched_c.step()
        dt = time.time() - t0
        n = tally.n
        out = {k: v / max(n, 1) for k, v in sums.items()}
        out.update(batches=n, seconds=dt, images_per_s=images / dt if dt > 0 else 0.0,
                   lr=self.opt.param_groups[0]["lr"])
        return out

    def _start_epoch(self, epoch: int) -> bool:
        """Train mode, the sampler's and the loader's epoch seeds; whether CAL's losses are on."""
        self.model.train()
        self.clothes.train()
        self.sampler.set_epoch(epoch)
        self.loader_generator.manual_seed(loader_seed(self.settings.run.seed, epoch, self.env.rank))
        return epoch >= self.settings.loss.cal_start_epoch and self.data.num_clothes > 1

    def _train_step(self, batch: dict[str, Any], use_cal: bool, zero: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
        """One optimiser step on ``batch``: ``(images, pids, logits, (loss, id, tri, clothes, adv))``."""
        lc, dev = self.settings.loss, self.device
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
            # the metric loss on each of the model's triplet features (the whole feature; MGN's 3 globals)
            tri_feats = getattr(self.model, "module", self.model).triplet_features(feats)
            loss_tri = self.triplet(tri_feats[0], pids)
            for f in tri_feats[1:]:
                loss_tri = loss_tri + self.triplet(f, pids)
            loss = loss_id + lc.triplet_weight * loss_tri
        # generated images carry no clothes label (-1): only real ones train CAL. Which rows are
        # real is read from the loader's CPU tensor (no device sync); on CUDA the rows are then
        # gathered by index (a boolean mask would sync to count them)
        real_host = cids_host >= 0
        any_real = bool(real_host.any())
        real: torch.Tensor = cids >= 0
        if dev.type == "cuda" and any_real:
            real = torch.nonzero(real_host).squeeze(1).to(dev, non_blocking=True)
        loss_c = zero
        loss_adv = zero
        if use_cal and any_real:
            loss_c, loss_adv = self._cal_step(feats, pids, cids, real)
            loss = loss + lc.cal_weight * loss_adv
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return x, pids, logits, (loss, loss_id, loss_tri, loss_c, loss_adv)

    def _cal_step(self, feats: torch.Tensor, pids: torch.Tensor, cids: torch.Tensor, real: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """CAL's order (Simple-CCReID train.py): the clothes classifier learns on the detached features
        and steps first; the adversarial loss then sees its updated weights. Returns both losses."""
        with self._autocast():
            loss_c = F.cross_entropy(self.clothes(feats.detach()[real]).float(), cids[real])
        self.opt_c.zero_grad(set_to_none=True)
        self.scaler.scale(loss_c).backward()
        if self.env.is_distributed:
            allreduce_grads(self.clothes, self.env.world_size)
        self.scaler.step(self.opt_c)
        with self._autocast(), frozen(self.clothes):
            adv_logits = self.clothes(feats[real])
            loss_adv = self.adv(adv_logits.float(), cids[real], self.pos_mask[pids[real]])
        return loss_c, loss_adv

    # -- evaluation
    def evaluate(self, protocols: Sequence[EvalProtocol] | None = None) -> dict[str, Any]:
        from dlcr.engine.evaluate import evaluate_model

        protocols = tuple(protocols if protocols is not None else self.data.protocols)
        return evaluate_model(self.model, self.data.eval_splits, self.data.root, protocols,
                              self.settings.eval, device=self.device, video=self.data.video)

    # -- the loop
    def fit(self, *, on_epoch: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
        rs = self.settings.run
        main = self.env.is_main
        if main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            # the full configuration, as `dlcr config show` prints it
            atomic_write_text(self.out_dir / "config.yaml", self.settings.config_yaml)
        logger = JsonlLog(self.out_dir, main)
        val = self.data.validation_protocols()
        if main and not val:
            log.info("%s has no validation split: the last checkpoint is the default model; test metrics "
                     "are logged but never used for selection", self.data.name or "this dataset")
        elif main and rs.eval_every > 0:
            log.info("model selection: checkpoints/best keeps the highest validation mAP (%d queries, %d "
                     "gallery images), evaluated every %d epoch(s)", len(self.data.eval_splits["val_query"]),
                     len(self.data.eval_splits["val_gallery"]), rs.eval_every)
        elif main:
            log.info("train.eval_every=0: the validation split is not evaluated, so no best checkpoint is kept")
        last_ckpt: Path | None = None
        for epoch in range(self.start_epoch, rs.epochs):
            stats = self.train_epoch(epoch)
            rec: dict[str, Any] = {"epoch": epoch + 1, **stats}
            final = epoch + 1 == rs.epochs
            if main and rs.eval_every > 0 and ((epoch + 1) % rs.eval_every == 0 or final):
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
        return TrainResult(out_dir=self.out_dir, epochs_run=rs.epochs - self.start_epoch,
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


def train(settings: TrainSettings, data: TrainData, out_dir: str | os.PathLike, *,
          generated: GeneratedData | None = None, resume: bool = False, device: str | None = None) -> TrainResult:
    """Train one model; ``resume=True`` continues from ``out_dir/checkpoints/last`` when present."""
    from dlcr.engine.checkpoint import resume_checkpoint
    from dlcr.engine.checkpoint_files import latest_checkpoint

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
    trainer = Trainer(settings, data, out_dir, generated=generated, device=device, env=env)
    if resume:
        trainer.resume()
    return trainer.fit()
