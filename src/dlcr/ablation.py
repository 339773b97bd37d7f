"""The paper's ablation (Table A1): which arms it trains, how each arm differs, and its table.

One definition serves ``dlcr demo`` (the embedded world) and ``dlcr ablate`` (any configured
dataset). Every arm of one seed shares the dataset, the masks, the descriptions and the recipe; only
the use of the generated data (``sampler.mode`` / ``sampler.schedule``) and, for rows 2 and 3, the
generated data itself differ:

1. ``baseline``: the originals only (``sampler.mode=none``);
2. ``dlcr_unmasked``: generated data without the ID-preserving mask ("standard diffusion": the whole
   person repainted, identity cues included; ``generate.mask_region=person``, in ``<work>_unmasked``);
3. ``dlcr_random_prompts``: the clothes mask, random garment-vocabulary prompts instead of the
   dataset's outfits (Table A3 row 1; ``generate.prompt_source=vocabulary``, in ``<work>_random``);
4. ``dlcr_paired``: the clothes mask and the dataset's own described outfits (``<work>``);
5. ``dlcr_progressive``: + progressive learning (the config's ``sampler.schedule``);
6. ``dlcr_progressive_refined``: row 5's model evaluated with prediction refinement.

Rows 2-4 pair every real image with one of its variants with no curriculum (``sampler.schedule=all``).
``dlcr_concat``: the data of row 4 concatenated to the originals (no pairing, no curriculum).

Re-ranking (:data:`RERANKED_ARMS`): where a run's ``metrics.json`` has k-reciprocal re-ranked results
(the demo evaluates :data:`RERANK_EVAL_ARMS` with ``rerank``), :func:`collect_results` adds them as
arms of their own next to the trained ones: ``baseline_reranked``, ``dlcr_progressive_reranked`` and,
with refinement, ``dlcr_progressive_reranked_refined`` (re-rank, then refine) and
``dlcr_progressive_refined_reranked`` (refine, then re-rank). They are not rows of Table A1.

A run folder per arm and seed, ``<runs>/<arm>_s<seed>/``, holds the training run and its one test
evaluation in ``eval/`` (``metrics.json``, ``features.npz``, ``paths.json`` and, for the refined
model, ``refined_sims.npy``): :func:`collect_results` turns them into ``results.json``'s per-arm
means, ``table_a1`` and ``curves`` (see :mod:`dlcr.demo` for the keys).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.generation import stages

#: trained arms, in Table A1 order, then the concatenated arm
ARMS = ("baseline", "dlcr_unmasked", "dlcr_random_prompts", "dlcr_paired", "dlcr_progressive", "dlcr_concat")
#: the arms of the demo without the ablation rows 2-4
CORE_ARMS = ("baseline", "dlcr_concat", "dlcr_progressive")
REFINED_ARM = "dlcr_progressive_refined"
RESULT_ARMS = ARMS + (REFINED_ARM,)
MODE = {"baseline": "none", "dlcr_unmasked": "paired", "dlcr_random_prompts": "paired", "dlcr_paired": "paired",
        "dlcr_progressive": "paired", "dlcr_concat": "concat"}
#: sampler.schedule per arm (absent: the config's own)
SCHEDULE = {"dlcr_unmasked": "all", "dlcr_random_prompts": "all", "dlcr_paired": "all"}
#: the generated data an arm trains on: work-folder suffix -> (generate.mask_region, generate.prompt_source)
GEN_VARIANTS = {"": ("clothes", "dataset"), "_unmasked": ("person", "dataset"), "_random": ("clothes", "vocabulary")}
ARM_WORK = {"dlcr_unmasked": "_unmasked", "dlcr_random_prompts": "_random", "dlcr_paired": "",
            "dlcr_progressive": "", "dlcr_concat": ""}
#: Table A1: (row, arm, what the row adds)
TABLE_A1: tuple[tuple[int, str, str], ...] = (
    (1, "baseline", "CAL baseline (originals only)"),
    (2, "dlcr_unmasked", "+ generated data, no ID-preserving mask (standard diffusion)"),
    (3, "dlcr_random_prompts", "+ ID-preserving mask, random vocabulary prompts"),
    (4, "dlcr_paired", "+ ID-preserving mask, the dataset's described outfits"),
    (5, "dlcr_progressive", "+ progressive learning"),
    (6, REFINED_ARM, "+ prediction refinement"),
)
#: results of re-ranking at test time: arm -> (trained arm, suffix of its metrics.json entries, label)
RERANKED_ARMS: dict[str, tuple[str, str, str]] = {
    "baseline_reranked": ("baseline", "_reranked", "Baseline + re-ranking"),
    "dlcr_progressive_reranked": ("dlcr_progressive", "_reranked", "DLCR, progressive + re-ranking"),
    "dlcr_progressive_reranked_refined": ("dlcr_progressive", "_reranked_refined",
                                          "DLCR, progressive + re-ranking, then refinement"),
    "dlcr_progressive_refined_reranked": ("dlcr_progressive", "_refined_reranked",
                                          "DLCR, progressive + refinement, then re-ranking"),
}
#: the trained arms whose test evaluation the demo also re-ranks, and with which (k1, k2, lambda)
RERANK_EVAL_ARMS = ("baseline", "dlcr_progressive")
RERANK_PARAMS = (20, 6, 0.3)
CONCAT_ROW = ("dlcr_concat", "the dataset's described outfits, concatenated (no pairing, no curriculum)")
METRIC_KEYS = ("cc_top1", "cc_map", "sc_top1", "sc_map", "top1", "map")
CURVE_KEYS = {"val_top1": "val_top1", "val_map": "val_mAP", "val_cc_top1": "val_cc_top1",
              "val_cc_map": "val_cc_mAP", "loss": "loss"}
#: the files a work folder's ablation variants share with it (masks and descriptions)
SHARED_WORK = (stages.MASKS, stages.CAPTIONS, stages.OUTFITS, "captions.signature.json", "outfits.signature.json")


def arm_sets(arm: str) -> list[str]:
    """The config overrides that make ``arm`` out of a recipe: the sampler's use of generated data
    and which generated data (mask region, prompt source)."""
    region, source = GEN_VARIANTS[ARM_WORK.get(arm, "")]
    return [f"sampler.mode={MODE[arm]}", *([f"sampler.schedule={SCHEDULE[arm]}"] if arm in SCHEDULE else []),
            f"generate.mask_region={region}", f"generate.prompt_source={source}"]


def arms_for_rows(rows: Sequence[int], concat: bool) -> tuple[tuple[str, ...], bool]:
    """(trained arms in :data:`ARMS` order, whether refinement is evaluated) for Table A1 ``rows``
    (row 6 needs row 5's model) and the concatenated arm."""
    from dlcr.errors import ConfigError

    known = {n for n, _, _ in TABLE_A1}
    bad = sorted(set(rows) - known)
    if bad:
        raise ConfigError(f"Table A1 has rows 1-6, not {', '.join(map(str, bad))}")
    wanted = {arm for n, arm, _ in TABLE_A1 if n in rows and n != 6}
    if 6 in rows:
        wanted.add("dlcr_progressive")
    if concat:
        wanted.add(CONCAT_ROW[0])
    if not wanted:
        raise ConfigError("no arm to train: name at least one Table A1 row or keep the concatenated arm")
    return tuple(a for a in ARMS if a in wanted), 6 in rows


def variant_work(work: Path, arm: str) -> Path:
    """The work folder holding ``arm``'s generated data: ``work`` itself or its sibling ``<work><suffix>``."""
    suffix = ARM_WORK.get(arm, "")
    return work if not suffix else work.with_name(work.name + suffix)


def share_work(work: Path, other: Path) -> None:
    """Make ``other`` a work folder that shares ``work``'s masks and descriptions (links; copies where
    links are not possible), so an ablation variant's generated data lives in its own folder."""
    other.mkdir(parents=True, exist_ok=True)
    for name in SHARED_WORK:
        src, dst = work / name, other / name
        if not src.exists() or dst.is_symlink() or dst.exists():
            continue
        try:
            dst.symlink_to(os.path.relpath(src, other), target_is_directory=src.is_dir())
        except OSError:
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, dst)


# ----------------------------------------------------------------------------- one arm's test evaluation
def report_splits(protocols: Sequence[Any]) -> tuple[str, str]:
    """The (query, gallery) splits whose features the report's panels show: the clothes-changing
    protocol's (``cc``; PRCC's ``query_diff``), else the first protocol's."""
    p = next((p for p in protocols if p.name == "cc"), protocols[0])
    return p.query, p.gallery


def write_eval(run_dir: Path, metrics: dict[str, Any], splits: Mapping[str, Sequence[Any]],
               protocols: Sequence[Any]) -> None:
    """``run_dir/eval``: the features and image paths the report's retrieval panels read (of
    :func:`report_splits`), the refined similarities when ``metrics`` has them, and ``metrics.json``
    last (its presence means done)."""
    from dlcr.engine.evaluate import save_features
    from dlcr.io.atomic import atomic_write, atomic_write_json

    feats = metrics.pop("_features", None)
    extras = metrics.pop("_extras", None) or {}
    ev = run_dir / "eval"
    ev.mkdir(parents=True, exist_ok=True)
    q, g = report_splits(protocols)
    if feats is not None:
        save_features(ev / "features.npz", feats[q], feats[g])
        atomic_write_json(ev / "paths.json", {"query": [s.path for s in splits[q]],
                                              "gallery": [s.path for s in splits[g]]})
    refined = next((f"{p.name}_refined_sims" for p in protocols if (p.query, p.gallery) == (q, g)
                    and f"{p.name}_refined_sims" in extras), None)
    if refined is not None:
        with atomic_write(ev / "refined_sims.npy", "wb") as fh:
            np.save(fh, np.asarray(extras[refined], dtype=np.float32))
    atomic_write_json(ev / "metrics.json", metrics)


# ----------------------------------------------------------------------------- results
def versions() -> dict[str, str]:
    """Python's and the main packages' versions, for ``results.json``."""
    import importlib.metadata as md
    import platform

    out = {"python": platform.python_version()}
    for pkg in ("dlcr", "torch", "torchvision", "numpy", "diffusers", "transformers"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


#: Table A1's metrics: (protocol, key in its metrics)
METRIC_SOURCES = {"cc_top1": ("cc", "top1"), "cc_map": ("cc", "mAP"), "sc_top1": ("sc", "top1"),
                  "sc_map": ("sc", "mAP"), "top1": ("standard", "top1"), "map": ("standard", "mAP")}


def metric_row(metrics: Mapping[str, Any], suffix: str = "") -> dict[str, float | None]:
    """The six Table A1 metrics of one ``metrics.json`` (``suffix="_refined"``: the refined ones);
    None for a protocol the dataset does not have (PRCC has no ``standard``, LaST no ``sc``/``cc``)."""
    out: dict[str, float | None] = {}
    for k, (proto, key) in METRIC_SOURCES.items():
        r = metrics.get(f"{proto}{suffix}")
        out[k] = None if r is None else float(r[key])
    return out


def aggregate(per_seed: Sequence[dict[str, float]]) -> dict[str, Any]:
    """Mean and sample std over seeds of each metric, with the per-seed rows."""
    out: dict[str, Any] = {}
    for k in METRIC_KEYS:
        if any(r[k] is None for r in per_seed):  # a protocol the dataset does not have
            out[k] = out[f"{k}_std"] = None
            continue
        vals = np.array([r[k] for r in per_seed], dtype=np.float64)
        out[k] = float(vals.mean())
        out[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    out["seed"] = int(per_seed[0]["seed"])
    out["seeds"] = [int(r["seed"]) for r in per_seed]
    out["per_seed"] = list(per_seed)
    return out


def curves_of(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The validation points of a ``history.json`` list (epochs at which the validation ran)."""
    out = []
    for rec in history:
        if "val_cc_top1" not in rec:
            continue
        out.append({"epoch": int(rec["epoch"]), **{k: float(rec[src]) for k, src in CURVE_KEYS.items() if src in rec}})
    return out


def aggregate_curves(per_seed: dict[int, list[dict[str, Any]]]) -> dict[str, Any]:
    """Mean (and std) over seeds of each curve, on the epochs every seed evaluated."""
    seeds = sorted(per_seed)
    common = sorted(set.intersection(*[{p["epoch"] for p in per_seed[s]} for s in seeds])) if seeds else []
    out: dict[str, Any] = {"epochs": common, "seeds": seeds}
    for k in CURVE_KEYS:
        vals = np.array([[next(p[k] for p in per_seed[s] if p["epoch"] == e) for e in common] for s in seeds],
                        dtype=np.float64).reshape(len(seeds), len(common))
        out[k] = [float(v) for v in vals.mean(axis=0)] if seeds else []
        out[f"{k}_std"] = [float(v) for v in (vals.std(axis=0, ddof=1) if len(seeds) > 1 else vals[0] * 0)]
    out["per_seed"] = {str(s): per_seed[s] for s in seeds}
    return out


def table_a1(results: Mapping[str, Any], *, seeds: Sequence[int], epochs: int) -> dict[str, Any]:
    """The Table A1 rows (mean ± std over seeds) out of the per-arm results."""

    def row(arm: str) -> dict[str, Any]:
        base = arm.removesuffix("_refined")
        region, source = GEN_VARIANTS[ARM_WORK.get(base, "")]
        r = results[arm]
        return {"arm": arm, "mask_region": None if base == "baseline" else region,
                "prompt_source": None if base == "baseline" else source,
                "sampler": MODE[base] + ("" if MODE[base] == "none" else f"/{SCHEDULE.get(base, 'progressive')}"),
                "refine": arm.endswith("_refined"),
                **{k: r[k] for k in METRIC_KEYS}, **{f"{k}_std": r[f"{k}_std"] for k in METRIC_KEYS}}

    rows = [{"row": n, "name": name, **row(arm)} for n, arm, name in TABLE_A1 if arm in results]
    concat = {"row": "concat", "name": CONCAT_ROW[1], **row(CONCAT_ROW[0])} if CONCAT_ROW[0] in results else None
    return {"rows": rows, "concat": concat, "metrics": list(METRIC_KEYS), "seeds": list(seeds), "epochs": epochs}


def collect_results(runs: Path, arms: Sequence[str], seeds: Sequence[int], *, refined: bool, epochs: int
                    ) -> dict[str, Any]:
    """Per-arm means over seeds, ``table_a1`` and ``curves`` from ``runs/<arm>_s<seed>/`` folders whose
    evaluation is done; the refined row comes from ``dlcr_progressive``'s ``*_refined`` metrics, the
    re-ranked arms (:data:`RERANKED_ARMS`) from the ``*_reranked*`` ones where every seed has them."""
    per_arm: dict[str, list[dict[str, float]]] = {a: [] for a in (*arms, REFINED_ARM)}
    curves: dict[str, dict[int, list[dict[str, Any]]]] = {a: {} for a in arms}
    reranked: dict[str, list[dict[str, Any]]] = {a: [] for a, (src, _, _) in RERANKED_ARMS.items() if src in arms}
    for seed in seeds:
        for arm in arms:
            run_dir = runs / f"{arm}_s{seed}"
            metrics = json.loads((run_dir / "eval" / "metrics.json").read_text())
            per_arm[arm].append({**metric_row(metrics), "seed": seed})
            if refined and arm == "dlcr_progressive":
                per_arm[REFINED_ARM].append({**metric_row(metrics, "_refined"), "seed": seed})
            for name, (src, suffix, _) in RERANKED_ARMS.items():
                if src == arm and (refined or "refined" not in suffix) and _has(metrics, suffix):
                    reranked[name].append({**metric_row(metrics, suffix), "seed": seed})
            hist = run_dir / "history.json"
            curves[arm][seed] = curves_of(json.loads(hist.read_text())) if hist.is_file() else []
    per_arm.update({a: rows for a, rows in reranked.items() if len(rows) == len(seeds)})
    results: dict[str, Any] = {arm: aggregate(rows) for arm, rows in per_arm.items() if rows}
    results["table_a1"] = table_a1(results, seeds=seeds, epochs=epochs)
    results["curves"] = {arm: aggregate_curves(c) for arm, c in curves.items()}
    return results


def _has(metrics: Mapping[str, Any], suffix: str) -> bool:
    """Whether ``metrics`` holds results with ``suffix`` for any Table A1 protocol."""
    return any(f"{proto}{suffix}" in metrics for proto, _ in METRIC_SOURCES.values())


def results_table(results: Mapping[str, Any]) -> str:
    """The Table A1 rows (and the concatenated arm, then any re-ranked arm, marked ``rr``) as printed
    text, in percent (± std over seeds)."""
    many = len(results.get("meta", {}).get("seeds") or [0]) > 1
    width = 15 if many else 9
    tbl = results.get("table_a1") or table_a1(results, seeds=(0,), epochs=0)
    rows = [(str(r["row"]) if r["row"] != "concat" else "+", r)
            for r in list(tbl["rows"]) + ([tbl["concat"]] if tbl.get("concat") else [])]
    rows += [("rr", {"arm": a, **results[a]}) for a in RERANKED_ARMS if isinstance(results.get(a), Mapping)]
    aw = max(28, *(len(r["arm"]) + 2 for _, r in rows)) if rows else 28
    lines = [f"{'':<3}{'arm':<{aw}}" + "".join(f"{k:>{width}}" for k in METRIC_KEYS)]
    for mark, r in rows:
        cells = "".join(f"{'-':>{width}}" if r[k] is None else
                        (f"{100 * r[k]:>8.1f} ± {100 * r[k + '_std']:<4.1f}" if many else f"{100 * r[k]:>{width}.1f}")
                        for k in METRIC_KEYS)
        lines.append(f"{mark:<3}{r['arm']:<{aw}}{cells}")
    return "\n".join(lines)
