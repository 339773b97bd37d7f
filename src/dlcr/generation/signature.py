"""Generation signatures: what produced a stage's outputs, so that other settings never reuse them.

A *signature* is a JSON-ready mapping of everything that changes a stage's outputs: the backend
name, its model (:func:`model_fingerprint`: a local folder's config files hashed, a single weight
file hashed, a hub id with its revision) and every setting that changes pixels or text. The stages
record it next to their outputs and refuse a run whose signature differs
(:mod:`dlcr.generation.signature_record`: ``record_signature``, ``check_signature``).

What goes into a backend's signature (:func:`backend_signature`): the registry name, every
constructor option with the constructor's defaults filled in (the registry factory's, and, where
the factory forwards ``**kwargs``, those of the class it builds: :data:`BUILDS`), minus the options
that never change outputs (:data:`NEUTRAL_OPTIONS`: device index, batch sizes, progress, offline
flags, cache folders), a fingerprint of every option that names a model, checkpoint, folder or
discriminator file (:data:`MODEL_OPTIONS`), the device-resolved dtype (fp16 on CUDA and fp32 on CPU
give other pixels), the built class's integer ``output_version`` attribute when it has one, and for
the ``tiny`` backends the version of the tiny model builder.

Chaining: a stage's signature holds the hash (``signature_record.signature_hash``) of the signature of the
stage it reads (masks -> captions -> outfits -> plan; the inpainting stages also hold a hash of the
job plan's content), so new upstream outputs make every downstream stage refuse too, and
``--overwrite`` on one stage never leaves a later stage silently reusing what was derived from the
replaced outputs.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dlcr.generation.signature_record import jsonable

# files of a model folder that describe it (configs, tokenizers, processors, schedulers)
_CONFIG_SUFFIXES = (".json", ".txt", ".yaml", ".yml", ".model", ".jinja", ".py")
_CHUNK = 1 << 22
HASH_CACHE_FILE = "file-sha256.json"
_CACHE_MIN_BYTES = 16 << 20  # only files this large are remembered in the hash cache


def _hash_cache_path() -> Path:
    env = os.environ.get("DLCR_CACHE_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "dlcr") / HASH_CACHE_FILE


class _HashCache:
    """sha256 of files by (path, size, mtime): weights are hashed once per version of the file, not
    on every run (an SD checkpoint's 4-7 GB take seconds to hash; the cache makes a re-run free)."""

    def __init__(self) -> None:
        self.path = _hash_cache_path()
        self.changed = False
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.entries: dict[str, list[Any]] = data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            self.entries = {}

    def sha256(self, f: Path) -> str:
        st = f.stat()
        if st.st_size < _CACHE_MIN_BYTES:  # cheaper to hash again than to keep (folders of label maps)
            return hashlib.sha256(f.read_bytes()).hexdigest()
        key = str(f.resolve())
        hit = self.entries.get(key)
        if isinstance(hit, list) and len(hit) == 3 and hit[:2] == [st.st_size, st.st_mtime_ns]:
            return str(hit[2])
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
        digest = h.hexdigest()
        self.entries[key] = [st.st_size, st.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        from dlcr.io.atomic import atomic_write_json

        with contextlib.suppress(OSError):  # a read-only home only costs the next run the hashing again
            atomic_write_json(self.path, self.entries, indent=0)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (cached by path, size and modification time)."""
    cache = _HashCache()
    try:
        return cache.sha256(Path(path))
    finally:
        cache.save()


def _hub_commit(model: str, revision: str | None) -> str | None:
    """The commit a hub id resolves to in the local Hugging Face cache (``refs/<revision>``), if cached."""
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return None
    for kind in ("models", "datasets"):
        ref = Path(HF_HUB_CACHE) / f"{kind}--{model.replace('/', '--')}" / "refs" / (revision or "main")
        if ref.is_file():
            return ref.read_text(encoding="utf-8").strip() or None
    return None


def model_fingerprint(model: str | os.PathLike | None, revision: str | None = None) -> dict[str, Any]:
    """What identifies a model argument, by content, so that the same model found elsewhere matches.

    - a local folder: its name, a hash of every config-like file (relative path + bytes: model
      index, component configs, tokenizer and processor files, scheduler config) and a hash of the
      other files (the weights: relative path + sha256 of the bytes, cached by size and modification
      time, see :class:`_HashCache`);
    - a local file (e.g. an SCHP checkpoint): its name and sha256;
    - anything else (a hub id): the id, the revision asked for (``None``: the hub's default) and the
      commit it resolves to in the local Hugging Face cache, when it is cached.
    """
    if model is None:
        return {"model": None}
    p = Path(model).expanduser()
    if p.is_dir():
        cache = _HashCache()
        configs = hashlib.sha256()
        weights = hashlib.sha256()
        n_weights = 0
        for f in sorted(q for q in p.rglob("*") if q.is_file()):
            rel = f.relative_to(p).as_posix()
            if rel.startswith(".") or "/." in rel:
                continue
            if f.suffix.lower() in _CONFIG_SUFFIXES:
                configs.update(rel.encode() + b"\0" + f.read_bytes() + b"\0")
            else:
                weights.update(f"{rel}\0{cache.sha256(f)}\0".encode())
                n_weights += 1
        cache.save()
        return {"model": p.resolve().name, "config_sha256": configs.hexdigest()[:16],
                "weights_sha256": weights.hexdigest()[:16], "weight_files": n_weights}
    if p.is_file():
        return {"model": p.name, "sha256": file_sha256(p)[:16]}
    fp: dict[str, Any] = {"model": str(model), "revision": revision}
    commit = _hub_commit(str(model), revision)
    if commit:
        fp["commit"] = commit
    return fp


# ----------------------------------------------------------------------------- backend signatures
#: Options that never change a backend's outputs: where and how fast it runs, not what it makes.
NEUTRAL_OPTIONS = frozenset(
    {"device", "batch_size", "max_batch", "progress", "local_files_only", "driver", "cache_dir", "summary_batch"}
)
#: Options that name a model, checkpoint, folder or file: recorded as a :func:`model_fingerprint`.
MODEL_OPTIONS = ("model", "checkpoint", "labels_dir", "discriminator", "gguf_file")

#: What a registry factory builds, for factories that forward ``**kwargs`` (their defaults live in
#: the built class) and for the class's ``output_version``: ``(kind, name) -> "module:attr", ...``
#: in call order. A factory may instead carry a ``builds`` attribute with the same tuple.
BUILDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("inpainter", "recolor"): ("dlcr.generation.inpainters.recolor:RecolorInpainter",),
    ("inpainter", "diffusers"): ("dlcr.generation.inpainters.diffusers_backend:DiffusersInpainter",),
    ("inpainter", "tiny"): ("dlcr.generation.inpainters.diffusers_backend:make_tiny_inpainter",
                            "dlcr.generation.inpainters.diffusers_backend:DiffusersInpainter"),
    ("parser", "schp"): ("dlcr.generation.parsers.schp:SCHPParser",),
    ("parser", "folder"): ("dlcr.generation.parsers.folder:FolderParser",),
    ("parser", "synthcc"): ("dlcr.generation.parsers.folder:SynthCCParser",),
    ("parser", "pose"): ("dlcr.generation.parsers.pose:PoseParser",),
    ("captioner", "rule"): ("dlcr.generation.describers.rule:RuleCaptioner",),
    ("captioner", "tiny"): ("dlcr.generation.describers.hf:HFCaptioner",),
    ("summarizer", "vote"): ("dlcr.generation.describe:VoteSummarizer",),
    ("summarizer", "tiny"): ("dlcr.generation.describers.hf:HFSummarizer",),
    ("summarizer", "smollm2"): ("dlcr.generation.describers.hf:HFSummarizer",),
}  # fmt: skip


#: The registries whose backends have signatures, by kind.
_REGISTRIES = {
    "inpainter": "dlcr.generation.inpainters:INPAINTERS",
    "parser": "dlcr.generation.parsers:PARSERS",
    "captioner": "dlcr.generation.describers:CAPTIONERS",
    "summarizer": "dlcr.generation.describers:SUMMARIZERS",
}


def _resolve(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _built_callables(kind: str, name: str, factory: Any) -> list[Any]:
    """The factory, then what it builds (see :data:`BUILDS`); a lazy factory resolves to its target."""
    resolve = getattr(factory, "resolve", None)
    first = resolve() if callable(resolve) else factory
    chain = [first]
    for target in getattr(factory, "builds", None) or BUILDS.get((kind, name), ()):
        obj = _resolve(target)
        if obj is not first:
            chain.append(obj)
    return chain


def _parameters(fn: Any) -> list[inspect.Parameter]:
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []


def resolved_options(kind: str, name: str, factory: Any, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every default filled in: the factory's, and while a callable of the chain
    forwards ``**kwargs``, the next one's (for options not set by then)."""
    out = dict(options)
    for fn in _built_callables(kind, name, factory):
        params = _parameters(fn)
        for p in params:
            if p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) or p.name in ("self", "cls") or p.name in out:
                continue
            if p.default is not p.empty:
                out[p.name] = p.default
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return out


def output_version(kind: str, name: str, factory: Any) -> int | None:
    """The integer ``output_version`` of the last class in the factory's chain, if it has one."""
    for obj in reversed(_built_callables(kind, name, factory)):
        v = getattr(obj, "output_version", None)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    return None


def _dtype_name(dtype: Any, device: Any) -> str | None:
    from dlcr.distributed.env import resolve_device
    from dlcr.utils.torch_device import resolve_dtype

    return str(resolve_dtype(dtype, resolve_device(device))).replace("torch.", "")


def _tiny_version(kind: str) -> str | None:
    if kind == "inpainter":
        from dlcr.generation.tiny_models.diffusion import TINY_VERSION, tiny_tokenizer_kind

        return f"{TINY_VERSION}/{tiny_tokenizer_kind()}"
    if kind in ("captioner", "summarizer"):
        from dlcr.generation.tiny_models.text import TINY_TEXT_VERSION

        return TINY_TEXT_VERSION
    return None


def backend_signature(registry: Any, name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The signature of backend ``name`` of ``registry`` built with ``options`` (nothing is loaded).

    See the module docstring for what it holds. Unknown names are the registry's one-line error.
    """
    factory = registry.get(name)
    key = str(name).lower()
    kind = str(registry.kind)
    opts = resolved_options(kind, key, factory, dict(options or {}))
    sig: dict[str, Any] = {
        "backend": key,
        "options": {k: jsonable(v) for k, v in sorted(opts.items()) if k not in NEUTRAL_OPTIONS},
    }
    models = {k: model_fingerprint(opts[k], opts.get("revision")) for k in MODEL_OPTIONS if opts.get(k)}
    if models:
        sig["models"] = models
    if "dtype" in opts:
        gguf = opts.get("gguf_file")
        sig["dtype"] = "float32" if gguf and opts["dtype"] is None else _dtype_name(opts["dtype"], opts.get("device"))
    version = output_version(kind, key, factory)
    if version is not None:
        sig["output_version"] = version
    if key == "tiny":
        sig["tiny_builder"] = _tiny_version(kind)
    return sig


def object_signature(obj: Any) -> dict[str, Any]:
    """The signature of a built backend object: from how the registry built it (``built_with``,
    recorded by :meth:`dlcr.registry.Registry.create`), else from its class, name, model label and
    ``output_version`` (an object made by hand, e.g. in a test, is identified by those only)."""
    built = getattr(obj, "built_with", None)
    if isinstance(built, tuple) and len(built) == 3:
        kind, name, options = built
        if kind in _REGISTRIES:
            return backend_signature(_resolve(_REGISTRIES[kind]), name, options)
    cls = type(obj)
    sig: dict[str, Any] = {
        "backend": str(getattr(obj, "name", cls.__name__)),
        "class": f"{cls.__module__}.{cls.__qualname__}",
        "model": str(getattr(obj, "description", None) or getattr(obj, "model", "")),
    }
    version = getattr(obj, "output_version", None)
    if isinstance(version, int) and not isinstance(version, bool):
        sig["output_version"] = version
    return sig


# recording and checking: dlcr.generation.signature_record

__all__ = ["BUILDS", "MODEL_OPTIONS", "NEUTRAL_OPTIONS", "backend_signature", "file_sha256", "model_fingerprint",
           "object_signature", "resolved_options"]
