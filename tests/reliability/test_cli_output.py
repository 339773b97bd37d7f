"""What the command line says while it works (issue 15, point 7).

Per-epoch lines and stage summaries must reach the terminal, not only ``log.jsonl``; ``-q`` keeps
warnings and errors only, ``-v`` adds the logger names. Run as real processes: the point is what a
user's terminal (here: a pipe) receives.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys

import pytest
from relia_util import PYTHON, cli_env, data_sets

TRAIN = ["--set", "train.epochs=2", "--set", "train.eval_every=0", "--set", "sampler.batch_size=8",
         "--set", "sampler.num_instances=2", "--set", "sampler.mode=none", "--device", "cpu"]


def dlcr(*argv: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "dlcr", *argv], env=cli_env(**env), capture_output=True, text=True,
                          timeout=300)


def lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@pytest.fixture(scope="module")
def trained(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli_out")
    normal = dlcr("train", *data_sets(world), *TRAIN, "--out", str(out), "--name", "normal")
    quiet = dlcr("-q", "train", *data_sets(world), *TRAIN, "--out", str(out), "--name", "quiet",
                 DLCR_NO_PROGRESS="0")
    verbose = dlcr("--verbose", "train", *data_sets(world), *TRAIN, "--out", str(out), "--name", "verbose")
    return normal, quiet, verbose


def test_train_prints_one_line_per_epoch_with_its_losses(trained):
    normal, _, _ = trained
    assert normal.returncode == 0, normal.stderr[-2000:]
    epochs = [ln for ln in lines(normal.stderr) if ln.startswith("epoch ")]
    assert [ln.split(":")[0] for ln in epochs] == ["epoch 1", "epoch 2"], normal.stderr
    assert all("loss=" in ln and "id=" in ln and "lr=" in ln for ln in epochs), epochs
    assert "trained 2 epoch(s)" in normal.stdout
    # a pipe gets plain lines: no rich boxes, no escape codes, no wrapping of long records
    assert "\x1b" not in normal.stderr and "│" not in normal.stderr


def test_quiet_keeps_warnings_and_errors_only_and_hides_progress_bars(trained):
    _, quiet, _ = trained
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    # progress bars were allowed by the environment (DLCR_NO_PROGRESS=0): -q alone hides them
    assert lines(quiet.stderr) == [], quiet.stderr
    assert "trained 2 epoch(s)" in quiet.stdout  # the result is still printed


def test_verbose_names_the_logger(trained):
    _, _, verbose = trained
    assert verbose.returncode == 0, verbose.stderr[-2000:]
    assert any(ln.startswith("dlcr.engine.trainer: epoch 1: loss=") for ln in lines(verbose.stderr)), verbose.stderr


def test_quiet_and_verbose_together_is_one_error_line():
    r = dlcr("-q", "-v", "data", "inspect", "synthcc")
    assert r.returncode == 2 and lines(r.stderr) == ["error: --quiet and --verbose exclude each other; give one"]


def test_generation_stages_print_their_one_line_summary(world, tmp_path):
    r = dlcr("generate", "masks", "--set", f"data.root={world}", "--work", str(tmp_path / "w"))
    assert r.returncode == 0, r.stderr[-2000:]
    out = lines(r.stdout)
    assert len(out) == 1 and out[0].startswith("masks: "), r.stdout
    assert "ParseReport(" not in r.stdout and "PosixPath" not in r.stdout


# ------------------------------------------------------------------ the handler itself, in-process
@pytest.fixture
def restore_dlcr_logger():
    lg = logging.getLogger("dlcr")
    handlers, level = list(lg.handlers), lg.level
    yield lg
    lg.handlers[:] = handlers
    lg.setLevel(level)
    from dlcr.utils import progress

    progress.set_quiet(False)


def test_setup_logging_twice_installs_one_handler_on_the_current_stderr(restore_dlcr_logger, monkeypatch):
    from dlcr.utils.logging import get_logger, setup_logging

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    setup_logging("normal", rich=False)
    setup_logging("normal", rich=False)
    monkeypatch.setattr(sys, "stderr", second)  # a later capture: records follow sys.stderr
    log = get_logger("engine.x")
    log.info("epoch %d: loss=%.1f", 3, 1.5)
    log.warning("careful")
    log.debug("hidden")
    assert first.getvalue() == ""
    assert second.getvalue().splitlines() == ["epoch 3: loss=1.5", "warning: careful"]


def test_quiet_turns_progress_bars_off_and_normal_turns_them_back_on(restore_dlcr_logger, monkeypatch):
    from dlcr.utils.logging import setup_logging
    from dlcr.utils.progress import progress_enabled

    monkeypatch.delenv("DLCR_NO_PROGRESS", raising=False)
    setup_logging("quiet", rich=False)
    assert not progress_enabled() and logging.getLogger("dlcr").level == logging.WARNING
    setup_logging("normal", rich=False)
    assert progress_enabled() and logging.getLogger("dlcr").level == logging.INFO


def test_rich_handler_is_used_for_a_terminal(restore_dlcr_logger, monkeypatch):
    from rich.logging import RichHandler

    from dlcr.utils.logging import get_logger, setup_logging

    buf = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buf)
    setup_logging("normal", rich=True)
    hs = [h for h in logging.getLogger("dlcr").handlers if getattr(h, "_dlcr_terminal", False)]
    assert len(hs) == 1 and isinstance(hs[0], RichHandler)
    get_logger("t").info("epoch 1: loss=2")
    assert "epoch 1: loss=2" in buf.getvalue()


def test_a_run_records_the_configuration_config_show_prints(trained, world):
    """``<run>/config.yaml`` is byte for byte what ``dlcr config show`` prints for the same settings."""
    normal, _, _ = trained
    run_dir = normal.stdout.split("last checkpoint: ")[1].split()[0]
    from pathlib import Path

    recorded = (Path(run_dir).parents[1] / "config.yaml").read_text()
    sets = [a for a in [*data_sets(world), *TRAIN] if a not in ("--device", "cpu")]
    shown = dlcr("config", "show", *sets)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == recorded
