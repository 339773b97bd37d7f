"""The demo's sizes (:class:`DemoSettings`) and each arm's configuration (:func:`arm_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcr.ablation import ARMS, CORE_ARMS, arm_sets

MASK_SOURCES = ("pose", "truth")


@dataclass(frozen=True)
class DemoSettings:
    """Sizes of the demo. ``quick`` is the ~2-minute smoke version the tests run."""

    # sized so that `dlcr demo` (the Table A1 rows and the concatenated arm, one seed) stays within about
    # 10 minutes on 2 CPU cores; `--ids 150 --epochs 20` and friends give the larger world
    ids: int = 100
    height: int = 128  # rendered world (and generated images)
    width: int = 64
    train_height: int = 64  # network input: half the rendered size keeps the arms within minutes on 2 cores
    train_width: int = 32
    world_seed: int = 0
    seeds: tuple[int, ...] = (0,)
    k: int = 4
    l: int = 6  # noqa: E741 - the paper's name
    m: int = 5
    epochs: int = 12
    cal_start: int = 7
    progressive_every: int = 3  # 4 partitions: all variants allowed from epoch 10 (1-based) on
    milestones: tuple[int, ...] = (10,)
    widths: tuple[int, ...] = (16, 32, 64, 128)  # small_resnet's stages: half its default widths, ~2x faster
    cache_images: bool = True  # decoded, resized training images kept in RAM (the demo's data is small)
    batch_size: int = 32
    num_instances: int = 4
    lr: float = 1e-3  # from scratch (no ImageNet weights here) a larger step than CAL's 3.5e-4 is needed
    threads: int = 1  # torch threads; the small network is fastest on one (and oversubscription is ruinous)
    backend: str = "recolor"
    workers: int = 0
    refine_variant: str = "paper"
    quick: bool = False
    extra_sets: tuple[str, ...] = field(default=())
    masks: str = "pose"  # "pose" (the offline real parser) | "truth" (the world's label maps)
    ablation: bool = True  # train the Table A1 rows 2-4 too (False: baseline, concat, progressive)
    val_fraction: float = 0.1  # training identities held out as the validation split
    val_min_ids: int = 2
    eval_every: int = 2  # validation every that many epochs (and after the last)
    jobs: int = 2  # worker processes running the stages and trainings side by side (1: all in this one)

    @classmethod
    def quick_settings(cls, **kw: Any) -> DemoSettings:
        base = {"ids": 40, "k": 4, "l": 3, "epochs": 4, "cal_start": 2, "progressive_every": 1,
                "milestones": (3,), "batch_size": 16, "eval_every": 1, "quick": True}
        base.update(kw)
        return cls(**base)

    @property
    def arms(self) -> tuple[str, ...]:
        return ARMS if self.ablation else CORE_ARMS


def arm_config(st: DemoSettings, arm: str, seed: int, world_root: Path) -> Any:
    """The packaged ``synthcc`` config with the demo's sizes; per arm only ``sampler.mode`` /
    ``sampler.schedule`` and the generated data (``generate.mask_region`` / ``prompt_source``) differ."""
    from dlcr.config import load_config

    sets = [
        f"data.root={world_root}", f"data.height={st.train_height}", f"data.width={st.train_width}",
        f"data.workers={st.workers}", f"data.cache_images={str(st.cache_images).lower()}",
        f"model.widths={list(st.widths)}", f"train.epochs={st.epochs}", f"train.seed={seed}",
        f"train.eval_every={st.eval_every}", f"loss.cal_start_epoch={st.cal_start}",
        f"optim.milestones={list(st.milestones)}", f"optim.lr={st.lr}",
        f"sampler.batch_size={st.batch_size}", f"sampler.num_instances={st.num_instances}",
        f"sampler.progressive_every={st.progressive_every}", *arm_sets(arm),
        f"generate.k={st.k}", f"generate.query_variants={st.l}", f"generate.backend={st.backend}",
        f"eval.refine_l={st.l}", f"eval.refine_m={st.m}", f"eval.refine_variant={st.refine_variant}",
        *st.extra_sets,
    ]
    return load_config("synthcc", sets)
