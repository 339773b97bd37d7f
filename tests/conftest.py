import os

os.environ.setdefault("DLCR_NO_PROGRESS", "1")

try:  # keep tests polite on small CI machines
    import torch

    torch.set_num_threads(min(2, torch.get_num_threads()))
except ImportError:  # pragma: no cover
    pass
