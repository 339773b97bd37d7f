"""The report of a training run folder (``dlcr train``): final metrics, loss and metric curves, the
checkpoints, the resolved config, and retrieval panels when the run saved test features
(:func:`run_report`)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.errors import InputError
from dlcr.report.common import N_QUERIES, Report, Skip, _Assets, _e, _note, _to_percent
from dlcr.report.page import write_page
from dlcr.report.retrieval import LEGEND, cc_ranks, ranked_lists
from dlcr.report.runs import check_paths, load_features, load_paths


def read_log(run: Path) -> tuple[list[dict[str, Any]], str]:
    """Per-epoch records of a run (``log.jsonl``, else ``history.json``), one per epoch (the last
    written wins: a resumed run re-logs the epochs after its checkpoint), and where they came from."""
    path = run / "log.jsonl"
    records: list[dict[str, Any]] = []
    bad = 0
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                bad += 1  # a line cut short by a kill
                continue
            if isinstance(r, dict):
                records.append(r)
        source = str(path) + (f" ({bad} unreadable line(s) left out)" if bad else "")
    elif (run / "history.json").is_file():
        path = run / "history.json"
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not valid JSON: {e}") from None
        records = [r for r in d if isinstance(r, dict)] if isinstance(d, list) else []
        source = str(path)
    else:
        raise Skip(f"no {run / 'log.jsonl'} (nor history.json): no epoch of this run has finished")
    by_epoch: dict[Any, dict[str, Any]] = {}
    for i, r in enumerate(records):
        by_epoch[r.get("epoch", i + 1)] = r
    ordered = sorted(by_epoch.values(), key=lambda r: (float(r["epoch"]) if isinstance(r.get("epoch"), (int, float))
                                                       else 0.0))
    if not ordered:
        raise Skip(f"{source} holds no per-epoch record")
    return ordered, source


def read_run_config(run: Path) -> tuple[dict[str, Any] | None, str, str]:
    """(config, its YAML text, where it came from): ``config.yaml``, else the latest checkpoint's."""
    import yaml

    path = run / "config.yaml"
    if path.is_file():
        text = path.read_text(encoding="utf-8")
        try:
            d = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise InputError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        return (d if isinstance(d, dict) else None), text, str(path)
    for meta_path, meta in _checkpoints(run):
        if isinstance(meta.get("config"), dict):
            return meta["config"], yaml.safe_dump(meta["config"], sort_keys=False), f"{meta_path} (no config.yaml)"
    return None, "", f"no {path} and no checkpoint recording a config"


def _checkpoints(run: Path) -> list[tuple[Path, dict[str, Any]]]:
    from dlcr.engine.checkpoint_files import FORMAT

    d = run / "checkpoints"
    out = []
    if d.is_dir():
        for p in sorted(d.glob("*.json")):
            if p.name.startswith("."):
                continue
            try:
                meta = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue
            if isinstance(meta, dict) and meta.get("format") == FORMAT:
                out.append((p, meta))
    return out


EVAL_COLUMNS = (("top1", "top-1"), ("top5", "top-5"), ("top10", "top-10"), ("mAP", "mAP"), ("mINP", "mINP"))


def _metrics_section(run: Path, records: list[dict[str, Any]] | None, log_note: str) -> str:
    path = run / "eval" / "metrics.json"
    if path.is_file():
        try:
            metrics = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not valid JSON: {e}") from None
        if not isinstance(metrics, Mapping) or not metrics:
            raise InputError(f"{path} does not hold an object of protocols")
        cols = [(k, lbl) for k, lbl in EVAL_COLUMNS if any(isinstance(m, Mapping) and k in m for m in metrics.values())]
        head = "".join(f"<th>{_e(lbl)}</th>" for _, lbl in cols)
        body = []
        for name, m in metrics.items():
            if not isinstance(m, Mapping):
                continue
            cells = "".join(f'<td data-protocol="{_e(name)}" data-metric="{_e(k)}">{_to_percent(m.get(k))}</td>'
                            for k, _ in cols)
            nq = m.get("num_queries", "–")
            body.append(f'<tr><td class="arm">{_e(name)}</td>{cells}<td>{_e(nq)}</td></tr>')
        return (f'<p class="expl">Percentages from <code>{_e(path)}</code> (written by <code>dlcr evaluate</code>);'
                " standard = all gallery matches, sc = same clothes, cc = clothes-changing; "
                "<code>_refined</code> rows use prediction refinement.</p>"
                f'<table id="metrics-table"><tr><th class="arm">protocol</th>{head}<th>queries</th></tr>'
                + "".join(body) + "</table>")
    if records is None:
        raise Skip(f"no {path} (written by `dlcr evaluate --checkpoint {run / 'checkpoints'}`) and {log_note}")
    evals = [r for r in records if any(k.endswith(("_top1", "_mAP")) for k in r)]
    if not evals:
        raise Skip(f"no {path} (written by `dlcr evaluate --checkpoint {run / 'checkpoints'}`) and no evaluation "
                   "was logged during training (train.eval_every=0)")
    last = evals[-1]
    protos = list(dict.fromkeys(k.rsplit("_", 1)[0] for k in last if k.endswith(("_top1", "_mAP"))))
    body = "".join(
        f'<tr><td class="arm">{_e(p)}</td>'
        + "".join(f'<td data-protocol="{_e(p)}" data-metric="{k}">{_to_percent(last.get(f"{p}_{k}"))}</td>'
                  for k in ("top1", "mAP"))
        + "</tr>" for p in protos)
    return (_note(f"no {path} (written by `dlcr evaluate --checkpoint {run / 'checkpoints'}`): showing the last "
                  f"evaluation logged during training instead (epoch {last.get('epoch', '?')})")
            + '<table id="metrics-table"><tr><th class="arm">protocol</th><th>top-1</th><th>mAP</th></tr>'
            + body + "</table>")


def _curves_section(run: Path, assets: _Assets, records: list[dict[str, Any]] | None, source: str) -> str:
    from dlcr.report.plots import plot_run_curves, run_series

    if records is None:
        raise Skip(source)
    losses, metrics = run_series(records)
    if not losses and not metrics:
        raise Skip(f"{source} holds no loss or metric")
    out = assets.figure_path("curves.png")
    plot_run_curves(losses, metrics, out)
    evald = sorted({int(e) for x, _ in metrics.values() for e in x})
    return (f'<p class="expl">{len(records)} epoch(s) from <code>{_e(source)}</code>: training loss terms '
            "(loss = id + triplet + adversarial; clothes = the clothes classifier's own loss) and "
            + (f"the test metrics evaluated at epoch(s) {', '.join(map(str, evald))}" if evald
               else "no evaluation during training (train.eval_every=0)")
            + f'.</p><img class="plot" src="{_e(assets.href(out))}" alt="training curves">')


def _checkpoints_section(run: Path) -> str:
    cks = _checkpoints(run)
    if not cks:
        raise Skip(f"no dlcr checkpoint (<name>.json) in {run / 'checkpoints'}")
    rows = []
    for p, meta in cks:
        w = (meta.get("files") or {}).get("weights") or {}
        wfile = p.parent / str(w.get("file", ""))
        complete = bool(w.get("file")) and wfile.is_file() and wfile.stat().st_size == w.get("bytes")
        epoch = meta.get("epoch")
        rows.append(f'<tr><td class="arm">{_e(p.stem)}</td>'
                    f"<td>{_e(int(epoch) + 1 if isinstance(epoch, int) else '?')}</td>"
                    f'<td class="arm">{_e(meta.get("arch", "?"))}</td><td>{_e(meta.get("num_pids", "?"))}</td>'
                    f"<td>{_e(_size(w.get('bytes')))}</td>"
                    f'<td class="arm">{"complete" if complete else "weights file missing or truncated"}</td></tr>')
    return (f'<p class="expl">Checkpoints in <code>{_e(run / "checkpoints")}</code> (load one with '
            "<code>dlcr evaluate --checkpoint</code>).</p>"
            '<table id="checkpoints-table"><tr><th class="arm">name</th><th>epochs done</th><th class="arm">arch</th>'
            '<th>identities</th><th>weights</th><th class="arm">state</th></tr>' + "".join(rows) + "</table>")


def _size(n: Any) -> str:
    if not isinstance(n, int):
        return "?"
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _config_section(text: str, source: str) -> str:
    if not text:
        raise Skip(source)
    return (f'<p class="expl">The resolved configuration, from <code>{_e(source)}</code>.</p>'
            f'<pre id="config" style="background:#fff;border:1px solid #d5dae3;padding:8px;overflow-x:auto;'
            f'font-size:12px;max-height:640px">{_e(text)}</pre>')


def run_images(run: Path, given: Path | None, cfg: Mapping[str, Any] | None, cfg_source: str) -> tuple[Path | None, str]:
    """Where the run's test images are: --root, else its config's ``data.root``; or (None, why not)."""
    if given is not None:
        return (given, f"--root {given}") if given.is_dir() else (None, f"--root {given} is not a folder")
    if not isinstance(cfg, Mapping):
        return None, f"{cfg_source}, so the dataset root is unknown; pass --root <dataset root>"
    data = cfg.get("data")
    root = data.get("root") if isinstance(data, Mapping) else None
    if not isinstance(root, str) or not root:
        return None, f"{cfg_source} records no data.root; pass --root <dataset root>"
    p = Path(root)
    if p.is_dir():
        return p, f"data.root of {cfg_source}"
    where = "" if p.is_absolute() else f" (relative to the current folder {Path.cwd()})"
    return None, f"data.root {root} of {cfg_source} is not a folder here{where}; pass --root <dataset root>"


def _retrieval_section(run: Path, assets: _Assets, images: Path | None, images_why: str) -> str:
    from dlcr.report.figures import pick_queries

    feats = run / "eval" / "features.npz"
    if not feats.is_file():
        raise Skip(f"no {feats}: `dlcr evaluate` saves no test features (the runs of `dlcr demo` do), "
                   "so there is nothing to rank")
    f = load_features(run)
    paths = load_paths(run)
    if paths is None:
        raise Skip(f"no {run / 'eval' / 'paths.json'}, so the images of the ranked lists are unknown")
    check_paths(run, f, paths)
    if images is None:
        raise Skip(f"the test images are not at hand: {images_why}")
    arms: list[tuple[str, np.ndarray]] = [(run.name, f["q_feats"] @ f["g_feats"].T)]
    refined = run / "eval" / "refined_sims.npy"
    if refined.is_file():
        r = np.load(refined, allow_pickle=False)
        if r.shape == arms[0][1].shape:
            arms.append(("+ refinement", r))
    ranks = cc_ranks(f, arms)
    eligible = ranks[0][1].eligible
    n_el = int(eligible.sum())
    if n_el == 0:
        raise Skip(f"no query of {feats} has a clothes-changing match in the gallery")
    top1 = ranks[0][1].correct[:, 0] & eligible
    chosen = pick_queries(top1, top1, eligible, f["q_pids"], n=N_QUERIES)
    return (f'<p class="expl">Ranked lists under the clothes-changing protocol (gallery images of the query\'s '
            "identity in the same clothes or by the same camera removed), from "
            f"<code>{_e(feats)}</code>; top-1 on the {n_el} clothes-changing queries: "
            f"{100 * top1.sum() / n_el:.1f}%.</p>" + LEGEND + ranked_lists(assets, chosen, ranks, f, paths, images))


def run_report(run: Path, given: Path | None = None) -> Report:
    t0 = time.perf_counter()
    assets = _Assets(run)
    try:
        records, source = read_log(run)
    except (Skip, InputError) as e:
        records, source = None, str(e)
    try:
        cfg, text, cfg_source = read_run_config(run)
    except InputError as e:
        cfg, text, cfg_source = None, "", str(e)
    images, how = run_images(run, given, cfg, cfg_source)
    sub = [f"run {run.name}"]
    if isinstance(cfg, Mapping):
        data, model, train, sampler = (cfg.get(k) if isinstance(cfg.get(k), Mapping) else {}
                                       for k in ("data", "model", "train", "sampler"))
        if data.get("name"):
            sub.append(f"dataset {data['name']}")
        if model.get("name"):
            sub.append(str(model["name"]))
        if train.get("epochs") is not None:
            sub.append(f"{train['epochs']} epochs")
        if sampler.get("mode"):
            sub.append(f"sampler.mode {sampler['mode']}")
    sections = [
        ("metrics", "Final metrics", lambda: _metrics_section(run, records, source)),
        ("curves", "Training curves", lambda: _curves_section(run, assets, records, source)),
        ("retrieval", "Retrieval examples", lambda: _retrieval_section(run, assets, images, how)),
        ("checkpoints", "Checkpoints", lambda: _checkpoints_section(run)),
        ("config", "Configuration", lambda: _config_section(text, cfg_source)),
    ]
    return write_page(run, kind="run", title="DLCR run report", subtitle=" · ".join(sub), sections=sections, t0=t0)
