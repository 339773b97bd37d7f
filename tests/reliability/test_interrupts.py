"""Ctrl-C (SIGINT) and SIGTERM from outside: one ``error: interrupted`` line, exit 130 / 143, never 0.

``dlcr generate all && dlcr train`` must not carry on after an interrupt, and the interrupted folder
must resume to the same result as an unbroken run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from relia_util import PYTHON, cli_env, clone, replan

from dlcr.generation.outputs import committed_job_ids, read_manifest
from dlcr.generation.stages import GENERATED

pytestmark = pytest.mark.slow


def _interrupt_when(cmd: list[str], ready, sig: int, timeout: float = 120.0) -> subprocess.CompletedProcess:
    """Start ``cmd``, send ``sig`` as soon as ``ready()`` holds, return the finished process."""
    # Ctrl-C as in a terminal: a suite started in the background (`cmd &` in a script) inherits an
    # ignored SIGINT, which Python then leaves ignored in the child; restore the default there
    proc = subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    t0 = time.monotonic()
    while proc.poll() is None and not ready() and time.monotonic() - t0 < timeout:
        time.sleep(0.01)
    assert proc.poll() is None, f"finished before it could be interrupted: {proc.communicate()}"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("sig, code, by", [(signal.SIGINT, 130, ""), (signal.SIGTERM, 143, " by SIGTERM")])
def test_interrupted_synth_says_so_and_exits_non_zero(tmp_path: Path, sig, code, by):
    out = tmp_path / "w"
    res = _interrupt_when([PYTHON, "-m", "dlcr", "data", "synth", "--out", str(out), "--ids", "150"],
                          lambda: any((out / "synthcc").rglob("*.png")) if out.is_dir() else False, sig)
    assert res.returncode == code, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"error: interrupted{by};"), res.stderr
    assert "Traceback" not in res.stderr


def test_ctrl_c_during_inpaint_exits_130_and_the_folder_resumes(world: Path, work: Path, tmp_path: Path):
    w = clone(work, tmp_path / "work")
    shutil.rmtree(w / GENERATED)
    replan(world, w, "tiny")
    cmd = [PYTHON, "-m", "dlcr", "generate", "inpaint", "--set", f"data.root={world}",
           "--set", "generate.backend=tiny", "--set", "generate.batch_size=2", "--work", str(w)]
    images = w / GENERATED / "images"
    res = _interrupt_when(cmd, lambda: images.is_dir() and any(images.rglob("*.png")), signal.SIGINT)
    assert res.returncode == 130, res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: interrupted;")
    kept = len(committed_job_ids(w / GENERATED))
    done = subprocess.run(cmd, env=cli_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"already committed {kept}," in done.stdout
    assert len(read_manifest(w / GENERATED)) == len({r.job_id for r in read_manifest(w / GENERATED)}) > kept
