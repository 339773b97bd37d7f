"""Building a schema from a mapping: every key and type checked (a misspelt key suggests the closest
valid one, :data:`KEY_SYNONYMS` catches the names people reach for), every number against its range in
:data:`~dlcr.config.schema.RULES`; and back to a plain mapping (:func:`to_dict`). :mod:`dlcr.config`
re-exports the names."""

from __future__ import annotations

import math
import types
import typing
from dataclasses import fields, is_dataclass
from typing import Any, Literal, TypeVar, Union

from dlcr.config.schema import RULES, Range
from dlcr.errors import ConfigError, did_you_mean


def _check_range(value: Any, rule: Range, key: str) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _check_range(v, rule, f"{key}.{k}")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_range(v, rule, f"{key}[{i}]")
    elif isinstance(value, int | float) and not isinstance(value, bool) and not rule.allows(value):
        raise ConfigError(f"config key {key!r} must be {rule.describe(isinstance(value, int))}, got {value!r}")


T = TypeVar("T")


# Names people reach for that spelling similarity would not find (``generate.inpainter`` is closer to
# ``generate.parser`` by letters, but means ``generate.backend``): last key part -> the schema's name.
KEY_SYNONYMS: dict[str, dict[str, str]] = {
    "generate": {
        "inpainter": "backend", "inpainting": "backend", "generator": "backend", "pipeline": "model",
        "inpainter_model": "model", "inpaint_model": "model", "diffusion_model": "model", "sd_model": "model",
        "num_inference_steps": "steps", "num_steps": "steps", "inference_steps": "steps",
        "cfg": "guidance_scale", "cfg_scale": "guidance_scale", "guidance": "guidance_scale",
        "sampler": "scheduler", "negative": "negative_prompt", "variants": "k", "num_variants": "k",
        "segmenter": "parser", "human_parser": "parser", "parser_checkpoint": "parser_model",
        "schp_checkpoint": "parser_model", "label_map": "parser_label_map",
        "vlm": "captioner", "vlm_model": "captioner_model", "llm": "summarizer", "llm_model": "summarizer_model",
        "query_k": "query_variants", "l": "query_variants",
    },
    "eval": {"l": "refine_l", "m": "refine_m", "rerank_l": "refine_l"},
    "train": {"epoch": "epochs", "num_epochs": "epochs", "max_epochs": "epochs"},
    "sampler": {"k": "num_instances", "instances": "num_instances"},
}


def _suggest(key: str, options: list[str]) -> str:
    section, _, leaf = key.rpartition(".")
    synonym = KEY_SYNONYMS.get(section, {}).get(leaf.lower())
    if synonym and f"{section}.{synonym}" in options:
        return f" (did you mean {section + '.' + synonym!r}?)"
    return did_you_mean(key, options, cutoff=0.5)


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of {_type_name(typing.get_args(tp)[1])}"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    def bad() -> ConfigError:
        return ConfigError(f"config key {key!r} expects {_type_name(tp)}, got {value!r}")

    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise bad()
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise bad()
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise bad()
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad()
        return build(tp, value, prefix=key)
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise bad()
        args = typing.get_args(tp)
        item_t = args[0] if args else Any
        items = [_coerce(v, item_t, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise bad()
        _, vt = typing.get_args(tp)
        return {str(k): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad()
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise bad() from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad()
        try:
            value = float(value)
        except OverflowError:  # an integer too large for a float
            raise bad() from None
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be a finite number, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise bad()
        return value
    if value is None and tp is type(None):
        return None
    raise bad()


def build(cls: type[T], data: dict[str, Any] | None, prefix: str = "") -> T:
    """Build the frozen dataclass ``cls`` from a (partial) mapping, checking keys and types."""
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    for k in data:
        if k not in names:
            full = f"{prefix}.{k}" if prefix else str(k)
            options = [f"{prefix}.{n}" if prefix else n for n in names]
            raise ConfigError(f"unknown config key {full!r}{_suggest(full, options)}")
    kwargs = {}
    rules = RULES.get(cls, {})
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name in data:
            full = f"{prefix}.{f.name}" if prefix else f.name
            kwargs[f.name] = _coerce(data[f.name], hints[f.name], full)
            if f.name in rules:
                _check_range(kwargs[f.name], rules[f.name], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> Any:
    """Plain YAML/JSON-ready mapping of a config (tuples become lists)."""
    if is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in fields(cfg)}
    if isinstance(cfg, tuple | list):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg
