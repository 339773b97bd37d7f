"""Batch-hard triplet loss (Hermans et al., 2017) as CAL uses it.

For every anchor: the farthest sample with the same label and the closest with a different label;
loss = mean over anchors of ``max(0, d(a,p) - d(a,n) + margin)``.

Defaults follow CAL's ``TripletLoss`` (guxinqian/Simple-CCReID, ``losses/triplet_loss.py``):

* ``metric="cosine"``: ``d = 1 - cos`` of the L2-normalised features (``"euclidean"`` is the
  original paper's distance);
* ``anchors="all"``: every anchor counts in the mean. Its positives include itself (distance ~0),
  so an anchor with no other sample of its label is scored against the margin alone, and an anchor
  without any negative contributes 0. ``anchors="valid"`` skips anchors without another positive or
  without a negative instead (the mean is over the rest; no valid anchor gives a zero that still
  carries a gradient). In a P×K batch (K >= 2, P >= 2) both give the same value.

``gallery`` / ``gallery_labels`` (optional) are the samples mined against; CAL gathers the features
of all ranks there (``GatherLayer``), anchors being the local batch. They default to the batch
itself, which then must contain the anchors (as the gathered gallery does).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

Metric = Literal["euclidean", "cosine"]
Anchors = Literal["all", "valid"]


def cross_distances(x: torch.Tensor, y: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    """(len(x), len(y)) distances: Euclidean, or ``1 - cos`` of the L2-normalised rows."""
    if metric == "cosine":
        return 1.0 - F.normalize(x, dim=1) @ F.normalize(y, dim=1).t()
    d2 = (x * x).sum(dim=1)[:, None] + (y * y).sum(dim=1)[None, :] - 2.0 * (x @ y.t())
    # clamp before sqrt: rounding can make d² slightly negative; 1e-12 keeps the gradient finite
    return d2.clamp_min(1e-12).sqrt()


def pairwise_distances(x: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    return cross_distances(x, x, metric)


class TripletLoss(nn.Module):
    def __init__(self, margin: float = 0.3, metric: Metric = "cosine", anchors: Anchors = "all"):
        super().__init__()
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
        if anchors not in ("all", "valid"):
            raise ValueError(f"anchors must be 'all' or 'valid', got {anchors!r}")
        self.margin = float(margin)
        self.metric = metric
        self.anchors = anchors

    def forward(self, features: torch.Tensor, labels: torch.Tensor, gallery: torch.Tensor | None = None,
                gallery_labels: torch.Tensor | None = None) -> torch.Tensor:
        if (gallery is None) != (gallery_labels is None):
            raise ValueError("gallery and gallery_labels go together")
        x = features.float()
        if gallery is None:
            g, gl = x, labels
        else:
            g, gl = gallery.float(), gallery_labels
        d = cross_distances(x, g, self.metric)
        same = labels[:, None] == gl[None, :]
        neg = ~same
        if self.anchors == "all":
            pos = same
            valid = None
        else:
            if gallery is not None:
                raise ValueError("anchors='valid' needs the anchors' own positions: use it without a gallery")
            eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
            pos = same & ~eye
            valid = pos.any(dim=1) & neg.any(dim=1)
            if not bool(valid.any()):
                return features.sum() * 0.0
        big = torch.finfo(d.dtype).max
        hardest_pos = d.masked_fill(~pos, -big).amax(dim=1)
        hardest_neg = d.masked_fill(~neg, big).amin(dim=1)
        losses = F.relu(hardest_pos - hardest_neg + self.margin)
        return losses.mean() if valid is None else losses[valid].mean()
