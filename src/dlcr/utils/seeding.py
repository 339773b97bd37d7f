"""Seeded draws from torch's global generators without touching anyone else's random stream.

Some draws cannot be given a ``torch.Generator``: a module's default weight initialisation, and the
sampling inside transformers' ``generate``. :func:`seeded_torch` runs such code with the global
generators seeded for it and puts the caller's generator states back afterwards, so the result is a
function of the seed alone and nothing outside the block sees a reseeded generator.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def seeded_torch(seed: int, device: Any = None) -> Iterator[None]:
    """Run the block with torch's CPU generator, and for an accelerator ``device`` (``"cuda:1"``, a
    ``torch.device``) that device's generator too, seeded with ``seed``; on leaving the block (also on
    an error) every generator it seeded is back in the state it had before.

    Inside, the draws are those ``torch.manual_seed(seed)`` would give on the CPU and on ``device``.
    """
    import torch

    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type == "cpu":
        with torch.random.fork_rng(devices=[]):  # the CPU state only
            torch.random.default_generator.manual_seed(int(seed))
            yield
        return
    mod = torch.get_device_module(dev.type)
    index = dev.index if dev.index is not None else (mod.current_device() if hasattr(mod, "current_device") else 0)
    with torch.random.fork_rng(devices=[index], device_type=dev.type):
        torch.random.default_generator.manual_seed(int(seed))
        if hasattr(mod, "device"):
            with mod.device(index):
                mod.manual_seed(int(seed))  # this device's generator only
        else:  # a single-device backend (mps)
            mod.manual_seed(int(seed))
        yield


__all__ = ["seeded_torch"]
