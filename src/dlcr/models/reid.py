"""The re-id model: backbone → global pooling → BatchNorm neck → (identity classifier).

Every architecture exposes the same interface (timm-style): ``forward(x)`` returns the feature used
both for the metric losses in training and for retrieval at test time (the neck output), in train
and eval mode alike; ``classify(features)`` returns identity logits; ``feat_dim`` is the feature
size. Clips ``(B, T, 3, H, W)`` are handled C2D-style: every frame goes through the 2D network, the
pooled frame descriptors are averaged over T, then the neck is applied.
"""

from __future__ import annotations

import torch
from torch import nn

from dlcr.models.classifiers import linear_classifier


class GlobalPool(nn.Module):
    """``avg``: global average pooling; ``max``: global max pooling (CAL's C2D video model);
    ``maxavg``: [global max ; global average] (CAL's image model), twice the channels."""

    MODES = ("avg", "max", "maxavg")

    def __init__(self, mode: str = "avg"):
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"pooling must be one of {', '.join(self.MODES)}, got {mode!r}")
        self.mode = mode

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        if self.mode == "max":
            return fmap.amax(dim=(2, 3))
        avg = fmap.mean(dim=(2, 3))
        if self.mode == "avg":
            return avg
        return torch.cat([fmap.amax(dim=(2, 3)), avg], dim=1)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"


class ReIDModel(nn.Module):
    """Backbone + pooling + BN neck + linear identity classifier.

    Two heads are in use. BoT's (the defaults): the neck's shift is a frozen zero and the classifier
    has no bias, so its decision boundaries pass through the origin. CAL's (``train_neck_bias=True,
    classifier_bias=True``, as Simple-CCReID ``models/img_resnet.py`` and ``models/classifier.py``
    build it): both are ordinary trainable parameters starting at zero.
    """

    def __init__(self, backbone: nn.Module, num_pids: int, *, pooling: str = "avg", arch: str = "",
                 neck_init_std: float = 0.0, classifier_bias: bool = False, train_neck_bias: bool = False):
        super().__init__()
        if num_pids < 1:
            raise ValueError(f"num_pids must be positive, got {num_pids}")
        self.arch = arch
        self.num_pids = num_pids
        self.backbone = backbone
        self.pool = GlobalPool(pooling)
        self.feat_dim = backbone.out_channels * (2 if pooling == "maxavg" else 1)
        self.neck = nn.BatchNorm1d(self.feat_dim)
        if neck_init_std > 0:  # CAL initialises the neck's scale around 1 with a small spread
            nn.init.normal_(self.neck.weight, 1.0, neck_init_std)
        else:
            nn.init.ones_(self.neck.weight)
        nn.init.zeros_(self.neck.bias)
        self.neck.bias.requires_grad_(train_neck_bias)
        self.classifier = linear_classifier(self.feat_dim, num_pids, bias=classifier_bias)

    def pooled(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled, pre-neck descriptor of a batch of images (B, 3, H, W)."""
        return self.pool(self.backbone(images))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.neck(pooled)

    def forward(self, x: torch.Tensor, with_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Features (B, feat_dim); with ``with_logits=True`` also the identity logits, so that a DDP
        wrapper sees the classifier used inside its forward."""
        if x.dim() == 5:  # clips: per-frame 2D network, temporal average (C2D)
            b, t = x.shape[:2]
            p = self.pooled(x.flatten(0, 1))
            p = p.view(b, t, *p.shape[1:]).mean(dim=1)
        elif x.dim() == 4:
            p = self.pooled(x)
        else:
            raise ValueError(f"expected images (B,3,H,W) or clips (B,T,3,H,W), got shape {tuple(x.shape)}")
        f = self.head(p)
        return (f, self.classify(f)) if with_logits else f

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def triplet_features(self, features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The feature(s) a metric (triplet) loss is applied to, each scored separately and the losses
        summed: the whole feature here; MGN returns its three global features."""
        return (features,)
