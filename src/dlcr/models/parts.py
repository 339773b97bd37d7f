"""The head shared by the multi-part models (MGN, HPM): per-part reduction and per-part classifiers.

A part model pools its feature map(s) into ``P`` descriptors ``(B, C, P)``; each part gets its own
1×1 reduction to ``part_dim`` (+ BN, + ReLU where the model's reference does so) and its own
identity classifier. The feature is the concatenation of the reduced parts, part-major
(``[part 0 | part 1 | …]``, ``P * part_dim`` values), in training and at test time alike;
``classify`` returns ``(B, num_pids, P)`` logits, whose cross-entropies
:class:`dlcr.losses.CrossEntropyLabelSmooth` sums over the parts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dlcr.models.reid import ReIDModel


class PartHead(nn.Module):
    """``P`` independent 1×1 reductions (one grouped convolution) + BN (+ ReLU) and ``P`` linear classifiers.

    Initialisation, per part: the reduction is Kaiming-normal over its inputs (``reduce_init="fan_in"``,
    ``std = sqrt(2 / C)``, MGN) or over its outputs (``"fan_out"``, ``sqrt(2 / part_dim)``, HPM);
    ``classifier_std=None`` draws the classifiers Kaiming-normal over their outputs
    (``std = sqrt(2 / num_pids)``, MGN's choice), a number a plain normal of that spread.
    """

    def __init__(self, in_channels: int, parts: int, part_dim: int, num_pids: int, *, relu: bool = True,
                 classifier_bias: bool = False, classifier_std: float | None = 0.001, bn_init_std: float = 0.0,
                 reduce_init: str = "fan_in"):
        super().__init__()
        if reduce_init not in ("fan_in", "fan_out"):
            raise ValueError(f"reduce_init must be fan_in or fan_out, got {reduce_init!r}")
        self.parts, self.part_dim, self.relu = parts, part_dim, relu
        self.reduce = nn.Conv1d(parts * in_channels, parts * part_dim, kernel_size=1, groups=parts, bias=False)
        self.bn = nn.BatchNorm1d(parts * part_dim)
        self.weight = nn.Parameter(torch.empty(parts, num_pids, part_dim))
        self.bias = nn.Parameter(torch.zeros(parts, num_pids)) if classifier_bias else None
        # per-group fans (torch's own fan_out of a grouped convolution would count all parts' outputs)
        fan = in_channels if reduce_init == "fan_in" else part_dim
        nn.init.normal_(self.reduce.weight, 0.0, (2.0 / fan) ** 0.5)
        if bn_init_std > 0:
            nn.init.normal_(self.bn.weight, 1.0, bn_init_std)
        else:
            nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        std = (2.0 / num_pids) ** 0.5 if classifier_std is None else classifier_std
        nn.init.normal_(self.weight, 0.0, std)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(B, C, P) part descriptors → (B, P * part_dim) reduced, concatenated features."""
        b, _, p = pooled.shape
        if p != self.parts:
            raise ValueError(f"expected {self.parts} part descriptors, got {p}")
        z = pooled.transpose(1, 2).reshape(b, -1, 1)  # part-major channels for the grouped convolution
        z = self.bn(self.reduce(z).squeeze(-1))
        return F.relu(z) if self.relu else z

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """(B, P * part_dim) → (B, num_pids, P) logits, each part scored by its own classifier."""
        z = features.view(features.shape[0], self.parts, self.part_dim)
        logits = torch.einsum("bpd,pcd->bcp", z, self.weight)
        if self.bias is not None:
            logits = logits + self.bias.t().unsqueeze(0)
        return logits


class PartModel(ReIDModel):
    """Base of MGN and HPM: a :class:`ReIDModel` whose ``pooled`` gives ``(B, C, P)`` part descriptors
    and whose head is a :class:`PartHead` (no BN neck, no single classifier).

    ``ReIDModel.__init__`` is not run: it would register a backbone, neck and classifier that these
    models lay out differently. The clip handling (per-frame descriptors averaged over T) and the
    ``with_logits`` forward are ReIDModel's.
    """

    def __init__(self, num_pids: int, *, arch: str):
        nn.Module.__init__(self)
        if num_pids < 1:
            raise ValueError(f"num_pids must be positive, got {num_pids}")
        self.arch = arch
        self.num_pids = num_pids

    def set_part_head(self, part_head: PartHead) -> None:
        self.part_head = part_head
        self.parts, self.part_dim = part_head.parts, part_head.part_dim
        self.feat_dim = part_head.parts * part_head.part_dim

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.part_head(pooled)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.part_head.classify(features)
