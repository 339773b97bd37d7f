"""The training runs of a demo folder (``runs/<arm>_s<seed>/``) and the test features and image
paths a run saved (``eval/features.npz``, ``eval/paths.json``)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.errors import InputError
from dlcr.report.common import BASELINE, DLCR, _read_json


def find_runs(root: Path) -> dict[str, dict[int, Path]]:
    """``runs/<arm>_s<seed>/`` folders as {arm: {seed: path}}."""
    runs: dict[str, dict[int, Path]] = {}
    base = root / "runs"
    if not base.is_dir():
        return runs
    for d in sorted(base.iterdir()):
        m = re.fullmatch(r"(.+)_s(\d+)", d.name)
        if m and d.is_dir():
            runs.setdefault(m.group(1), {})[int(m.group(2))] = d
    return runs


def _run_for(arm: str, runs: Mapping[str, Mapping[int, Path]], results: Mapping[str, Any] | None) -> Path | None:
    seeds = runs.get(arm) or {}
    if not seeds:
        return None
    wanted = []
    if results and isinstance(results.get(arm), Mapping):
        wanted.append(results[arm].get("seed"))
    if results and isinstance(results.get("meta"), Mapping):
        wanted += list(results["meta"].get("seeds") or [])[:1]
    for s in wanted:
        if isinstance(s, int) and s in seeds:
            return seeds[s]
    return seeds[min(seeds)]


FEATURE_KEYS = ("q_feats", "q_pids", "q_camids", "q_clothes", "g_feats", "g_pids", "g_camids", "g_clothes")


def load_features(run: Path) -> dict[str, np.ndarray]:
    path = run / "eval" / "features.npz"
    if not path.is_file():
        raise InputError(f"{path} not found")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in FEATURE_KEYS if k not in z.files]
        if missing:
            raise InputError(f"{path} lacks {', '.join(missing)}")
        f = {k: np.asarray(z[k]) for k in FEATURE_KEYS}
    for side in ("q", "g"):
        n = f[f"{side}_feats"].shape[0]
        if f[f"{side}_feats"].ndim != 2 or any(f[f"{side}_{k}"].shape != (n,) for k in ("pids", "camids", "clothes")):
            raise InputError(f"{path}: {side}_* arrays have inconsistent shapes")
    if f["q_feats"].shape[1] != f["g_feats"].shape[1]:
        raise InputError(f"{path}: query and gallery features differ in width")
    return f


def _compared_runs(root: Path, results: Mapping[str, Any] | None
                   ) -> tuple[tuple[Path, dict[str, np.ndarray]], tuple[Path, dict[str, np.ndarray]]] | None:
    """(run folder, features) of the baseline and of the DLCR arm, or None when either run is missing."""
    runs = find_runs(root)
    rb, rd = _run_for(BASELINE, runs, results), _run_for(DLCR, runs, results)
    if rb is None or rd is None:
        return None
    return (rb, load_features(rb)), (rd, load_features(rd))


def load_paths(run: Path) -> dict[str, list[str]] | None:
    path = run / "eval" / "paths.json"
    if not path.is_file():
        return None
    d = _read_json(path)
    if not isinstance(d, Mapping) or not all(isinstance(d.get(k), list) for k in ("query", "gallery")):
        raise InputError(f"{path} must hold lists 'query' and 'gallery'")
    return {"query": [str(p) for p in d["query"]], "gallery": [str(p) for p in d["gallery"]]}


def _align(order: Sequence[str], other: Sequence[str], what: str) -> np.ndarray:
    """Index array taking ``other``'s rows into ``order``'s order (they must hold the same paths)."""
    if list(order) == list(other):
        return np.arange(len(order))
    pos = {p: i for i, p in enumerate(other)}
    if len(pos) != len(other) or set(pos) != set(order):
        raise InputError(f"the two runs were evaluated on different {what} sets")
    return np.array([pos[p] for p in order])


def check_paths(run: Path, f: Mapping[str, np.ndarray], p: Mapping[str, Sequence[str]]) -> None:
    if len(p["query"]) != len(f["q_pids"]) or len(p["gallery"]) != len(f["g_pids"]):
        raise InputError(f"{run}/eval: paths.json and features.npz disagree in length")
