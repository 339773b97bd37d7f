"""Small pieces of the training loop: the loader's epoch seed, frozen parameters, the hand-made
gradient all-reduce, the epoch's loss tally and the ``log.jsonl`` writer."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn


def loader_seed(seed: int, epoch: int, rank: int) -> int:
    """Seed of the data loader's generator for one epoch on one rank (its workers' base seed comes
    from it): a function of the checkpointed state only, never of the process's RNG."""
    return int(np.random.default_rng([int(seed), int(epoch), int(rank), 0x10AD]).integers(2**63))


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` take no gradient inside the block (inputs still do)."""
    flags = [p.requires_grad for p in module.parameters()]
    for p in module.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


def allreduce_grads(module: nn.Module, world: int) -> None:
    import torch.distributed as dist

    for p in module.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


class JsonlLog:
    """``log.jsonl`` (one JSON object per line, flushed) plus TensorBoard scalars when installed."""

    def __init__(self, out_dir: Path, enabled: bool):
        self.enabled = enabled
        self.path = out_dir / "log.jsonl"
        self.tb = None
        if enabled:
            out_dir.mkdir(parents=True, exist_ok=True)
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except Exception:  # tensorboard is optional
                self.tb = None

    def write(self, record: dict[str, Any], step: int | None = None) -> None:
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        if self.tb is not None and step is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    self.tb.add_scalar(k, v, step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class EpochTally:
    """Running sums of one epoch's losses (float64, on the device) and the first non-finite loss,
    read back to the host only by :meth:`check` and :meth:`sums`."""

    KEYS = ("loss", "id", "tri", "clothes", "adv", "acc")

    def __init__(self, dev: torch.device, epoch: int):
        self.epoch = epoch
        self.n = 0
        self.sums_t = torch.zeros(len(self.KEYS), dtype=torch.float64, device=dev)
        self.bad_found = torch.zeros((), dtype=torch.bool, device=dev)  # a non-finite loss was seen
        self.bad_value = torch.zeros((), dtype=torch.float32, device=dev)  # the first one
        self.zero = torch.zeros((), device=dev)

    def add(self, terms: tuple[torch.Tensor, ...], logits: torch.Tensor, pids: torch.Tensor) -> None:
        """Count one step: ``terms`` are (loss, id, tri, clothes, adv); the accuracy is added here."""
        lv = terms[0].detach().float()
        finite = torch.isfinite(lv)
        self.bad_value = torch.where(self.bad_found | finite, self.bad_value, lv)
        self.bad_found = self.bad_found | ~finite
        self.n += 1
        acc = ((logits.mean(-1) if logits.ndim == 3 else logits).argmax(1) == pids).float().mean()
        step_vals = torch.stack([v.detach().float().reshape(()) for v in (*terms, acc)])
        self.sums_t += step_vals.double()

    def check(self) -> None:  # one host sync
        if bool(self.bad_found):
            raise FloatingPointError(f"loss became {float(self.bad_value)} at epoch {self.epoch + 1}; "
                                     "lower optim.lr")

    def sums(self) -> dict[str, float]:
        return dict(zip(self.KEYS, self.sums_t.tolist(), strict=True))
