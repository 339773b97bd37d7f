"""Cross-entropy with label smoothing (Szegedy et al.; the identity loss of BoT and CAL)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLabelSmooth(nn.Module):
    """``-Σ_c q_c log p_c`` with ``q = (1-ε)·onehot(y) + ε/C``, averaged over the batch.

    Logits of shape ``(B, C, P)`` (part models such as PCB) are scored per part and the per-part
    losses summed, as PCB trains its part classifiers.
    """

    def __init__(self, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if logits.dim() == 3:
            return sum(self.forward(logits[:, :, p], targets) for p in range(logits.shape[2]))
        if logits.dim() != 2:
            raise ValueError(f"logits must be (B, C) or (B, C, parts), got shape {tuple(logits.shape)}")
        logp = F.log_softmax(logits.float(), dim=1)
        nll = -logp.gather(1, targets.long().unsqueeze(1)).squeeze(1)
        uniform = -logp.mean(dim=1)
        return ((1.0 - self.epsilon) * nll + self.epsilon * uniform).mean()
