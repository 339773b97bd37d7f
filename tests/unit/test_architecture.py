"""The package's structure, checked from its code (docs/design.md, "Layers" and "Size").

- The import contracts of ``pyproject.toml`` (``[tool.importlinter]``): layers that import only
  downward, library code that never imports ``dlcr.testing``, no import circle between the modules or
  sub-packages of any package. Imports inside function bodies count.
- Module and function sizes: no module over :data:`MAX_MODULE_LINES` lines and no function over
  :data:`MAX_FUNCTION_LINES` (:data:`OVERSIZED` would list exceptions with a ceiling each; it is empty).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "dlcr"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80

#: what is still over the limits, with the size it may not exceed (physical lines): nothing now; an
#: entry here is a debt with a ceiling, never a way around the limits
OVERSIZED: dict[str, int] = {}


def _sizes() -> dict[str, int]:
    """Physical lines of every module and of every function (``module:Class.method``) over the limits."""
    out: dict[str, int] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n > MAX_MODULE_LINES:
            out[rel] = n

        _functions(ast.parse(text), f"{rel}:", out)
    return out


def _functions(node: ast.AST, prefix: str, out: dict[str, int]) -> None:
    """Record in ``out`` every function under ``node`` longer than the limit, as ``prefix + Class.name``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            _functions(child, f"{prefix}{child.name}.", out)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            length = child.end_lineno - child.lineno + 1
            if length > MAX_FUNCTION_LINES:
                out[f"{prefix}{child.name}"] = length
            _functions(child, f"{prefix}{child.name}.", out)


def test_import_contracts_hold():
    pytest.importorskip("importlinter", reason="import-linter is in the dev extra")
    # in a child process: import-linter's command configures logging with dictConfig, which would
    # disable this process's dlcr loggers for every later test
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / 'pyproject.toml')!r}, no_cache=True, no_logo=True))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_module_or_function_grows_past_the_limits():
    sizes = _sizes()
    new = {k: v for k, v in sizes.items() if k not in OVERSIZED}
    grown = {k: (OVERSIZED[k], v) for k, v in sizes.items() if k in OVERSIZED and v > OVERSIZED[k]}
    assert not new, f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function: {new}"
    assert not grown, f"listed in OVERSIZED and grown (limit, now): {grown}"


def test_the_oversized_list_only_names_what_is_still_oversized():
    sizes = _sizes()
    fixed = sorted(k for k in OVERSIZED if k not in sizes)
    assert not fixed, f"now within the limits; remove from OVERSIZED: {fixed}"
