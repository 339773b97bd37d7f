"""Every config key fed a wrong value of each kind is one ``error:`` line and exit 2, never a traceback.

The sweep walks the schema (``dlcr.config.Config``) programmatically, so a key added later is covered
without touching this file; a numeric key added without a range in ``dlcr.config.RULES`` fails here.
In-process ``load_config`` checks the rules for every key; a handful of cases go through the real
command line (``python -m dlcr``) for the exit status and the single line.
"""

from __future__ import annotations

import math
import subprocess
import types
import typing
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import pytest
from relia_util import PYTHON, cli_env

from dlcr.config import RULES, Config, Range, load_config
from dlcr.errors import ConfigError


def _leaves(cls: type, prefix: str = "") -> list[tuple[str, Any, Range | None]]:
    """(dotted key, type, range rule) of every leaf key of the schema ``cls``."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if is_dataclass(tp):
            out += _leaves(tp, f"{key}.")
        else:
            out.append((key, tp, RULES.get(cls, {}).get(f.name)))
    return out


LEAVES = _leaves(Config)


def _parts(tp: Any) -> list[Any]:
    """The non-null alternatives of a (possibly optional) type."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        return [a for a in typing.get_args(tp) if a is not type(None)]
    return [tp]


def _container(tp: Any) -> str | None:
    origins = {typing.get_origin(a) for a in _parts(tp)}
    return "list" if origins & {list, tuple} else "dict" if dict in origins else None


def _scalar(tp: Any) -> Any:
    a = _parts(tp)[-1]  # of `bool | Literal[...]` (generate.compile) the words, which are what "abc" is not
    if typing.get_origin(a) in (list, tuple):
        return typing.get_args(a)[0]
    if typing.get_origin(a) is dict:
        return typing.get_args(a)[1]
    return a


def _numeric(tp: Any) -> bool:
    return _scalar(tp) in (int, float)


def _wrap(tp: Any, raw: str) -> str:
    """A YAML override value: ``raw`` as the key's item (inside a list / mapping for container keys)."""
    kind = _container(tp)
    return f"[{raw}]" if kind == "list" else f"{{a: {raw}}}" if kind == "dict" else raw


def _bad_values(tp: Any, rule: Range | None) -> dict[str, str]:
    """kind -> a YAML value of that kind that the key must refuse."""
    numeric = _numeric(tp)
    out = {}
    if not (numeric and rule is not None and rule.allows(-1)):
        out["negative"] = _wrap(tp, "-1")
    if not (numeric and rule is not None and rule.allows(0)):
        out["zero"] = _wrap(tp, "0")
    out["nan"] = _wrap(tp, ".nan")
    if numeric:  # the word is a fine string for a text key
        out["nan-word"] = _wrap(tp, "nan")
    out["inf"] = _wrap(tp, "-.inf")
    scalar = _scalar(tp)
    out["wrong type"] = _wrap(tp, "[1, 2]" if scalar is str else "abc")
    return out


CASES = [pytest.param(f"{key}={v}", id=f"{key}:{kind}") for key, tp, rule in LEAVES
         for kind, v in _bad_values(tp, rule).items()]


def test_the_sweep_covers_every_key():
    keys = [k for k, _, _ in LEAVES]
    assert len(keys) > 60 and "optim.lr" in keys and "eval.refine_m" in keys
    assert len(CASES) >= 5 * len(keys)


def test_every_numeric_key_has_a_range():
    missing = [k for k, tp, rule in LEAVES if _numeric(tp) and rule is None]
    assert not missing, f"numeric config keys without a range in dlcr.config.RULES: {missing}"
    schema_keys = {(cls, f.name) for cls in RULES for f in fields(cls)}
    assert {(cls, k) for cls, rules in RULES.items() for k in rules} <= schema_keys  # no stale rule


def test_the_defaults_and_every_packaged_config_meet_the_rules():
    from dlcr.config import list_packaged_configs

    load_config()
    for name in list_packaged_configs():
        load_config(name)


@pytest.mark.parametrize("override", CASES)
def test_a_wrong_value_is_one_config_error_naming_the_key(override: str):
    key = override.split("=", 1)[0]
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    msg = str(e.value)
    assert "\n" not in msg and repr(key) in msg.replace(".a'", "'").replace("[0]'", "'"), msg


@pytest.mark.parametrize("override", [
    "train.epochs=0", "eval.refine_l=0", "eval.refine_m=0", "eval.batch_size=0", "data.height=0",
    "data.workers=-1", "optim.lr=-0.1", "optim.lr=.nan", "optim.lr=inf", "data.random_erasing=1.5",
    "loss.label_smooth=1", "optim.milestones=[10, 0]", "sampler.batch_size=0",
])
def test_values_the_code_cannot_run_with_are_refused(override: str):
    with pytest.raises(ConfigError):
        load_config("synthcc", [override])


@pytest.mark.parametrize("override", ["train.eval_every=0", "data.workers=0", "data.pad=0", "data.pad=null",
                                      "loss.cal_start_epoch=0", "optim.weight_decay=0", "data.random_erasing=1",
                                      "optim.lr=1e-3", "generate.guidance_scale=0"])
def test_edge_values_that_mean_something_are_accepted(override: str):
    key, raw = override.split("=", 1)
    cfg = load_config("synthcc", [override])
    section, leaf = key.split(".")
    value = getattr(getattr(cfg, section), leaf)
    assert value is None if raw == "null" else math.isclose(value, float(raw))


# ------------------------------------------------------------------ through the real command line
def _dlcr(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "dlcr", *argv], env=cli_env(), capture_output=True, text=True,
                          timeout=120)


def _one_error_line(r: subprocess.CompletedProcess, *needles: str) -> None:
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.mark.parametrize("args, needle", [
    (["--set", "eval.batch_size=0"], "eval.batch_size"),
    (["--set", "optim.lr=nan"], "optim.lr"),
    (["--set", "data.height=0"], "data.height"),
    (["--set", "data.workers=-1"], "data.workers"),
    (["--device", "gpu"], "'gpu'"),
    (["--l", "-1"], "--l"),
])
def test_evaluate_refuses_in_one_line(tmp_path: Path, args: list[str], needle: str):
    r = _dlcr("evaluate", "--checkpoint", str(tmp_path / "none.json"), "--set", f"data.root={tmp_path}", *args)
    _one_error_line(r, needle)


def test_device_cuda_without_a_gpu_is_one_line(tmp_path: Path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    r = _dlcr("evaluate", "--checkpoint", str(tmp_path / "none.json"), "--device", "cuda")
    _one_error_line(r, "'cuda'", "no usable CUDA GPU")


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_a_config_that_is_not_utf8_is_one_line(tmp_path: Path, encoding: str):
    p = tmp_path / "c.yaml"
    p.write_bytes("_base_: synthcc\ntrain: {name: café}\n".encode(encoding))
    r = _dlcr("evaluate", "--checkpoint", str(tmp_path / "none.json"), "--config", str(p))
    _one_error_line(r, "not UTF-8", str(p))
