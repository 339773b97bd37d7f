"""``dlcr train`` in a subprocess, with two test hooks (only the reliability tests run this file).

Usage: ``python train_hook.py <dlcr train arguments>`` with, in the environment:

* ``RELIA_INDEX_LOG=<file>``: every training item the data loader fetches is appended as one JSON
  line ``{"e": epoch, "i": pool index}`` (one ``write`` per line, so a SIGKILL never leaves half a
  line). With ``data.workers=0`` the fetch order is the order the sampler handed out, so the log is
  the sampler stream the run actually consumed.
* ``RELIA_PAUSE_SAVE=<epoch>:<file name>`` and ``RELIA_MARKER=<file>``: while the checkpoint of
  0-based ``epoch`` writes ``<file name>`` (``last.safetensors``, ``last.optim.safetensors`` or
  ``last.json``), the hook writes the first half of the bytes into the atomic writer's temp file,
  creates the marker and sleeps, so the test can SIGKILL the process *inside* the checkpoint write,
  at a known point, every time (a kill at random moments lands there only by luck).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any


def _install_index_log(path: str) -> None:
    from dlcr.data import loaders
    from dlcr.engine import trainer

    state = {"epoch": -1}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    orig_epoch = trainer.Trainer.train_epoch
    orig_get = loaders.ImageDataset.__getitem__

    def train_epoch(self: Any, epoch: int) -> Any:
        state["epoch"] = int(epoch)
        return orig_epoch(self, epoch)

    def getitem(self: Any, index: int) -> Any:
        os.write(fd, (json.dumps({"e": state["epoch"], "i": int(index)}) + "\n").encode())
        return orig_get(self, index)

    trainer.Trainer.train_epoch = train_epoch
    loaders.ImageDataset.__getitem__ = getitem


def _install_save_pause(spec: str, marker: str) -> None:
    from dlcr.engine import checkpoint as ck
    from dlcr.io.atomic import atomic_write

    epoch_s, fname = spec.split(":", 1)
    pause_epoch = int(epoch_s)
    current: dict[str, Any] = {"epoch": None}
    orig_save = ck.save_checkpoint

    def save_checkpoint(*args: Any, **kwargs: Any) -> Any:
        current["epoch"] = kwargs.get("epoch")
        try:
            return orig_save(*args, **kwargs)
        finally:
            current["epoch"] = None

    def pausing(orig: Any) -> Any:
        def write(path: Any, data: Any) -> Any:
            if current["epoch"] == pause_epoch and Path(path).name == fname:
                raw = data.encode() if isinstance(data, str) else bytes(data)
                with atomic_write(path) as fh:  # exactly what a real write looks like mid-way
                    fh.write(raw[: len(raw) // 2])
                    fh.flush()
                    os.fsync(fh.fileno())
                    Path(marker).write_text(f"inside the write of {fname} at epoch {pause_epoch}\n")
                    time.sleep(3600)
            return orig(path, data)

        return write

    ck.save_checkpoint = save_checkpoint
    ck.atomic_write_bytes = pausing(ck.atomic_write_bytes)
    ck.atomic_write_text = pausing(ck.atomic_write_text)


def run(argv: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    if os.environ.get("RELIA_INDEX_LOG"):
        _install_index_log(os.environ["RELIA_INDEX_LOG"])
    if os.environ.get("RELIA_PAUSE_SAVE"):
        _install_save_pause(os.environ["RELIA_PAUSE_SAVE"], os.environ["RELIA_MARKER"])
    from dlcr.cli.main import main

    main(["train", *argv])


if __name__ == "__main__":
    run(sys.argv[1:])
