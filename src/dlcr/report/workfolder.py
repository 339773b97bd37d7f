"""The report of a generation work folder (``dlcr generate --work``): what each stage holds (counts),
the settings each stage's signature records, clothes masks over a few originals, and originals next
to their generated variants (:func:`work_report`); and where its originals are (:func:`work_images`).

Reading no configuration itself, it is told where a dataset's packaged config puts its images by the
caller: ``packaged_root``, a function from a dataset name to that ``data.root`` (or None); the
``dlcr report`` command passes :func:`dlcr.config_args.packaged_data_root`."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from dlcr.errors import InputError
from dlcr.generation.outputs import GENERATED_MANIFEST
from dlcr.generation.stages import CAPTIONS, GENERATED, JOBS, MASKS, OUTFITS, QUERY_GENERATED, QUERY_JOBS
from dlcr.report.common import Report, Skip, _Assets, _e, _img, _note, _read_rows
from dlcr.report.generation import generation_grid, missing_manifest, pending_parts
from dlcr.report.kinds import is_demo_folder
from dlcr.report.page import write_page

N_MASKS = 6

#: dataset name -> the ``data.root`` of its packaged config, or None when there is none
PackagedRoot = Callable[[str], Path | None]


def _num_rows(path: Path) -> int:
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception as e:  # pyarrow raises its own error types for damaged files
        raise InputError(f"cannot read {path}: {e}") from None


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


def _find_images(candidates: Sequence[tuple[Path, str]], sample: str) -> tuple[Path | None, str]:
    """The first candidate folder holding ``sample``: (folder, how it was found) or (None, what was tried)."""
    tried = []
    for folder, how in candidates:
        if (folder / sample).is_file():
            return folder, how
        tried.append(f"{(folder / sample).absolute()} ({how})")
    return None, "; ".join(tried)


def work_images(work: Path, given: Path | None, packaged_root: PackagedRoot | None = None
                ) -> tuple[Path | None, str]:
    """Where the originals of work folder ``work`` are: (folder, how found) or (None, why not, precisely).

    Without ``given`` (``--root``), the candidates are the demo's world folder, the work folder itself
    and, when ``packaged_root`` is given, the packaged config's ``data.root`` of each dataset it names."""
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
    for name in _datasets(work) if packaged_root is not None else ():
        r = packaged_root(name)
        if r is not None:
            cands.append((r, f"data.root of the packaged {name!r} config"))
    found, how = _find_images(cands, sample)
    if found is not None:
        return found, how
    return None, (f"originals not shown: they are not part of a work folder and were not found at {how}; "
                  "pass --root <dataset root>")


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
    from dlcr.generation.signature_record import flatten, read_signature, signature_file, signature_hash

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


def work_report(work: Path, given: Path | None = None, packaged_root: PackagedRoot | None = None) -> Report:
    t0 = time.perf_counter()
    assets = _Assets(work)
    images, how = work_images(work, given, packaged_root)
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
