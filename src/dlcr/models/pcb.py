"""PCB (Sun et al., ECCV 2018): part-based features from horizontal stripes of the last feature map.

The map is average-pooled into ``parts`` horizontal stripes; each stripe's 2048-d vector gets its
own 1×1 reduction to 256-d (+ BN + ReLU) and its own identity classifier. The feature is the
concatenation of the parts, each L2-normalised (PCB's test feature), and it is the same in training
(the shared ReIDModel contract). To keep the classifiers' inputs at the scale PCB trains them on,
:meth:`classify` multiplies each unit part by ``sqrt(part_dim)`` (= 16 for 256-d; a BN'd 256-d vector
has about that norm) — a documented deviation from PCB, which classifies the unnormalised parts.

``classify`` returns logits of shape ``(B, num_pids, parts)``: use a cross-entropy that accepts a
trailing part dimension (:class:`dlcr.losses.CrossEntropyLabelSmooth` sums over parts, as PCB does).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dlcr.models.reid import ReIDModel


class PCBModel(ReIDModel):
    def __init__(self, backbone: nn.Module, num_pids: int, *, parts: int = 6, part_dim: int = 256,
                 arch: str = "pcb_resnet50"):
        super().__init__(backbone, num_pids, pooling="avg", arch=arch)
        # the generic neck / classifier are replaced by per-part ones
        del self.neck, self.classifier
        c = backbone.out_channels
        self.parts, self.part_dim = parts, part_dim
        self.feat_dim = parts * part_dim
        self.part_pool = nn.AdaptiveAvgPool2d((parts, 1))
        # one independent 1x1 reduction per part, as a grouped 1-d convolution
        self.reduce = nn.Conv1d(parts * c, parts * part_dim, kernel_size=1, groups=parts, bias=False)
        nn.init.kaiming_normal_(self.reduce.weight, mode="fan_out", nonlinearity="relu")
        self.reduce_bn = nn.BatchNorm1d(parts * part_dim)
        self.part_classifier = nn.Parameter(torch.randn(parts, num_pids, part_dim) * 0.001)
        self.part_scale = math.sqrt(part_dim)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, parts) stripe descriptors."""
        return self.part_pool(self.backbone(images)).squeeze(-1)

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        b = pooled.shape[0]
        z = pooled.transpose(1, 2).reshape(b, -1, 1)  # part-major: [part0 channels, part1 channels, …]
        z = F.relu(self.reduce_bn(self.reduce(z).squeeze(-1)))
        z = F.normalize(z.view(b, self.parts, self.part_dim), dim=-1)
        return z.reshape(b, self.feat_dim)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        z = features.view(features.shape[0], self.parts, self.part_dim) * self.part_scale
        return torch.einsum("bpd,pcd->bcp", z, self.part_classifier)
