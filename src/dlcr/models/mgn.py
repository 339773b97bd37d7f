"""MGN (Wang et al., ACM MM 2018, "Learning Discriminative Features with Multiple Granularities").

Layout as in the public PyTorch definition seathiefwang/MGN-pytorch ``model/mgn.py`` (read for
reference; this is dlcr's own code):

* a ResNet trunk shared up to the first block of ``layer3`` (``conv1`` … ``layer2``, ``layer3[0]``);
* three branches, each with its own copy of the rest of ``layer3`` and of ``layer4``: the global
  branch keeps ``layer4``'s stride 2; the two part branches use stride 1 (a map twice as tall);
* global max pooling of each branch (3 global descriptors) and max pooling of the part branches'
  maps into 2 and 3 horizontal stripes (5 part descriptors);
* per descriptor a 1×1 reduction to 256-d + BN + ReLU and a linear classifier with a bias.

The feature is the concatenation of the 8 reduced descriptors (``[g1, g2, g3, p2_0, p2_1, p3_0,
p3_1, p3_2]``, 2048-d), in training and at test time; ``classify`` gives ``(B, num_pids, 8)`` logits
(the softmax loss on all 8, summed by :class:`dlcr.losses.CrossEntropyLabelSmooth`).
:meth:`MGNModel.triplet_features` returns the three 256-d global features, on which MGN applies its
triplet loss (each separately, losses summed); :class:`dlcr.engine.trainer.Trainer` does so for
every model (the others return the whole feature).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dlcr.models.backbones import set_last_stride_one
from dlcr.models.parts import PartHead, PartModel

#: stripes of the part branches (MGN's P2 and P3)
STRIPES = (2, 3)
#: global descriptors (one per branch)
GLOBALS = 3


class MGNModel(PartModel):
    """MGN on a torchvision-style ResNet backbone (``conv1``, ``bn1``, ``relu``, ``maxpool``,
    ``layer1`` … ``layer4``, ``out_channels``): :class:`~dlcr.models.backbones.ResNetBackbone` or
    :class:`~dlcr.models.backbones.SmallResNet`, built with last stride 2 (the global branch's; the
    part branches' copies of ``layer4`` are set to stride 1). Weights already loaded into the
    backbone are copied into all three branches, as MGN initialises them."""

    def __init__(self, backbone: nn.Module, num_pids: int, *, part_dim: int = 256, arch: str = "mgn_resnet50"):
        super().__init__(num_pids, arch=arch)
        missing = [n for n in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
                   if not hasattr(backbone, n)]
        if missing:
            raise ValueError(f"MGN needs a ResNet-style backbone; {type(backbone).__name__} has no {missing[0]}")
        b = backbone
        layer3 = list(b.layer3)
        self.backbone = nn.Sequential(b.conv1, b.bn1, b.relu, b.maxpool, b.layer1, b.layer2, layer3[0])
        rest3 = nn.Sequential(*layer3[1:])
        part_layer4 = copy.deepcopy(b.layer4)
        set_last_stride_one(part_layer4)
        self.branch_global = nn.Sequential(copy.deepcopy(rest3), copy.deepcopy(b.layer4))
        self.branch_p2 = nn.Sequential(copy.deepcopy(rest3), copy.deepcopy(part_layer4))
        self.branch_p3 = nn.Sequential(copy.deepcopy(rest3), part_layer4)
        parts = GLOBALS + sum(STRIPES)
        self.set_part_head(PartHead(b.out_channels, parts, part_dim, num_pids, relu=True, classifier_bias=True,
                                    classifier_std=None, bn_init_std=0.02, reduce_init="fan_in"))

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, 8) max-pooled descriptors: 3 global (one per branch), then 2 + 3 stripes."""
        shared = self.backbone(images)
        g, m2, m3 = self.branch_global(shared), self.branch_p2(shared), self.branch_p3(shared)
        desc = [m.amax(dim=(2, 3)).unsqueeze(2) for m in (g, m2, m3)]
        desc += [F.adaptive_max_pool2d(m, (n, 1)).squeeze(3) for m, n in zip((m2, m3), STRIPES, strict=True)]
        return torch.cat(desc, dim=2)

    def triplet_features(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The three reduced global features (each ``(B, part_dim)``), MGN's triplet inputs."""
        return tuple(features[:, i * self.part_dim:(i + 1) * self.part_dim] for i in range(GLOBALS))
