"""Reuse of the report's costly figures (the paper's t-SNE and activation maps) when nothing they are
drawn from has changed, so rebuilding a report after a resumed demo takes seconds.

A figure block's HTML is stored in ``figures/<name>.json`` next to its PNG, with a signature of its
inputs: the path, size and modification time of every file it may read (the compared runs' saved
features and checkpoints, the generated manifest, the masks table, ``results.json``), the dlcr
version and the source of the modules that draw it. Any difference, or a missing PNG, draws it anew
(as ``make`` decides). Only a block that drew its figure is stored; a "not drawn" note never is.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from dlcr.io.atomic import atomic_write_json

#: the files of a demo or ablation folder that the cached figures read (globs relative to its root)
RUN_INPUTS = ("results.json", "runs/*/eval/features.npz", "runs/*/eval/paths.json",
              "runs/*/checkpoints/last.json", "runs/*/checkpoints/last.safetensors")


def _stat(p: Path) -> list[Any]:
    try:
        st = p.stat()
    except OSError:
        return [str(p), None]
    return [str(p), st.st_size, st.st_mtime_ns]


def _code_hash() -> str:
    import dlcr

    here = Path(__file__).resolve().parent
    h = hashlib.sha256(str(getattr(dlcr, "__version__", "")).encode())
    for name in ("paperfigs.py", "reidmodel.py", "plots.py", "figures.py", "figcache.py"):
        f = here / name
        h.update(f.read_bytes() if f.is_file() else b"")
    return h.hexdigest()


def signature(root: Path, extra: Iterable[Path] = ()) -> str:
    """A hash of every input file's path, size and mtime (and of the drawing code)."""
    files = sorted({p for g in RUN_INPUTS for p in root.glob(g)} | {Path(p) for p in extra})
    payload = json.dumps([_code_hash(), [_stat(p) for p in files]])
    return hashlib.sha256(payload.encode()).hexdigest()


def cached(figures: Path, name: str, png: str, sig: str, draw: Callable[[], str]) -> str:
    """The block's HTML: reused from ``figures/<name>.json`` when ``sig`` matches and ``png`` exists,
    else ``draw()`` (which writes ``figures/<png>``), stored for the next build."""
    record = figures / f"{name}.json"
    try:
        old = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old = None
    if isinstance(old, dict) and old.get("signature") == sig and (figures / png).is_file():
        return str(old.get("html", ""))
    html = draw()
    atomic_write_json(record, {"signature": sig, "html": html})
    return html
