"""``dlcr ablate``: the rows of the paper's Table A1 on any configured dataset, one command.

Every arm (:mod:`dlcr.ablation`) trains with the configured recipe, the same seeds and epochs; only
``sampler.mode`` / ``sampler.schedule`` and the generated data differ. The generation stages run in
``--work`` (masks, descriptions, the dataset-outfit variants and the query variants of refinement),
``--work``'s siblings ``<work>_unmasked`` (row 2, ``generate.mask_region=person``) and
``<work>_random`` (row 3, ``generate.prompt_source=vocabulary``) share its masks and descriptions.
Each arm and seed is a run folder ``<out>/runs/<arm>_s<seed>`` (a ``dlcr train`` run) evaluated once on
the test set; ``<out>/results.json`` holds the table (mean ± std over seeds) and ``<out>/report.html``
shows it. Everything resumes: finished stages, runs and evaluations are reused when the settings
that made them are the same, and refused (one ``error:`` line) when they are not.
"""

from __future__ import annotations

import json
from pathlib import Path
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
    int_list,
    open_dataset,
    work_dir,
)
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

#: the report's retrieval panels need the test features; above this many test images they are not saved
MAX_SAVED_FEATURES = 100_000
INPUTS = "ablation_inputs.json"


def _file_hash(path: Path) -> str | None:
    from dlcr.generation.signature import file_sha256

    return file_sha256(path) if path.is_file() else None


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """What differs between two runs' inputs, in words (config keys named with their values)."""
    import yaml

    from dlcr.generation.signature_record import signature_diff

    parts = []
    if old.get("config") != new["config"]:
        a, b = ((yaml.safe_load(x["config"]) or {}) if isinstance(x.get("config"), str) else {} for x in (old, new))
        diff = signature_diff(a, b, limit=3)
        parts.append(f"settings ({diff})" if diff else "settings")
    parts += [k.replace("_", " ") for k in ("generated", "query_variants") if old.get(k) != new.get(k)]
    return " and ".join(parts) or "inputs"


def _check_inputs(run_dir: Path, inputs: dict[str, Any], *, write: bool = True) -> None:
    """Record what a run is made of (its resolved config, the generated data it reads); a run folder
    made of anything else is refused, never silently reused. ``write=False``: only check what is
    recorded (the keys given), before any work is done."""
    from dlcr.errors import ConfigError
    from dlcr.io.atomic import atomic_write_json

    path = run_dir / INPUTS
    if path.is_file():
        old = json.loads(path.read_text())
        if any(old.get(k) != v for k, v in inputs.items()):
            raise ConfigError(f"{run_dir} was made with other {_differences(old, {**old, **inputs})} than this "
                              "ablation asks for; choose another --out or remove that run folder")
    elif run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"{run_dir} holds files that this ablation did not write; choose another --out")
    elif write:
        atomic_write_json(path, inputs)


def _run_arm(cfg: Any, ds: Any, run_dir: Path, *, gen_dir: Path | None, query_dir: Path | None,
             device: str | None) -> None:
    """Train one arm and seed (resuming a stopped run), then evaluate it once on the test set (with
    refinement when ``query_dir`` is given) into ``run_dir/eval``."""
    import torch

    from dlcr.ablation import report_splits, write_eval
    from dlcr.cli.evaluate import load_model
    from dlcr.config import dump_yaml
    from dlcr.config_args import eval_settings, train_settings
    from dlcr.distributed.env import resolve_device
    from dlcr.engine.build import GeneratedData, TrainData
    from dlcr.engine.checkpoint_files import latest_checkpoint
    from dlcr.engine.evaluate import evaluate_model
    from dlcr.engine.trainer import train
    from dlcr.generation.outputs import GENERATED_MANIFEST
    from dlcr.io.tables import read_table

    inputs = {"config": dump_yaml(cfg),
              "generated": _file_hash(gen_dir / GENERATED_MANIFEST) if gen_dir is not None else None,
              "query_variants": _file_hash(query_dir / GENERATED_MANIFEST) if query_dir is not None else None}
    _check_inputs(run_dir, inputs)
    if (run_dir / "eval" / "metrics.json").is_file():
        log.info("[ablate] %s: done, reused", run_dir.name)
        return
    generated = None
    if gen_dir is not None:
        generated = GeneratedData(rows=read_table(gen_dir / GENERATED_MANIFEST), root=gen_dir)
    log.info("[ablate] %s: training %d epochs", run_dir.name, cfg.train.epochs)
    res = train(train_settings(cfg), TrainData.from_dataset(ds), run_dir, generated=generated,
                resume=latest_checkpoint(run_dir / "checkpoints") is not None, device=device)
    ckpt = res.best_checkpoint or res.last_checkpoint  # the validation's choice where there is a validation split
    dev = torch.device(resolve_device(device))
    model, _ = load_model(ckpt, cfg.model.name, dev)
    ev = cfg.eval
    n_test = sum(len(ds.splits[k]) for k in report_splits(ds.protocols))
    rows = read_table(query_dir / GENERATED_MANIFEST) if query_dir is not None else None
    log.info("[ablate] %s: evaluating %s on the test set%s", run_dir.name, ckpt.name,
             " (with prediction refinement)" if rows is not None else "")
    metrics = evaluate_model(model, ds.splits, ds.root, ds.protocols, eval_settings(cfg), device=dev,
                             video=ds.video, refine_rows=rows, refine_root=query_dir, l=ev.refine_l, m=ev.refine_m,
                             variant=ev.refine_variant, keep_features=n_test <= MAX_SAVED_FEATURES)
    write_eval(run_dir, metrics, ds.splits, ds.protocols)
    del model
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _generate(cfg: Any, ds: Any, w: Path, arms: tuple[str, ...], *, refine: bool, driver: str, arm_cfg: Any
              ) -> None:
    """Stage 1 in ``w`` once, then the generated data of every arm that needs them (each variant
    folder shares ``w``'s masks and descriptions), then the query variants when refinement is asked."""
    from dlcr.ablation import ARM_WORK, GEN_VARIANTS, share_work, variant_work
    from dlcr.cli.generate import describe_stage, inpaint_stage, masks_stage, plan_stage, queries_plan_stage

    masks_stage(cfg, ds, w, with_queries=refine)
    describe_stage(cfg, ds, w)
    variants = {variant_work(w, a): a for a in reversed(arms) if a != "baseline"}  # folder -> an arm using it
    for wv, arm in sorted(variants.items(), key=lambda kv: str(kv[0])):
        if wv != w:
            share_work(w, wv)
        region, source = GEN_VARIANTS[ARM_WORK[arm]]
        log.info("[ablate] generated data in %s: %s mask, %s prompts", wv, region, source)
        acfg = arm_cfg(arm)
        plan_stage(acfg, ds, wv)
        inpaint_stage(acfg, wv, ds.root, queries=False, driver=driver)
    if refine:
        queries_plan_stage(cfg, ds, w)
        inpaint_stage(cfg, w, ds.root, queries=True, driver=driver)


def ablate_cmd(
    config: str = ConfigOpt,
    sets: list[str] = SetOpt,
    work: str = WorkOpt,
    out: str = typer.Option(None, "--out", help="ablation folder (runs/, results.json, report.html; resumable)",
                            show_default="<train.out_dir>/ablation_<dataset>"),
    seeds: str = typer.Option("0", "--seeds", help="training seeds, comma-separated, e.g. 0,1,2"),
    rows: str = typer.Option("1,2,3,4,5,6", "--rows", help="Table A1 rows to run, comma-separated (6 needs 5's "
                             "model, which it trains)"),
    concat: bool = flag(True, "--concat/--no-concat", help="also train the concatenated arm (row 4's data, no pairing)"),
    driver: str = typer.Option("local", "--driver", help="inpainting driver: local | torchrun | ray"),
    device: str = typer.Option(None, "--device", help=DEVICE_HELP, show_default=DEVICE_DEFAULT),
    report: bool = flag(True, "--report/--no-report", help="write <out>/report.html"),
) -> None:
    """Train and evaluate the paper's Table A1 rows on one dataset → results.json + report.html."""
    from dlcr.ablation import arm_sets, arms_for_rows, collect_results, results_table, variant_work, versions
    from dlcr.config import dump_yaml
    from dlcr.generation import stages
    from dlcr.io.atomic import atomic_write_json

    seed_list = int_list(seeds, "--seeds")
    arms, refine = arms_for_rows(int_list(rows, "--rows"), concat)
    cfg = get_config(config, sets)
    ds = open_dataset(cfg)
    w = work_dir(cfg, work)
    folder = Path(out) if out else Path(cfg.train.out_dir) / f"ablation_{cfg.data.name}"

    def arm_cfg(arm: str, *extra: str) -> Any:  # the user's overrides, then the arm's (which win)
        return get_config(config, [*sets, *arm_sets(arm), *extra])

    runs = folder / "runs"
    arm_cfgs = {(arm, seed): arm_cfg(arm, f"train.seed={seed}") for seed in seed_list for arm in arms}
    for (arm, seed), acfg in arm_cfgs.items():  # a stale run is refused before any work is done
        _check_inputs(runs / f"{arm}_s{seed}", {"config": dump_yaml(acfg)}, write=False)

    _generate(cfg, ds, w, arms, refine=refine, driver=driver, arm_cfg=arm_cfg)
    for (arm, seed), acfg in arm_cfgs.items():
        gen_dir = None if arm == "baseline" else variant_work(w, arm) / stages.GENERATED
        qdir = w / stages.QUERY_GENERATED if refine and arm == "dlcr_progressive" else None
        _run_arm(acfg, ds, runs / f"{arm}_s{seed}", gen_dir=gen_dir, query_dir=qdir, device=device)

    results = collect_results(runs, arms, seed_list, refined=refine, epochs=cfg.train.epochs)
    results["meta"] = {"kind": "ablation", "dataset": cfg.data.name, "config": config, "sets": list(sets),
                       "seeds": seed_list, "rows": sorted(int_list(rows, "--rows")), "arms": list(arms),
                       "epochs": cfg.train.epochs, "backend": cfg.generate.backend, "k": cfg.generate.k,
                       "l": cfg.eval.refine_l, "m": cfg.eval.refine_m, "work": str(w.resolve()), "runs": "runs",
                       "images": str(Path(ds.root).resolve()),
                       "versions": versions()}
    atomic_write_json(folder / "results.json", results)
    typer.echo(results_table(results))
    typer.echo(f"results: {folder / 'results.json'}")
    if report:
        from dlcr.report import build_demo_report

        typer.echo(f"report: {build_demo_report(folder)}")
