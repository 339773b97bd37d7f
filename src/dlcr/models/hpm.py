"""HPM (Fu et al., AAAI 2019, "Horizontal Pyramid Matching for Person Re-identification").

Following the authors' public code SHI-Labs/Horizontal-Pyramid-Matching ``models/HPM.py`` (read for
reference; this is dlcr's own code): a ResNet-50 with last stride 1, whose map is cut into a
horizontal pyramid of 1, 2, 4 and 8 stripes (15 parts). Each stripe is pooled with the paper's
combination of global average and global max pooling (their sum); each of the 15 descriptors gets
its own 1×1 reduction to 256-d + BN + ReLU (as the reference code does) and its own bias-free
classifier (weights ~ N(0, 0.001)).

The feature is the concatenation of the 15 reduced parts (3840-d), in training and at test time;
``classify`` gives ``(B, num_pids, 15)`` logits, their cross-entropies summed over the parts.
HPM trains with the softmax loss alone; dlcr's trainer also applies its triplet loss to the whole
feature (``loss.triplet_weight=0`` turns it off).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcr.models.parts import PartHead, PartModel

#: stripes per pyramid level
PYRAMID = (1, 2, 4, 8)


class HPMModel(PartModel):
    """HPM on any backbone that returns a map ``(B, out_channels, H, W)``."""

    def __init__(self, backbone: nn.Module, num_pids: int, *, part_dim: int = 256,
                 pyramid: tuple[int, ...] = PYRAMID, arch: str = "hpm_resnet50"):
        super().__init__(num_pids, arch=arch)
        if not pyramid or any(int(n) < 1 for n in pyramid):
            raise ValueError(f"pyramid levels must be positive stripe counts, got {pyramid}")
        self.backbone = backbone
        self.pyramid = tuple(int(n) for n in pyramid)
        self.set_part_head(PartHead(backbone.out_channels, sum(self.pyramid), part_dim, num_pids, relu=True,
                                    classifier_bias=False, classifier_std=0.001, reduce_init="fan_out"))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, 15) stripe descriptors, level by level (1, then 2, 4, 8 stripes, top to bottom)."""
        fmap = self.backbone(images)
        desc = [(F.adaptive_avg_pool2d(fmap, (n, 1)) + F.adaptive_max_pool2d(fmap, (n, 1))).squeeze(3)
                for n in self.pyramid]
        return torch.cat(desc, dim=2)
