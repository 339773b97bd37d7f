"""``dlcr evaluate`` feeds the model the input size it was trained at, whatever the config says.

A run trained at 64x32 evaluated with a config of another size used to be evaluated at the
config's size without a word. The checkpoint's recorded ``data.height`` / ``data.width`` now win;
an explicit ``--set`` that differs wins too, with a warning naming both values.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from relia_util import H, W

from dlcr.cli.main import main

SETS = ["--set", "train.epochs=1", "--set", "train.eval_every=0", "--set", "sampler.batch_size=8",
        "--set", "sampler.num_instances=2", "--set", "sampler.mode=none", "--set", "data.workers=0"]


@pytest.fixture(scope="module")
def ckpt(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("size_runs")
    main(["train", "--set", f"data.root={world}", "--set", f"data.height={H}", "--set", f"data.width={W}", *SETS,
          "--out", str(out), "--name", "run", "--device", "cpu"])
    return out / "run" / "checkpoints" / "last.json"


@pytest.fixture
def sizes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(height, width) of every evaluation loader built."""
    import dlcr.data.loaders as trainer

    seen: list[tuple[int, int]] = []
    real = trainer.make_eval_loader

    def spy(*args, **kw):
        seen.append((kw["height"], kw["width"]))
        return real(*args, **kw)

    monkeypatch.setattr(trainer, "make_eval_loader", spy)
    return seen


def _evaluate(world: Path, ckpt: Path, out: Path, *sets: str) -> None:
    main(["evaluate", "--set", f"data.root={world}", "--set", "data.workers=0", *sets, "--checkpoint", str(ckpt),
          "--out", str(out), "--device", "cpu"])


def test_the_checkpoints_input_size_wins_over_the_configs(world, ckpt, sizes, tmp_path, caplog):
    from dlcr.config import load_config

    assert (load_config("synthcc").data.height, load_config("synthcc").data.width) != (H, W)
    with caplog.at_level(logging.INFO):
        _evaluate(world, ckpt, tmp_path / "a")
    assert sizes and set(sizes) == {(H, W)}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(f"data.height={H}" in r.getMessage() for r in caplog.records)  # said, not silent
    sizes.clear()
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # explicitly the size it was trained at: nothing to warn about
        _evaluate(world, ckpt, tmp_path / "c", "--set", f"data.height={H}", "--set", f"data.width={W}")
    assert set(sizes) == {(H, W)}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_an_explicit_different_size_wins_with_a_warning_naming_both(world, ckpt, sizes, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _evaluate(world, ckpt, tmp_path / "b", "--set", "data.height=96", "--set", f"data.width={W}")
    assert set(sizes) == {(96, W)}
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warned) == 1 and "data.height=96" in warned[0] and f"data.height={H}" in warned[0], warned

