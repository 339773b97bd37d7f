"""``dlcr train``: CAL training on a benchmark, optionally with DLCR's generated variants.

Works the same under ``torchrun --nproc_per_node=N -m dlcr train …`` (DDP is detected from the
environment that torchrun sets).
"""

from __future__ import annotations

from pathlib import Path

import typer

from dlcr.cli.common import (
    DEVICE_DEFAULT,
    DEVICE_HELP,
    ConfigOpt,
    SetOpt,
    WorkOpt,
    flag,
    get_config,
    open_dataset,
    work_dir,
)


def train_cmd(
    config: str = ConfigOpt,
    sets: list[str] = SetOpt,
    work: str = WorkOpt,
    name: str = typer.Option(None, "--name", help="run name", show_default="train.name"),
    out: str = typer.Option(None, "--out", help="runs folder", show_default="train.out_dir"),
    resume: bool = flag(False, "--resume", help="continue <out>/<name> from its last checkpoint"),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP, show_default=DEVICE_DEFAULT),
) -> None:
    """Train a CC-ReID model (CAL losses; sampler.mode none | concat | paired)."""
    from dlcr.config_args import train_settings
    from dlcr.engine.build import GeneratedData, TrainData
    from dlcr.engine.trainer import train
    from dlcr.generation.outputs import GENERATED_MANIFEST
    from dlcr.generation.stages import GENERATED
    from dlcr.io.tables import read_table

    cfg = get_config(config, sets)
    ds = open_dataset(cfg)
    generated = None
    if cfg.sampler.mode != "none":
        gen_dir = work_dir(cfg, work) / GENERATED
        manifest = gen_dir / GENERATED_MANIFEST
        if not manifest.is_file():
            from dlcr.errors import InputError

            raise InputError(f"sampler.mode={cfg.sampler.mode} needs generated images, but {manifest} is missing; "
                             "run `dlcr generate all` first or pass --set sampler.mode=none")
        generated = GeneratedData(rows=read_table(manifest), root=gen_dir)
    if name is not None and not name.strip():
        from dlcr.errors import ConfigError

        raise ConfigError("--name must not be empty")
    run_dir = Path(cfg.train.out_dir if out is None else out) / (cfg.train.name if name is None else name)
    res = train(train_settings(cfg), TrainData.from_dataset(ds), run_dir, generated=generated, resume=resume,
                device=device)
    typer.echo(f"trained {res.epochs_run} epoch(s); last checkpoint: {res.last_checkpoint}")
    if res.best_checkpoint is not None:
        typer.echo(f"best checkpoint (highest validation mAP): {res.best_checkpoint}")
    if res.metrics:
        shown = {k: round(v, 4) for k, v in res.metrics.items() if k.endswith(("top1", "mAP"))}
        typer.echo(f"final: {shown}")
