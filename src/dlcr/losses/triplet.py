"""Batch-hard triplet loss (Hermans et al., 2017).

For every anchor: the farthest sample with the same label and the closest with a different label;
loss = mean over anchors of ``max(0, d(a,p) - d(a,n) + margin)``. Anchors without a positive (other
than themselves) or without a negative in the batch are skipped, so any label multiset works; a
batch with no valid anchor gives a zero that still carries a gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pairwise_distances(x: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    if metric == "cosine":
        xn = F.normalize(x, dim=1)
        return 1.0 - xn @ xn.t()
    sq = (x * x).sum(dim=1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    # clamp before sqrt: rounding can make d² slightly negative; 1e-12 keeps the gradient finite
    return d2.clamp_min(1e-12).sqrt()


class TripletLoss(nn.Module):
    def __init__(self, margin: float = 0.3, metric: str = "euclidean"):
        super().__init__()
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        self.margin = float(margin)
        self.metric = metric

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        d = pairwise_distances(features.float(), self.metric)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos = same & ~eye
        neg = ~same
        valid = pos.any(dim=1) & neg.any(dim=1)
        if not bool(valid.any()):
            return features.sum() * 0.0
        inf = torch.finfo(d.dtype).max
        hardest_pos = d.masked_fill(~pos, -inf).amax(dim=1)
        hardest_neg = d.masked_fill(~neg, inf).amin(dim=1)
        losses = F.relu(hardest_pos - hardest_neg + self.margin)
        return losses[valid].mean()
