"""Classifier heads: a plain linear identity classifier and CAL's cosine clothes classifier."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def linear_classifier(feat_dim: int, num_classes: int, bias: bool = False) -> nn.Linear:
    """Identity classifier initialised with small weights (std 0.001, as in BoT / CAL)."""
    fc = nn.Linear(feat_dim, num_classes, bias=bias)
    nn.init.normal_(fc.weight, std=0.001)
    if bias:
        nn.init.zeros_(fc.bias)
    return fc


class ClothesClassifier(nn.Module):
    """Cosine classifier over clothes ids: ``scale * cos(feature, weight_c)``.

    Features and class weights are both L2-normalised, so a logit is a cosine similarity times
    ``scale`` (CAL uses 16). The forward output is therefore already scaled; :meth:`cosine` gives the
    raw cosines. The clothes-based adversarial loss consumes the scaled logits.
    """

    def __init__(self, feat_dim: int, num_clothes: int, scale: float = 16.0):
        super().__init__()
        if num_clothes < 1:
            raise ValueError(f"num_clothes must be positive, got {num_clothes}")
        self.feat_dim = feat_dim
        self.num_clothes = num_clothes
        self.scale = float(scale)
        self.weight = nn.Parameter(torch.empty(num_clothes, feat_dim))
        # rows of (nearly) unit norm, uniformly oriented — CAL's initialisation
        nn.init.uniform_(self.weight, -1.0, 1.0)
        with torch.no_grad():
            self.weight.copy_(F.normalize(self.weight, dim=1))

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(features, dim=1), F.normalize(self.weight, dim=1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self.cosine(features)

    def extra_repr(self) -> str:
        return f"feat_dim={self.feat_dim}, num_clothes={self.num_clothes}, scale={self.scale}"
