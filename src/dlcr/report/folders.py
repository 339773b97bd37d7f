"""``dlcr report PATH`` on any folder dlcr writes: which kind it is, and the report of each kind.

Three kinds (:func:`folder_kind`), told apart by the files their command leaves:

- a **demo folder** (``dlcr demo --out``): ``results.json`` (or, while the demo runs, ``world/`` +
  ``work/``); its report is :func:`dlcr.report.html.build_demo_report`. An **ablation folder**
  (``dlcr ablate --out``) has the same layout and report; its ``results.json`` names the dataset's
  images and the work folder (``meta.images``, ``meta.work``);
- a **work folder** (``dlcr generate --work``, default ``out/<dataset>``): ``masks/``,
  ``captions.parquet``, ``outfits.parquet``, ``jobs.parquet``, ``generated/``, ``query_*``. Its
  report: what each stage holds (counts), the settings each stage's signature records, clothes masks
  over a few originals, and originals next to their generated variants;
- a **run folder** (``dlcr train``, ``<train.out_dir>/<name>``): ``log.jsonl``, ``history.json``,
  ``checkpoints/`` (and ``config.yaml``). Its report: final metrics (``eval/metrics.json`` of
  ``dlcr evaluate`` when present, else the last evaluation logged during training), loss and metric
  curves from ``log.jsonl``, the checkpoints, the resolved config, and retrieval panels when the run
  saved test features (``eval/features.npz`` + ``eval/paths.json``, as ``dlcr demo``'s runs do).

The originals are not part of a work or run folder: they are read from ``--root`` when given, else
from where the folder says or implies they are (the run's ``data.root``; for a work folder its
demo's ``world/``, the folder itself, or the packaged config's ``data.root`` of its dataset). Every
section that cannot be built says precisely why, with the path it looked for.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlcr.errors import ConfigError, InputError
from dlcr.generation.outputs import GENERATED_MANIFEST
from dlcr.generation.stages import CAPTIONS, GENERATED, JOBS, MASKS, OUTFITS, QUERY_GENERATED, QUERY_JOBS
from dlcr.report.html import (
    LEGEND,
    N_QUERIES,
    Report,
    Skip,
    _Assets,
    _e,
    _img,
    _note,
    _read_rows,
    _to_percent,
    cc_ranks,
    check_paths,
    generation_grid,
    is_demo_folder,
    load_features,
    load_paths,
    missing_manifest,
    pending_parts,
    ranked_lists,
    write_page,
)
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

RUN_FILES = ("log.jsonl", "history.json", "checkpoints", "eval/metrics.json")
WORK_FILES = (MASKS, CAPTIONS, OUTFITS, JOBS, GENERATED, QUERY_JOBS, QUERY_GENERATED)
N_MASKS = 6

EXPECTED = ("results.json (a `dlcr demo --out DIR` folder); masks/, captions.parquet, jobs.parquet or "
            "generated/ (a `dlcr generate --work W` work folder, default out/<dataset>); or log.jsonl, "
            "history.json or checkpoints/ (a `dlcr train` run folder, default runs/<name>)")


# --------------------------------------------------------------------------------------------
# Which kind of folder
# --------------------------------------------------------------------------------------------


def _is_run(p: Path) -> bool:
    if any((p / f).exists() for f in RUN_FILES):
        return True
    cfg = p / "config.yaml"  # a run killed before its first epoch ended: only the resolved config
    if not cfg.is_file():
        return False
    try:
        import yaml

        d = yaml.safe_load(cfg.read_text(encoding="utf-8"))
    except Exception:  # not a config of ours
        return False
    return isinstance(d, Mapping) and isinstance(d.get("train"), Mapping) and isinstance(d.get("data"), Mapping)


def _is_work(p: Path) -> bool:
    return any((p / f).exists() for f in WORK_FILES)


def _kind(p: Path) -> str | None:
    if is_demo_folder(p):
        return "demo"
    if _is_run(p):
        return "run"
    if _is_work(p):
        return "work"
    return None


def folder_kind(path: str | os.PathLike) -> str:
    """``"demo"``, ``"work"`` or ``"run"``; anything else is one :class:`InputError` line saying what
    was expected (and naming the report folders inside it, when it is their parent)."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such folder: {p} (`dlcr report` takes a demo, work or run folder)")
    if not p.is_dir():
        raise InputError(f"{p} is a file; `dlcr report` takes a demo, work or run folder")
    kind = _kind(p)
    if kind is not None:
        return kind
    inside = []
    try:
        for d in sorted(p.iterdir()):
            if d.is_dir() and (k := _kind(d)) is not None:
                inside.append(f"{d} ({k})")
    except OSError:
        pass
    hint = ""
    if inside:
        more = f" and {len(inside) - 4} more" if len(inside) > 4 else ""
        hint = f"; it holds {', '.join(inside[:4])}{more}: point `dlcr report` at one of them"
    raise InputError(f"{p} is neither a demo, a work nor a run folder: expected {EXPECTED}{hint}")


def build_report(path: str | os.PathLike, *, images: str | os.PathLike | None = None) -> Report:
    """Write ``PATH/report.html`` (and ``PATH/figures/``) for a demo, work or run folder.

    ``images``: the dataset root holding the original images of a work or run folder (``--root``);
    by default found as the module docstring says. A demo folder has its own (``world/``).
    """
    p = Path(path)
    kind = folder_kind(p)
    root = p.resolve()
    if kind == "demo":
        from dlcr.report.html import demo_report

        return demo_report(root)
    given = Path(images) if images is not None else None
    return work_report(root, given) if kind == "work" else run_report(root, given)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _num_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as e:  # pyarrow raises its own error types for damaged files
        raise InputError(f"cannot read {path}: {e}") from None


def _table(rows: Sequence[tuple[str, str]], tid: str, head: tuple[str, str] | None = None) -> str:
    h = f'<tr><th class="arm">{_e(head[0])}</th><th class="arm">{_e(head[1])}</th></tr>' if head else ""
    body = "".join(f'<tr><td class="arm">{_e(k)}</td><td class="arm" style="white-space:normal">{v}</td></tr>'
                   for k, v in rows)
    return f'<table id="{tid}">{h}{body}</table>'


def _first_source(work: Path) -> str | None:
    """One image path (relative to the dataset root) the work folder's tables list."""
    for table, col in ((work / MASKS / "masks.parquet", "path"), (work / JOBS, "source"),
                       (work / GENERATED / GENERATED_MANIFEST, "source"), (work / CAPTIONS, "path")):
        if table.is_file():
            try:
                rows = _read_rows_columns(table, [col])
            except InputError:
                continue
            for r in rows:
                if isinstance(r.get(col), str):
                    return r[col]
    return None


def _read_rows_columns(path: Path, columns: list[str]) -> list[dict[str, Any]]:
    from dlcr.io.tables import read_table

    try:
        return read_table(path, columns=columns)
    except Exception as e:  # pyarrow raises its own error types for damaged files
        raise InputError(f"cannot read {path}: {e}") from None


def _datasets(work: Path) -> list[str]:
    names: list[str] = []
    for table in (work / JOBS, work / GENERATED / GENERATED_MANIFEST, work / QUERY_JOBS):
        if table.is_file():
            try:
                names += [str(r["dataset"]) for r in _read_rows_columns(table, ["dataset"])[:1] if r.get("dataset")]
            except InputError:
                continue
    names.append(work.name)
    return list(dict.fromkeys(names))


def _packaged_root(name: str) -> Path | None:
    from dlcr.config import load_config

    try:
        return Path(load_config(name).data.root)
    except (ConfigError, InputError, OSError, ValueError):
        return None


def _find_images(candidates: Sequence[tuple[Path, str]], sample: str) -> tuple[Path | None, str]:
    """The first candidate folder holding ``sample``: (folder, how it was found) or (None, what was tried)."""
    tried = []
    for folder, how in candidates:
        if (folder / sample).is_file():
            return folder, how
        tried.append(f"{(folder / sample).absolute()} ({how})")
    return None, "; ".join(tried)


def work_images(work: Path, given: Path | None) -> tuple[Path | None, str]:
    """Where the originals of work folder ``work`` are: (folder, how found) or (None, why not, precisely)."""
    sample = _first_source(work)
    if sample is None:
        return None, f"no table of {work} lists its images (no masks/masks.parquet, jobs.parquet or manifest)"
    if given is not None:
        if not given.is_dir():
            return None, f"originals not shown: --root {given} is not a folder"
        found, _ = _find_images([(given, "--root")], sample)
        return (found, f"--root {given}") if found else (
            None, f"originals not shown: {given / sample} not found (--root {given} is not this work folder's "
                  "dataset root)")
    cands: list[tuple[Path, str]] = []
    if work.name == "work" and is_demo_folder(work.parent):
        cands.append((work.parent / "world", "the demo's world folder"))
    cands.append((work, "the work folder itself"))
    for name in _datasets(work):
        r = _packaged_root(name)
        if r is not None:
            cands.append((r, f"data.root of the packaged {name!r} config"))
    found, how = _find_images(cands, sample)
    if found is not None:
        return found, how
    return None, (f"originals not shown: they are not part of a work folder and were not found at {how}; "
                  "pass --root <dataset root>")


# --------------------------------------------------------------------------------------------
# Work folder
# --------------------------------------------------------------------------------------------

#: (what, output path relative to the work folder, its table, the command that writes it)
WORK_OUTPUTS: tuple[tuple[str, str, str, str], ...] = (
    ("label maps (clothes masks)", MASKS, f"{MASKS}/masks.parquet", "dlcr generate masks"),
    ("captions", CAPTIONS, CAPTIONS, "dlcr generate describe"),
    ("outfits", OUTFITS, OUTFITS, "dlcr generate describe"),
    ("training jobs", JOBS, JOBS, "dlcr generate plan"),
    ("generated training images", GENERATED, f"{GENERATED}/{GENERATED_MANIFEST}", "dlcr generate inpaint"),
    ("query jobs", QUERY_JOBS, QUERY_JOBS, "dlcr generate queries --plan-only"),
    ("generated query variants", QUERY_GENERATED, f"{QUERY_GENERATED}/{GENERATED_MANIFEST}", "dlcr generate queries"),
)


def work_counts(work: Path) -> dict[str, int | None]:
    """Rows of every stage's table (None: the table is missing): the numbers the contents table shows."""
    return {out: (_num_rows(work / table) if (work / table).is_file() else None) for _, out, table, _ in WORK_OUTPUTS}


def _contents_section(work: Path) -> str:
    counts = work_counts(work)
    rows = []
    for what, out, table, command in WORK_OUTPUTS:
        n = counts[out]
        detail = ""
        if out == MASKS and n is not None:
            empty = sum(bool(r.get("empty")) for r in _read_rows_columns(work / table, ["empty"]))
            detail = f"{empty} with an empty clothes mask (no variant is made of those)"
        elif out in (JOBS, QUERY_JOBS) and n is not None:
            srcs = {r.get("source") for r in _read_rows_columns(work / table, ["source"])}
            detail = f"for {len(srcs)} images ({n / max(1, len(srcs)):g} each)"
        elif out in (GENERATED, QUERY_GENERATED):
            skipped = work / out / "skipped.parquet"
            parts = pending_parts(work / out)
            bits = []
            if skipped.is_file():
                bits.append(f"{_num_rows(skipped)} jobs skipped (empty mask)")
            if parts:
                bits.append(f"{parts} part file(s) not yet consolidated into the manifest")
            detail = "; ".join(bits)
            if n is None:
                detail = missing_manifest(work / out, command)
        if n is None and not detail:
            detail = f"no {work / table} (run `{command}`)"
        cell = "–" if n is None else str(n)
        rows.append(f'<tr><td class="arm">{_e(what)}</td><td class="arm"><code>{_e(table)}</code></td>'
                    f'<td data-count="{_e(out)}">{_e(cell)}</td>'
                    f'<td class="arm" style="white-space:normal">{_e(detail)}</td></tr>')
    return (f'<p class="expl">What each generation stage has committed in <code>{_e(work)}</code> '
            "(rows of its table; – where the stage has not run).</p>"
            '<table id="contents-table"><tr><th class="arm">output</th><th class="arm">table</th><th>count</th>'
            f'<th class="arm">notes</th></tr>{"".join(rows)}</table>')


def _settings_section(work: Path) -> str:
    from dlcr.generation.signature import flatten, read_signature, signature_file, signature_hash

    rows, missing = [], []
    for _what, out, _table, _ in WORK_OUTPUTS:
        target = work / out
        sig_path = signature_file(target)
        if not target.exists():
            continue
        sig = read_signature(sig_path)
        if sig is None:
            missing.append(str(sig_path))
            continue
        flat = flatten({k: v for k, v in sig.items() if k not in ("stage", "inputs")})
        settings = ", ".join(f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in flat.items())
        inputs = sig.get("inputs") if isinstance(sig.get("inputs"), Mapping) else {}
        made_from = ", ".join(f"{k} {v}" for k, v in inputs.items())
        rows.append(f'<tr><td class="arm"><code>{_e(sig_path.relative_to(work).as_posix())}</code></td>'
                    f'<td class="arm">{_e(sig.get("stage", "?"))}</td>'
                    f'<td class="arm" style="white-space:normal" data-stage="{_e(sig.get("stage", "?"))}">'
                    f'{_e(settings or "(no settings)")}</td>'
                    f'<td class="arm"><code>{_e(signature_hash(sig))}</code></td>'
                    f'<td class="arm" style="white-space:normal">{_e(made_from)}</td></tr>')
    if not rows:
        raise Skip("no stage of this work folder recorded a signature (looked for "
                   + ", ".join(missing or [str(signature_file(work / MASKS))]) + ")")
    out = ['<p class="expl">The settings every stage recorded next to its outputs (its signature: backend, '
           "options with their defaults, model fingerprints); each stage also records the hash of the "
           "signature of what it was made from, so outputs of other settings are never reused.</p>",
           '<table id="settings-table"><tr><th class="arm">signature</th><th class="arm">stage</th>'
           '<th class="arm">settings</th><th class="arm">hash</th><th class="arm">made from</th></tr>'
           + "".join(rows) + "</table>"]
    if missing:
        out.append(_note("no signature (outputs of an older dlcr): " + ", ".join(missing)))
    return "\n".join(out)


def _masks_section(work: Path, assets: _Assets, images: Path | None, images_note: str) -> str:
    from dlcr.generation.parsing import label_path
    from dlcr.io.paths import safe_join
    from dlcr.report.figures import spread

    masks = work / MASKS
    table = masks / "masks.parquet"
    if not masks.is_dir():
        raise Skip(f"no {masks} (run `dlcr generate masks`)")
    if not table.is_file():
        raise Skip(f"no {table}: the masks stage has not committed its table (run `dlcr generate masks`)")
    rows = [r for r in _read_rows(table) if isinstance(r.get("path"), str)]
    full = [r for r in rows if not r.get("empty")]
    if not full:
        raise Skip(f"every one of the {len(rows)} label maps in {masks} has an empty clothes mask")
    chosen = spread(sorted(full, key=lambda r: r["path"]), N_MASKS)[:N_MASKS]
    figs = []
    for r in chosen:
        src = safe_join(images, r["path"]) if images is not None else None
        mask = label_path(masks, r["path"])
        name = Path(r["path"]).stem
        if src is not None:
            figs.append(f'<figure class="src">{_img(assets.image(src), r["path"])}<figcaption><b>original</b> '
                        f"{_e(name)}</figcaption></figure>")
        figs.append(f'<figure>{_img(assets.image(src, overlay=mask), "mask " + r["path"])}<figcaption><b>mask</b>'
                    f' {_e(name)}<br>{int(r.get("clothes_pixels") or 0)} px</figcaption></figure>')
    n_empty = len(rows) - len(full)
    out = [f'<p class="expl">Clothes masks of {len(chosen)} of the {len(rows)} parsed images '
           f"({n_empty} with an empty clothes mask), red = upper garment, blue = lower, green = shoes, "
           "yellow = accessories; the rest is dimmed"
           + (f". Originals from <code>{_e(images)}</code>.</p>" if images is not None else
              ", drawn on grey.</p>")]
    if images is None:
        out.append(_note(images_note))
    out.append(f'<div class="genrow">{"".join(figs)}</div>')
    return "\n".join(out)


def work_report(work: Path, given: Path | None = None) -> Report:
    t0 = time.perf_counter()
    assets = _Assets(work)
    images, how = work_images(work, given)
    sub = [f"work folder {work}"]
    if images is not None:
        sub.append(f"originals from {images} ({how})")
    sections = [
        ("contents", "Contents", lambda: _contents_section(work)),
        ("settings", "Settings (stage signatures)", lambda: _settings_section(work)),
        ("masks", "Clothes masks", lambda: _masks_section(work, assets, images, how)),
        ("generation", "Generated clothes variants",
         lambda: generation_grid(assets, work, images, images_note=how)),
    ]
    return write_page(work, kind="work", title="DLCR work folder report", subtitle=" · ".join(sub),
                      sections=sections, t0=t0)


# --------------------------------------------------------------------------------------------
# Run folder
# --------------------------------------------------------------------------------------------


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
    from dlcr.engine.checkpoint import FORMAT

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
    from dlcr.report.figures import plot_run_curves, run_series

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


__all__ = ["build_report", "folder_kind", "run_report", "work_report"]
