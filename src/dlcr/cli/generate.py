"""``dlcr generate``: masks → describe → plan → inpaint (+ queries), each resumable (docs/design.md §3).

All commands take ``--config`` / ``--set`` (the ``generate`` section) and ``--work`` (the folder the
stages share, default ``out/<dataset>``). Every stage records a signature of what made its outputs and
refuses (one ``error:`` line, exit 2) to resume outputs made with other settings; ``--overwrite``
replaces them instead (see :mod:`dlcr.generation.stages`).
"""

from __future__ import annotations

from typing import Any

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
    positive,
    work_dir,
)
from dlcr.errors import ConfigError

app = typer.Typer(help="DLCR data generation: masks, descriptions, plans, inpainting.", no_args_is_help=True)

DriverOpt = typer.Option("local", "--driver", help="local | torchrun | ray")
OverwriteOpt = flag(False, "--overwrite",
                    help="replace this stage's outputs in --work when they were made with other settings")


def required(g: Any, key: str, who: str, what: str) -> Any:
    """``generate.<key>``, which ``who`` needs: unset is a one-line error naming the setting."""
    value = getattr(g, key)
    if not value:
        raise ConfigError(f"{who} needs generate.{key}=<{what}>")
    return value


def _parser_spec(cfg: Any) -> tuple[str, dict[str, Any]]:
    """The configured parser as ``(name, options)``: nothing is built (see :func:`_parser`)."""
    g = cfg.generate
    opts: dict[str, Any] = {}
    if g.parser == "schp":
        opts["checkpoint"] = required(g, "parser_model", "parser 'schp'",
                                      "path to an SCHP checkpoint (LIP, ATR or Pascal-Person-Part)")
    elif g.parser == "hf":
        opts.update(model=required(g, "parser_model", "parser 'hf'", "hub id or folder"),
                    trust_remote_code=g.trust_remote_code)
    elif g.parser == "folder":
        opts["labels_dir"] = required(g, "parser_model", "parser 'folder'", "folder of label maps")
    # {segmenter class name: LIP id}, the escape hatch for class names the built-in tables miss
    if g.parser_label_map:
        if g.parser not in ("hf", "schp"):
            raise ConfigError(f"generate.parser_label_map applies to the 'hf' and 'schp' parsers, "
                              f"not to parser {g.parser!r}")
        opts["label_map"] = dict(g.parser_label_map)
    return g.parser, opts


def _parser(cfg: Any) -> Any:
    from dlcr.generation.parsers import create_parser

    name, opts = _parser_spec(cfg)
    return create_parser(name, **opts)


def _describer_specs(cfg: Any) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    """The configured captioner and summariser as ``(name, options)`` each: nothing is built."""
    g = cfg.generate
    copts: dict[str, Any] = {}
    sopts: dict[str, Any] = {}
    if g.captioner == "hf":
        copts.update(model=required(g, "captioner_model", "captioner 'hf'", "hub id or folder"),
                     trust_remote_code=g.trust_remote_code, pad_images=g.captioner_pad)
    elif g.captioner == "tiny":
        copts["pad_images"] = g.captioner_pad
    if g.summarizer == "hf":
        sopts.update(model=required(g, "summarizer_model", "summarizer 'hf'", "hub id or folder"),
                     trust_remote_code=g.trust_remote_code)
    return (g.captioner, copts), (g.summarizer, sopts)


def _describers(cfg: Any) -> tuple[Any, Any]:
    from dlcr.generation.describers import create_captioner, create_summarizer

    (cname, copts), (sname, sopts) = _describer_specs(cfg)
    return create_captioner(cname, **copts), create_summarizer(sname, **sopts)


def _spec_signature(registry: Any, spec: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    """The signature of a backend spec (what ``object_signature`` of the built backend gives)."""
    from dlcr.generation.signature import backend_signature

    return backend_signature(registry, *spec)


def masks_stage(cfg: Any, ds: Any, work: Any, with_queries: bool = True, overwrite: bool = False) -> Any:
    from dlcr.generation.parsers import PARSERS
    from dlcr.generation.stages import check_masks, query_splits, run_masks

    samples = list(ds.train)
    if with_queries:
        for split in query_splits(ds.splits):
            samples += ds.splits[split]
    spec = _parser_spec(cfg)
    if not overwrite:  # refuse before the parser (its model) is built; --overwrite builds first, then replaces
        check_masks(work, _spec_signature(PARSERS, spec))
    rep = run_masks(_parser(cfg), samples, ds.root, work, overwrite=overwrite)
    typer.echo(f"masks: {rep.summary()}")
    return rep


def describe_stage(cfg: Any, ds: Any, work: Any, overwrite: bool = False) -> Any:
    from dlcr.generation.describers import CAPTIONERS, SUMMARIZERS
    from dlcr.generation.stages import check_describe, run_describe

    cspec, sspec = _describer_specs(cfg)
    if not overwrite:  # refuse before any model is built; --overwrite builds first, then replaces
        check_describe(work, _spec_signature(CAPTIONERS, cspec), _spec_signature(SUMMARIZERS, sspec))
    cap, summ = _describers(cfg)
    rep = run_describe(ds.train, ds.root, work, captioner=cap, summarizer=summ, overwrite=overwrite)
    typer.echo(f"describe: {rep.summary()}")
    return rep


def plan_stage(cfg: Any, ds: Any, work: Any, overwrite: bool = False) -> list[Any]:
    from dlcr.generation.stages import run_plan

    g = cfg.generate
    jobs = run_plan(ds.train, work, k=g.k, seed=g.seed, allow_same_person=g.allow_same_person,
                    num_partitions=cfg.sampler.num_partitions, dataset=ds.name, generator=g.backend,
                    prompt_source=g.prompt_source, overwrite=overwrite)
    head = "replaced the earlier plan; " if getattr(jobs, "signature", "") == "overwritten" else ""
    typer.echo(f"plan: {head}{len(jobs)} jobs in {work}/jobs.parquet")
    return jobs


def inpaint_stage(cfg: Any, work: Any, root: Any, *, queries: bool, driver: str = "local",
                  overwrite: bool = False) -> Any:
    from dlcr.config_args import inpainter_options
    from dlcr.generation.stages import run_inpaint

    g = cfg.generate
    rep = run_inpaint(work, root, backend=g.backend, backend_options=inpainter_options(g.backend, g),
                      batch_size=g.batch_size, driver=driver, queries=queries, mask_region=g.mask_region,
                      overwrite=overwrite)
    typer.echo(f"{'queries' if queries else 'inpaint'}: {rep.summary()}")
    return rep


def queries_plan_stage(cfg: Any, ds: Any, work: Any, overwrite: bool = False) -> list[Any]:
    from dlcr.generation.stages import query_splits, run_plan_queries

    qs = [s for split in query_splits(ds.splits) for s in ds.splits[split]]
    jobs = run_plan_queries(qs, work, l=cfg.generate.query_variants, seed=cfg.generate.seed, dataset=ds.name,
                            generator=cfg.generate.backend, overwrite=overwrite)
    head = "replaced the earlier plan; " if getattr(jobs, "signature", "") == "overwritten" else ""
    typer.echo(f"queries: {head}{len(jobs)} jobs ({len(qs)} queries × l={cfg.generate.query_variants})")
    return jobs


@app.command("masks")
def masks_cmd(config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
              queries: bool = flag(True, "--queries/--no-queries", help="also parse the query images (for refinement)"),
              overwrite: bool = OverwriteOpt) -> None:
    """Human parsing → LIP label maps of the training (and query) images."""
    cfg = get_config(config, sets)
    ds = open_dataset(cfg)
    masks_stage(cfg, ds, work_dir(cfg, work), with_queries=queries, overwrite=overwrite)


@app.command("describe")
def describe_cmd(config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
                 overwrite: bool = OverwriteOpt) -> None:
    """Captions per training image → one outfit per clothes id (per-part vote)."""
    cfg = get_config(config, sets)
    describe_stage(cfg, open_dataset(cfg), work_dir(cfg, work), overwrite=overwrite)


@app.command("plan")
def plan_cmd(config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
             overwrite: bool = OverwriteOpt) -> None:
    """K target outfits per training image → jobs.parquet."""
    cfg = get_config(config, sets)
    plan_stage(cfg, open_dataset(cfg), work_dir(cfg, work), overwrite=overwrite)


@app.command("inpaint")
def inpaint_cmd(config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
                driver: str = DriverOpt, overwrite: bool = OverwriteOpt) -> None:
    """Generate the pending jobs of jobs.parquet (resumable)."""
    cfg = get_config(config, sets)
    inpaint_stage(cfg, work_dir(cfg, work), cfg.data.root, queries=False, driver=driver, overwrite=overwrite)


@app.command("queries")
def queries_cmd(config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
                driver: str = DriverOpt,
                plan_only: bool = flag(False, "--plan-only", help="only write query_jobs.parquet"),
                overwrite: bool = OverwriteOpt) -> None:
    """l clothes-changed variants per query image, for prediction refinement."""
    cfg = get_config(config, sets)
    ds = open_dataset(cfg)
    w = work_dir(cfg, work)
    queries_plan_stage(cfg, ds, w, overwrite=overwrite)
    if not plan_only:
        inpaint_stage(cfg, w, ds.root, queries=True, driver=driver, overwrite=overwrite)


@app.command("all")
def all_cmd(config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt, driver: str = DriverOpt,
            queries: bool = flag(True, "--queries/--no-queries", help="also generate the query variants"),
            overwrite: bool = OverwriteOpt) -> None:
    """masks → describe → plan → inpaint (→ queries), skipping what is already done.

    ``--overwrite`` replaces, stage by stage, the outputs made with other settings (and, through the
    signature chain, everything derived from them); outputs whose signature matches are resumed."""
    cfg = get_config(config, sets)
    ds = open_dataset(cfg)
    w = work_dir(cfg, work)
    masks_stage(cfg, ds, w, with_queries=queries, overwrite=overwrite)
    describe_stage(cfg, ds, w, overwrite=overwrite)
    plan_stage(cfg, ds, w, overwrite=overwrite)
    inpaint_stage(cfg, w, ds.root, queries=False, driver=driver, overwrite=overwrite)
    if queries:
        queries_plan_stage(cfg, ds, w, overwrite=overwrite)
        inpaint_stage(cfg, w, ds.root, queries=True, driver=driver, overwrite=overwrite)


@app.command("guidance-train")
def guidance_train_cmd(
    config: str = ConfigOpt, sets: list[str] = SetOpt, work: str = WorkOpt,
    out: str = typer.Option(None, "--out", help="checkpoint path",
                            show_default="<work>/guidance/discriminator.safetensors"),
    steps: int = typer.Option(2000, "--steps", callback=positive, help="optimisation steps (>= 1)"),
    batch_size: int = typer.Option(32, "--batch-size", callback=positive,
                                   help="latents per step (half real, half generated; >= 1)"),
    lr: float = typer.Option(2e-4, "--lr", help="Adam learning rate"),
    seed: int = typer.Option(None, "--seed", help="random seed", show_default="generate.seed"),
    mask_mode: str = typer.Option("none", "--mask-mode",
                                  help="none | input (mask multiplies the latents) | weight (mask weights the logits)"),
    max_images: int = typer.Option(5000, "--max-images",
                                   help="at most this many real and as many generated images, a seeded random "
                                        "subset; their latents are kept in memory (0: all)"),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP, show_default=DEVICE_DEFAULT),
    force: bool = flag(False, "--force", help="retrain even if the checkpoint exists"),
) -> None:
    """Train the discriminator for discriminator guidance: real training images vs generated ones.

    Uses the configured pipeline's own VAE (scaled latents) and noise schedule, so the checkpoint
    fits that pipeline; pass it to the diffusers inpainter as ``discriminator``.
    """
    from pathlib import Path

    from dlcr.distributed.env import resolve_device
    from dlcr.generation.guidance import (
        MASK_MODES,
        load_discriminator,
        save_discriminator,
        train_discriminator,
        work_training_sets,
    )

    cfg = get_config(config, sets)
    g = cfg.generate
    if mask_mode not in MASK_MODES:
        raise ConfigError(f"--mask-mode must be one of {', '.join(MASK_MODES)}, got {mask_mode!r}")
    if g.backend == "tiny":
        from dlcr.generation.tiny_models.diffusion import tiny_pipeline_path

        model, height, width = str(tiny_pipeline_path()), 64, 32  # the tiny backend's working size
    elif g.backend == "diffusers":
        model = required(g, "model", "discriminator guidance", "diffusers inpainting model")
        height, width = g.height, g.width
    else:
        raise ConfigError(f"discriminator guidance needs a diffusion backend (diffusers or tiny), not {g.backend!r}")
    ds = open_dataset(cfg)
    w = work_dir(cfg, work)
    target = Path(out) if out else w / "guidance" / "discriminator.safetensors"
    seed = g.seed if seed is None else seed
    if not force and target.with_suffix(".json").is_file():
        old = load_discriminator(target)  # a damaged checkpoint is an error, not a silent retrain
        if old.info.get("train_steps") == steps and old.info.get("seed") == seed:
            typer.echo(f"guidance-train: {target} already trained ({steps} steps); --force to retrain")
            return
    real, fake, masks = work_training_sets(ds.train, ds.root, w, masked=mask_mode != "none",
                                           max_images=max_images, seed=seed)
    dev = resolve_device(device)
    disc = train_discriminator(model, real, fake, masks, steps=steps, batch_size=batch_size, lr=lr, seed=seed,
                               device=dev, height=height, width=width,
                               mask_mode=mask_mode if mask_mode != "none" else None)
    disc.info["model"] = g.model if g.backend == "diffusers" else "tiny"
    save_discriminator(disc, target)
    typer.echo(f"guidance-train: {len(real)} real / {len(fake)} generated images, {steps} steps, final loss "
               f"{disc.info['final_loss']:.4f}, accuracy {disc.info['final_accuracy']:.3f} -> {target}")
