"""The configuration turned into the library's own arguments, at the edge of the package.

Library code never reads a :class:`~dlcr.config.Config`: its functions and classes take plain
arguments or small settings dataclasses of their own (docs/design.md). The commands (``dlcr.cli``) and
the demo (``dlcr.demo``) load a configuration and hand it to the helpers here, which pick out what each
part of the library reads:

* :func:`train_settings`: the engine's :class:`~dlcr.engine.settings.TrainSettings` of a training
  run (with the full config's record for the checkpoints and the text of ``config.yaml``);
  :func:`trainer_from_config` builds a :class:`~dlcr.engine.trainer.Trainer` from them;
* :func:`eval_settings`: the :class:`~dlcr.engine.evaluate.EvalSettings` of ``data`` and ``eval``;
* :func:`rerank_settings`: the :class:`~dlcr.engine.evaluate.RerankSettings` of ``eval.rerank_*``;
* :func:`inpainter_options`: the constructor options of an inpainting backend from ``generate``;
* :func:`packaged_data_root`: the ``data.root`` of a packaged config, for the work-folder report.

Only ``dlcr.cli`` and ``dlcr.demo`` import this module (an import-linter contract in pyproject.toml).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlcr.config import Config, GenerateConfig, dump_yaml, load_config, to_dict
from dlcr.engine.evaluate import EvalSettings, RerankSettings
from dlcr.engine.settings import (
    InputSettings,
    LossSettings,
    ModelSettings,
    OptimSettings,
    RunSettings,
    SamplerSettings,
    TrainSettings,
)
from dlcr.errors import ConfigError, InputError

__all__ = ["eval_settings", "inpainter_options", "packaged_data_root", "rerank_settings", "train_settings",
           "trainer_from_config"]


def eval_settings(cfg: Config) -> EvalSettings:
    """The evaluation's input size, batch and memory settings (the ``data`` and ``eval`` sections)."""
    d, e = cfg.data, cfg.eval
    return EvalSettings(height=d.height, width=d.width, batch_size=e.batch_size, workers=d.workers, flip=e.flip,
                        seq_len=d.seq_len, max_memory_gb=e.max_memory_gb, interpolation=d.interpolation,
                        half=bool(e.half))


def rerank_settings(cfg: Config, k1: int | None = None, k2: int | None = None,
                    lambda_value: float | None = None) -> RerankSettings:
    """Re-ranking's parameters: ``eval.rerank_k1`` / ``rerank_k2`` / ``rerank_lambda``, each replaced
    by the argument given for it (a command's option); ConfigError when one is out of range."""
    from dlcr.evaluation.rerank import check_rerank_params

    e = cfg.eval
    k1, k2, lam = check_rerank_params(e.rerank_k1 if k1 is None else k1, e.rerank_k2 if k2 is None else k2,
                                      e.rerank_lambda if lambda_value is None else lambda_value)
    return RerankSettings(k1=k1, k2=k2, lambda_value=lam)


def train_settings(cfg: Config) -> TrainSettings:
    """What a training run reads out of ``cfg``, and ``cfg``'s record (``to_dict``) and YAML text."""
    m, o, lo, s, d, t = cfg.model, cfg.optim, cfg.loss, cfg.sampler, cfg.data, cfg.train
    return TrainSettings(
        model=ModelSettings(name=m.name, pretrained=m.pretrained, widths=m.widths, backbone=m.backbone),
        optim=OptimSettings(lr=o.lr, weight_decay=o.weight_decay, clothes_lr=o.clothes_lr, milestones=o.milestones,
                            gamma=o.gamma, clothes_lr_decay=o.clothes_lr_decay),
        loss=LossSettings(label_smooth=lo.label_smooth, triplet_margin=lo.triplet_margin,
                          triplet_metric=lo.triplet_metric, triplet_weight=lo.triplet_weight,
                          clothes_scale=lo.clothes_scale, cal_epsilon=lo.cal_epsilon,
                          cal_start_epoch=lo.cal_start_epoch, cal_weight=lo.cal_weight),
        sampler=SamplerSettings(mode=s.mode, batch_size=s.batch_size, num_instances=s.num_instances,
                                batching=s.batching, schedule=s.schedule, num_partitions=s.num_partitions,
                                progressive_every=s.progressive_every,
                                generated_clothes_label=s.generated_clothes_label, concat_budget=s.concat_budget),
        input=InputSettings(height=d.height, width=d.width, workers=d.workers, seq_len=d.seq_len, crop=d.crop,
                            crop_prob=d.crop_prob, flip_prob=d.flip_prob, pad=d.pad,
                            random_erasing=d.random_erasing, erasing=d.erasing, interpolation=d.interpolation,
                            cache_images=d.cache_images),
        run=RunSettings(epochs=t.epochs, eval_every=t.eval_every, seed=t.seed, amp=t.amp, amp_dtype=t.amp_dtype,
                        cudnn_deterministic=t.cudnn_deterministic, channels_last=t.channels_last,
                        sync_every=t.sync_every),
        eval=eval_settings(cfg),
        record=to_dict(cfg),
        config_yaml=dump_yaml(cfg),
    )


def trainer_from_config(cfg: Config, data: Any, out_dir: str | os.PathLike, **kwargs: Any) -> Any:
    """``Trainer(train_settings(cfg), data, out_dir, **kwargs)`` (``generated``, ``device``, ``env``)."""
    from dlcr.engine.trainer import Trainer

    return Trainer(train_settings(cfg), data, out_dir, **kwargs)


def inpainter_options(backend: str, gen: GenerateConfig) -> dict[str, Any]:
    """Constructor options of inpainting backend ``backend`` from the ``generate`` section."""
    if backend == "recolor":
        return {}
    if gen.scheduler:  # a misspelt name fails now, not after the model has been loaded
        from dlcr.generation.inpainters.diffusers_backend import scheduler_key

        scheduler_key(gen.scheduler)
    opts: dict[str, Any] = {"scheduler": gen.scheduler, "guidance_scale": gen.guidance_scale,
                            "negative_prompt": gen.negative_prompt, "batch_invariant": gen.batch_invariant,
                            "micro_batch": gen.micro_batch}
    if gen.discriminator:
        opts.update(discriminator=gen.discriminator, guidance_weight=gen.guidance_weight,
                    guidance_min_t=gen.guidance_min_t)
    if backend == "diffusers":
        opts.update(model=gen.model, steps=gen.steps, height=gen.height, width=gen.width,
                    query_steps=gen.query_steps)
    # speed-ups (generate.channels_last / generate.compile): passed, and so recorded in the
    # signature, only when set, so that outputs made without them keep their signature
    if gen.channels_last:
        opts["channels_last"] = True
    if gen.compile:
        opts["compile"] = gen.compile
    return opts


def packaged_data_root(name: str) -> Path | None:
    """``data.root`` of the packaged config called ``name``; None when there is none (or it does not load)."""
    try:
        return Path(load_config(name).data.root)
    except (ConfigError, InputError, OSError, ValueError):
        return None
