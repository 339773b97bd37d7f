"""``dlcr evaluate``: a checkpoint on the configured dataset's protocols (+ prediction refinement,
+ k-reciprocal re-ranking)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from dlcr.cli.common import (
    DEVICE_DEFAULT,
    DEVICE_HELP,
    ConfigOpt,
    SetOpt,
    WorkOpt,
    get_config,
    open_dataset,
    positive,
    work_dir,
)


def load_model(checkpoint: str | Path, fallback_arch: str, device: Any = None) -> tuple[Any, dict]:
    """Rebuild the model a checkpoint was trained with and load its weights (safetensors only).

    ``checkpoint``: a checkpoint's ``.json`` / ``.safetensors`` file or a run's ``checkpoints/``
    folder (its latest complete checkpoint). Only the weights file is read; the saved RNG states are not restored.
    """
    from dlcr.engine.checkpoint import PICKLE_SUFFIXES, load_checkpoint, read_checkpoint_meta
    from dlcr.errors import CheckpointError
    from dlcr.models import create_model, model_options

    p = Path(checkpoint)
    if p.suffix.lower() in PICKLE_SUFFIXES:  # unpickling can run code chosen by the file's author
        raise CheckpointError(f"refusing to load pickle file {p}: `dlcr evaluate` reads dlcr checkpoints "
                              "(<name>.json + <name>.safetensors); in Python, load_checkpoint(path, "
                              "allow_pickle=True) reads a trusted pickle with weights_only=True")
    meta_file, meta = read_checkpoint_meta(p)
    num_pids = int(meta.get("num_pids") or 0)
    if num_pids < 1:
        raise CheckpointError(f"{meta_file} does not record the number of training identities")
    arch = meta.get("arch") or fallback_arch
    saved = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    saved_model = saved.get("model") if isinstance(saved.get("model"), dict) else {}
    model = create_model(arch, num_pids, pretrained=None,
                         **model_options(arch, saved_model.get("widths"), backbone=saved_model.get("backbone")))
    state = load_checkpoint(meta_file, model=model, map_location="cpu", restore_rng=False)
    if device is not None:
        model.to(device)
    return model, state


def trained_dataset(state: dict) -> str | None:
    """The dataset name a checkpoint's recorded config trained on (``None`` when not recorded)."""
    saved = state.get("config")
    data = saved.get("data") if isinstance(saved, dict) else None
    name = data.get("name") if isinstance(data, dict) else None
    return str(name) if name else None


def evaluate_cmd(
    checkpoint: str = typer.Option(..., "--checkpoint", help="checkpoint .json (or a run's checkpoints/ folder)"),
    config: str = ConfigOpt,
    sets: list[str] = SetOpt,
    work: str = WorkOpt,
    refine: bool = typer.Option(False, "--refine", metavar="",  # a flag: no <bool> in the help
                                help="prediction refinement with generated query variants (also on when "
                                     "eval.refine is set)"),
    l: int = typer.Option(None, "--l", callback=positive, help="variants per query (>= 1)",  # noqa: E741
                          show_default="eval.refine_l"),
    m: int = typer.Option(None, "--m", callback=positive, help="top-m retrievals (>= 1)", show_default="eval.refine_m"),
    variant: str = typer.Option(None, "--variant", help="paper | official", show_default="eval.refine_variant"),
    rerank: bool = typer.Option(False, "--rerank", metavar="",
                                help="k-reciprocal re-ranking as extra results (also on when eval.rerank is set)"),
    k1: int = typer.Option(None, "--k1", callback=positive, help="re-ranking's k1 (>= 1)",
                           show_default="eval.rerank_k1"),
    k2: int = typer.Option(None, "--k2", callback=positive, help="re-ranking's k2 (>= 1)",
                           show_default="eval.rerank_k2"),
    lambda_value: float = typer.Option(None, "--lambda", help="re-ranking's weight of the original distance "
                                       "(0..1)", show_default="eval.rerank_lambda"),
    order: str = typer.Option("both", "--order", help="with --rerank and --refine: rerank-refine | "
                              "refine-rerank | both"),
    out: str = typer.Option(None, "--out", help="folder for metrics.json", show_default="<run>/eval"),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP, show_default=DEVICE_DEFAULT),
) -> None:
    """Standard / same-clothes / clothes-changing CMC, mAP, mINP (and refined, re-ranked) → metrics.json."""
    import torch

    from dlcr.config_args import eval_settings, rerank_settings
    from dlcr.distributed.env import resolve_device
    from dlcr.engine.evaluate import evaluate_model
    from dlcr.errors import ConfigError, InputError
    from dlcr.evaluation.rerank_eval import rerank_orders
    from dlcr.generation.outputs import GENERATED_MANIFEST
    from dlcr.generation.stages import QUERY_GENERATED
    from dlcr.io.atomic import atomic_write_json
    from dlcr.io.tables import read_table

    cfg = get_config(config, sets)
    ev = cfg.eval
    variant = ev.refine_variant if variant is None else variant
    if variant not in ("paper", "official"):
        raise ConfigError(f"--variant must be 'paper' or 'official', got {variant!r}")
    rr = rerank_settings(cfg, k1, k2, lambda_value) if rerank or ev.rerank else None
    orders = rerank_orders(order)  # a misspelt order fails before the model is loaded
    dev = torch.device(resolve_device(device))
    ds = open_dataset(cfg)
    model, state = load_model(checkpoint, cfg.model.name, dev)
    rows = None
    qdir = work_dir(cfg, work) / QUERY_GENERATED
    if refine or ev.refine:
        if not (qdir / GENERATED_MANIFEST).is_file():
            raise InputError(f"refinement needs query variants, but {qdir / GENERATED_MANIFEST} is missing; "
                             "run `dlcr generate queries` first")
        rows = read_table(qdir / GENERATED_MANIFEST)
    # the input size the model was trained at wins over the config's, unless set explicitly (then warned)
    explicit = {item.split("=", 1)[0].strip() for item in sets}
    st = eval_settings(cfg).for_checkpoint(state.get("config"), explicit, source=str(state.get("path") or checkpoint))
    metrics = evaluate_model(model, ds.splits, ds.root, ds.protocols, st, device=dev, video=ds.video,
                             refine_rows=rows, refine_root=qdir, l=ev.refine_l if l is None else l,
                             m=ev.refine_m if m is None else m,
                             variant=variant, rerank=rr, rerank_order=orders)
    ck = Path(checkpoint)
    trained_on = trained_dataset(state)
    cross = trained_on is not None and trained_on != cfg.data.name
    if cross:  # zero-shot on another benchmark (the paper's Table 4): only the features are used
        typer.echo(f"cross-dataset: model trained on {trained_on} ({int(state.get('num_pids') or 0)} identities), "
                   f"evaluated on {cfg.data.name}")
    # a cross-dataset evaluation never overwrites the run's own eval/ folder
    default_out = (ck.parent if ck.suffix else ck).parent / (f"eval_{cfg.data.name}" if cross else "eval")
    out_dir = Path(out) if out else default_out
    atomic_write_json(out_dir / "metrics.json", metrics)
    print_metrics(metrics)
    typer.echo(f"metrics: {out_dir / 'metrics.json'}")
    skipped = [f"{name} {int(r['num_skipped'])}/{int(r['num_skipped']) + int(r.get('num_queries', 0))}"
               for name, r in metrics.items() if int(r.get("num_skipped", 0))]
    if skipped:
        typer.echo("warning: queries without a valid match in the gallery were skipped: " + ", ".join(skipped),
                   err=True)


def print_metrics(metrics: dict[str, Any]) -> None:
    """One line per result (plain, refined, re-ranked): top-1/5/10, mAP, mINP in percent, queries."""
    w = max(20, *(len(name) + 2 for name in metrics))
    typer.echo(f"{'protocol':<{w}}{'top1':>8}{'top5':>8}{'top10':>8}{'mAP':>8}{'mINP':>8}{'queries':>9}")
    for name, r in metrics.items():
        typer.echo(f"{name:<{w}}" + "".join(f"{100 * r[k]:>8.2f}" for k in ("top1", "top5", "top10", "mAP", "mINP"))
                   + f"{int(r.get('num_queries', 0)):>9}")
