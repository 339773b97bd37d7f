"""Configuration: frozen dataclass schemas, YAML files with ``_base_`` inheritance, ``--set`` overrides.

Only the CLI reads configuration; library functions take plain arguments (docs/design.md §1).

* A YAML file may name one or more bases with ``_base_: other.yaml`` (or a list). Bases are
  resolved relative to the file, then among the packaged configs (``dlcr/configs``); they are merged
  in order and the file's own keys win. Mappings merge key by key; everything else is replaced.
* ``--set a.b=c`` overrides one key; the value is parsed as YAML (``--set train.epochs=10``,
  ``--set data.size=[128,64]``, ``--set model.pretrained=null``).
* Building the schema checks every key and type. A misspelt key or a wrong type is a one-line
  :class:`~dlcr.errors.ConfigError` naming the full key and suggesting the closest valid one.
* Every float must be finite, and every number meets its key's range in :data:`RULES` (one table for
  the whole schema: positive sizes, batch sizes and epochs, non-negative workers, probabilities in
  [0, 1], ...), so a bad value is refused when the config is loaded, not deep inside a run.

The packaged configs live inside the package (``src/dlcr/configs``) rather than at the repo root, so
that an installed ``dlcr`` finds them without a checkout.

The schemas and ranges are :mod:`dlcr.config.schema`, the key / type / range checks
:mod:`dlcr.config.checks`; this module reads the YAML files and re-exports the names of both.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from dlcr.config.checks import KEY_SYNONYMS, T, build, to_dict
from dlcr.config.schema import (
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    RULES,
    Config,
    DataConfig,
    EvalConfig,
    GenerateConfig,
    LossConfig,
    ModelConfig,
    OptimConfig,
    Range,
    SamplerConfig,
    TrainConfig,
)
from dlcr.errors import ConfigError

__all__ = ["KEY_SYNONYMS", "NON_NEGATIVE", "POSITIVE", "POSITIVE_INT", "PROBABILITY", "RULES", "Config",
           "DataConfig", "EvalConfig", "GenerateConfig", "LossConfig", "ModelConfig", "OptimConfig", "Range",
           "SamplerConfig", "TrainConfig", "apply_overrides", "build", "deep_merge", "dump_yaml",
           "list_packaged_configs", "load_config", "load_yaml", "packaged_config_dir", "resolve_config_path",
           "to_dict"]


# --------------------------------------------------------------------------------------------
# YAML with _base_ inheritance and --set overrides


def packaged_config_dir() -> Path:
    return Path(str(resources.files("dlcr") / "configs"))


def list_packaged_configs() -> list[str]:
    return sorted(p.stem for p in packaged_config_dir().glob("*.yaml"))


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def resolve_config_path(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    """A YAML path, or the name of a packaged config (``synthcc`` or ``base/train``)."""
    p = Path(name_or_path)
    candidates = []
    if relative_to is not None and not p.is_absolute():
        candidates.append(relative_to / p)
    candidates.append(p)
    stem = p.as_posix().removesuffix(".yaml")
    candidates.append(packaged_config_dir() / f"{stem}.yaml")
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(
        f"config {str(name_or_path)!r} not found (a YAML path, or one of the packaged configs: "
        f"{', '.join(list_packaged_configs())})"
    )


def load_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config and merge its ``_base_`` chain."""
    p = resolve_config_path(path)
    rp = p.resolve()
    if rp in _seen:
        raise ConfigError(f"config {p} inherits from itself through _base_")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as e:
        raise ConfigError(f"config {p} is not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r}); "
                          "save it as UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"invalid YAML in {p}{where}: {getattr(e, 'problem', e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {p} must be a mapping at top level")
    bases = data.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    merged: dict[str, Any] = {}
    for b in bases:
        bp = resolve_config_path(b, relative_to=p.parent)
        merged = deep_merge(merged, load_yaml(bp, _seen + (rp,)))
    return deep_merge(merged, data)


def apply_overrides(data: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    out = dict(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node: dict[str, Any] = {}
        cur = node
        parts = key.split(".")
        for part in parts[:-1]:
            cur[part] = {}
            cur = cur[part]
        cur[parts[-1]] = value
        out = deep_merge(out, node)
    return out


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                schema: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load ``path`` (or the schema's defaults), apply ``--set`` overrides, validate."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return build(schema, data)


def dump_yaml(cfg: Any) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)

