"""Untrusted files: weights load without pickle code execution, remote code stays off unless asked for,
and released-format data cannot make dlcr read or write outside its folders.
"""

from __future__ import annotations

import ast
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from relia_util import REPO, data_sets, snapshot

from dlcr.errors import UnsafePathError
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.released_format import import_released
from dlcr.io.images import write_png

SRC = REPO / "src" / "dlcr"


# ----------------------------------------------------------------------------------------- source checks
def _const(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def unsafe_loading(source: str, where: str = "<src>") -> list[str]:
    """Places in ``source`` that could run code from a file or a hub repository."""
    bad: list[str] = []
    for node in ast.walk(ast.parse(source)):
        at = f"{where}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.ImportFrom) and node.module in ("torch", "pickle", "dill", "joblib"):
            for alias in node.names:
                if alias.name in ("load", "loads", "Unpickler"):
                    bad.append(f"{at}: from {node.module} import {alias.name}")
        if isinstance(node, ast.Import):
            bad += [f"{at}: import {a.name}" for a in node.names if a.name in ("pickle", "dill", "joblib", "cloudpickle")]
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            kw = {k.arg: k.value for k in node.keywords if k.arg}
            if name == "torch.load" and not _const(kw.get("weights_only"), True):
                bad.append(f"{at}: torch.load without weights_only=True")
            if name in ("torch.hub.load", "yaml.load", "yaml.unsafe_load", "pickle.load", "pickle.loads"):
                bad.append(f"{at}: {name}")
            if name in ("np.load", "numpy.load") and "allow_pickle" in kw and not _const(kw["allow_pickle"], False):
                bad.append(f"{at}: np.load with allow_pickle")
            if _const(kw.get("trust_remote_code"), True):
                bad.append(f"{at}: trust_remote_code=True")
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if _const(v, True) and isinstance(k, ast.Constant) and k.value == "trust_remote_code":
                    bad.append(f"{at}: {{'trust_remote_code': True}}")
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            pos = a.posonlyargs + a.args
            pairs = list(zip(pos[len(pos) - len(a.defaults):], a.defaults, strict=True))
            pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
            for arg, default in pairs:
                if arg.arg == "trust_remote_code" and not _const(default, False):
                    bad.append(f"{at}: {node.name}(trust_remote_code=...) does not default to False")
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and node.target.id == "trust_remote_code" and not _const(node.value, False)):
            bad.append(f"{at}: field trust_remote_code does not default to False")
    return bad


def test_the_checker_finds_unsafe_loading():
    sample = '''
import pickle
from torch import load
torch.load(p)
torch.load(p, weights_only=False)
torch.load(p, map_location="cpu", weights_only=True)
AutoModel.from_pretrained(m, trust_remote_code=True)
kw = {"trust_remote_code": True}
def make(model, trust_remote_code=True): ...
def fine(model, *, trust_remote_code: bool = False): ...
np.load(f, allow_pickle=True)
yaml.load(text)
class Cfg:
    trust_remote_code: bool = True
'''
    found = unsafe_loading(sample)
    assert len(found) == 10, found
    assert not any(":6:" in f or ":10:" in f for f in found)  # the safe load and the safe default pass


def test_source_tree_loads_weights_only_safely_and_never_trusts_remote_code_by_default():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    bad = [b for f in files for b in unsafe_loading(f.read_text(encoding="utf-8"), str(f.relative_to(REPO)))]
    assert not bad, "\n".join(bad)
    # every torch.load the package makes is a weights-only one (counted, so the check cannot go vacuous)
    n = sum(f.read_text(encoding="utf-8").count("torch.load(") for f in files)
    assert n >= 3

    from dlcr.config import GenerateConfig, load_config

    assert GenerateConfig().trust_remote_code is False
    assert load_config("synthcc").generate.trust_remote_code is False


def test_remote_code_reaches_transformers_only_when_the_user_sets_it(world, tmp_path, monkeypatch, caplog, capsys):
    transformers = pytest.importorskip("transformers")
    from dlcr.cli.main import main

    seen: list[dict] = []

    def fake_from_pretrained(name, *args, **kwargs):
        seen.append(kwargs)
        raise OSError("stopped by the test before any download")

    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", fake_from_pretrained)
    monkeypatch.setattr(transformers.AutoImageProcessor, "from_pretrained", fake_from_pretrained)
    # describe needs label maps before it builds a captioner: made here by the ground-truth parser
    main(["generate", "masks", *data_sets(world), "--work", str(tmp_path / "work_d"),
          "--set", "generate.parser=synthcc"])
    capsys.readouterr()
    base = ["generate", "describe", *data_sets(world), "--work", str(tmp_path / "work_d"),
            "--set", "generate.captioner=hf", "--set", "generate.captioner_model=some-org/some-vlm"]
    parse = ["generate", "masks", *data_sets(world), "--work", str(tmp_path / "work_m"),
             "--set", "generate.parser=hf", "--set", "generate.parser_model=some-org/some-segformer"]
    with caplog.at_level(logging.WARNING):
        for argv, trusted in ((base, False), (parse, False), ([*base, "--set", "generate.trust_remote_code=true"], True),
                              ([*parse, "--set", "generate.trust_remote_code=true"], True)):
            with pytest.raises(SystemExit) as e:
                main(argv)
            assert e.value.code == 2
            assert seen[-1]["trust_remote_code"] is trusted, (argv, seen[-1])
    assert len(seen) == 4
    errs = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(errs) == 4 and all(ln.startswith("error: cannot load") or "stopped by the test" in ln for ln in errs)


# ----------------------------------------------------------------------------------------- released format
def _strip(folder: Path, rel: str, k: int = 2) -> None:
    write_png(folder / (rel + ".png"), np.full((8, 4 * k, 3), 90, np.uint8))
    (folder / (rel + ".txt")).write_text("".join(f"red shirt| blue jeans| shoes {v}\n" for v in range(k)))


def test_released_data_with_paths_leaving_its_root_is_refused_and_earlier_imports_are_kept(tmp_path):
    """The released data come as an archive unpacked by the user; a member that is a symlink to a file
    or a folder outside the unpacked root (what a crafted archive can contain) must neither be read
    nor lead to writes outside the output folder, and what was imported before stays intact."""
    rel, out, outside = tmp_path / "released", tmp_path / "gen", tmp_path / "outside"
    _strip(rel, "synthcc/train/001_1_c1_000")
    assert len(import_released(rel, out, dataset="synthcc")) == 2
    kept = snapshot(out)

    _strip(outside, "secret")
    outside_before = snapshot(outside)
    for name, target in (("002_1_c1_000", None), ("leak", outside)):
        d = rel / "synthcc" / "train"
        if target is None:  # a strip and its txt that are symlinks to files outside the root
            os.symlink(outside / "secret.png", d / f"{name}.png")
            os.symlink(outside / "secret.txt", d / f"{name}.txt")
        else:  # a folder symlink leaving the root
            os.symlink(target, d / name)
        with pytest.raises(UnsafePathError, match="leaves the root"):
            import_released(rel, out, dataset="synthcc")
        for p in d.iterdir():
            if p.is_symlink():
                p.unlink()
    assert snapshot(out) == kept  # the earlier import is untouched, nothing of the outside got in
    assert snapshot(outside) == outside_before
    assert (out / MANIFEST).is_file()


def test_released_data_cannot_write_outside_the_output_folder(tmp_path):
    """An output folder whose images/ is a symlink elsewhere is refused before anything is written there."""
    rel, out, elsewhere = tmp_path / "released", tmp_path / "gen", tmp_path / "elsewhere"
    _strip(rel, "synthcc/train/001_1_c1_000")
    out.mkdir()
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "images")
    with pytest.raises(UnsafePathError):
        import_released(rel, out, dataset="synthcc")
    assert not any(elsewhere.iterdir())


def test_a_dataset_folder_that_is_a_symlink_can_be_generated_from(world, tmp_path):
    """The user's own dataset may live elsewhere behind a symlink; only untrusted data (released archives,
    manifests, job tables) must be kept inside their roots."""
    from dlcr.cli.main import main

    root = tmp_path / "data"
    root.mkdir()
    os.symlink(world / "synthcc", root / "synthcc")
    main(["data", "inspect", "synthcc", "--root", str(root)])  # the parser follows the link
    main(["generate", "all", *data_sets(root), "--set", "generate.k=1", "--work", str(tmp_path / "work"),
          "--no-queries"])
    assert (tmp_path / "work" / "generated" / MANIFEST).is_file()
