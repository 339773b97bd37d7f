"""SCHP's AugmentCE2P network as a plain PyTorch module, and its checkpoints.

The module names mirror the official implementation (``networks/AugmentCE2P.py`` in
GoGoDuck912/Self-Correction-Human-Parsing) so that the released checkpoints load with
``strict=True``; see :mod:`dlcr.generation.parsers.schp` for the layout and the parser that uses it.
:class:`ABN` reproduces InPlaceABN's inference arithmetic with its parameter names (scale
``|weight| + eps``, then a leaky ReLU of slope 0.01 in the heads, no activation in the backbone).
``width`` and ``layers`` shrink the network for tests; the defaults are the official ResNet-101.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlcr.errors import CheckpointError, ConfigError

RESNET101_LAYERS = (3, 4, 23, 3)


class ABN(nn.Module):
    """Batch norm + optional leaky ReLU with InPlaceABN's parameter names and scale ``|w| + eps``."""

    def __init__(
        self, num_features: int, activation: str = "leaky_relu", slope: float = 0.01, eps: float = 1e-5
    ):
        super().__init__()
        if activation not in ("leaky_relu", "none"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.num_features = num_features
        self.activation = activation
        self.slope = slope
        self.eps = eps
        self.momentum = 0.1
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.weight.abs() + self.eps
        x = F.batch_norm(
            x, self.running_mean, self.running_var, scale, self.bias, self.training, self.momentum, self.eps
        )
        if self.activation == "leaky_relu":
            x = F.leaky_relu(x, self.slope)
        return x

    def extra_repr(self) -> str:
        return f"{self.num_features}, activation={self.activation}"


def _bn(c: int) -> ABN:  # backbone norm: no activation (the block applies ReLU itself)
    return ABN(c, activation="none")


def _conv_abn(cin: int, cout: int, k: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel_size=k, padding=padding, bias=False), ABN(cout))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = _bn(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = _bn(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = _bn(planes * 4)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        residual = x if self.downsample is None else self.downsample(x)
        return F.relu(out + residual)


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class PSPModule(nn.Module):
    def __init__(self, features: int, out_features: int, sizes: Sequence[int] = (1, 2, 3, 6)):
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d((s, s)),
                nn.Conv2d(features, out_features, kernel_size=1, bias=False),
                ABN(out_features),
            )
            for s in sizes
        )
        self.bottleneck = _conv_abn(features + len(sizes) * out_features, out_features, k=3, padding=1)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        size = feats.shape[2:]
        priors = [_up(stage(feats), size) for stage in self.stages] + [feats]
        return self.bottleneck(torch.cat(priors, 1))


class EdgeModule(nn.Module):
    def __init__(self, in_fea: Sequence[int], mid_fea: int, out_fea: int = 2):
        super().__init__()
        self.conv1 = _conv_abn(in_fea[0], mid_fea)
        self.conv2 = _conv_abn(in_fea[1], mid_fea)
        self.conv3 = _conv_abn(in_fea[2], mid_fea)
        self.conv4 = nn.Conv2d(mid_fea, out_fea, kernel_size=3, padding=1, bias=True)
        self.conv5 = nn.Conv2d(out_fea * 3, out_fea, kernel_size=1, bias=True)

    def forward(
        self, x1: torch.Tensor, x2: torch.Tensor, x3: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        size = x1.shape[2:]
        f1, f2, f3 = self.conv1(x1), self.conv2(x2), self.conv3(x3)
        e1, e2, e3 = self.conv4(f1), self.conv4(f2), self.conv4(f3)
        f2, f3, e2, e3 = _up(f2, size), _up(f3, size), _up(e2, size), _up(e3, size)
        edge = self.conv5(torch.cat([e1, e2, e3], 1))
        return edge, torch.cat([f1, f2, f3], 1)


class DecoderModule(nn.Module):
    def __init__(self, num_classes: int, context: int, low: int, mid: int, skip: int):
        super().__init__()
        self.conv1 = _conv_abn(context, mid)
        self.conv2 = _conv_abn(low, skip)
        self.conv3 = nn.Sequential(
            nn.Conv2d(mid + skip, mid, kernel_size=1, bias=False),
            ABN(mid),
            nn.Conv2d(mid, mid, kernel_size=1, bias=False),
            ABN(mid),
        )
        self.conv4 = nn.Conv2d(mid, num_classes, kernel_size=1, bias=True)

    def forward(self, xt: torch.Tensor, xl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xt = _up(self.conv1(xt), xl.shape[2:])
        x = self.conv3(torch.cat([xt, self.conv2(xl)], 1))
        return self.conv4(x), x


class SCHPNet(nn.Module):
    """SCHP's AugmentCE2P network. ``forward`` returns the fusion logits (N, classes, H/4, W/4)."""

    def __init__(self, num_classes: int = 20, layers: Sequence[int] = RESNET101_LAYERS, width: int = 64):
        super().__init__()
        if width < 4 or width % 4:
            raise ConfigError(f"SCHP width must be a positive multiple of 4, got {width}")
        if len(layers) != 4 or min(layers) < 1:
            raise ConfigError(f"SCHP layers must be four positive block counts, got {tuple(layers)}")
        self.num_classes = int(num_classes)
        self.arch = {
            "num_classes": int(num_classes),
            "layers": tuple(int(n) for n in layers),
            "width": int(width),
        }
        w = width
        self.conv1 = nn.Conv2d(3, w, kernel_size=3, stride=2, padding=1, bias=False)
        self.bn1 = _bn(w)
        self.conv2 = nn.Conv2d(w, w, kernel_size=3, padding=1, bias=False)
        self.bn2 = _bn(w)
        self.conv3 = nn.Conv2d(w, 2 * w, kernel_size=3, padding=1, bias=False)
        self.bn3 = _bn(2 * w)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self._inplanes = 2 * w
        self.layer1 = self._make_layer(w, layers[0])
        self.layer2 = self._make_layer(2 * w, layers[1], stride=2)
        self.layer3 = self._make_layer(4 * w, layers[2], stride=2)
        self.layer4 = self._make_layer(8 * w, layers[3], stride=1, dilation=2)
        # head widths of the official model at w=64: context 512, mid 256, decoder skip 48
        self.context_encoding = PSPModule(32 * w, 8 * w)
        self.edge = EdgeModule((4 * w, 8 * w, 16 * w), 4 * w)
        self.decoder = DecoderModule(self.num_classes, context=8 * w, low=4 * w, mid=4 * w, skip=3 * w // 4)
        self.fushion = nn.Sequential(
            nn.Conv2d(16 * w, 4 * w, kernel_size=1, bias=False),
            ABN(4 * w),
            nn.Dropout2d(0.1),
            nn.Conv2d(4 * w, self.num_classes, kernel_size=1, bias=True),
        )

    def _make_layer(self, planes: int, blocks: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(
                    self._inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False
                ),
                _bn(planes * Bottleneck.expansion),
            )
        mods = [Bottleneck(self._inplanes, planes, stride, dilation, downsample)]
        self._inplanes = planes * Bottleneck.expansion
        mods += [Bottleneck(self._inplanes, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*mods)

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(parsing logits, fusion logits, edge logits), all at 1/4 of the input resolution."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = F.relu(self.bn3(self.conv3(x)))
        x = self.maxpool(x)
        x2 = self.layer1(x)
        x3 = self.layer2(x2)
        x4 = self.layer3(x3)
        x5 = self.layer4(x4)
        context = self.context_encoding(x5)
        parsing, parsing_fea = self.decoder(context, x2)
        edge, edge_fea = self.edge(x2, x3, x4)
        fusion = self.fushion(torch.cat([parsing_fea, edge_fea], 1))
        return parsing, fusion, edge

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_heads(x)[1]


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


def _strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix) :]: v for k, v in state.items()}
    return dict(state)


def _examples(keys: Sequence[str], n: int = 3) -> str:
    keys = sorted(keys)
    more = f", … ({len(keys)} in all)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def load_schp_state(net: SCHPNet, state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Load SCHP weights into ``net`` (strict), explaining any mismatch in a :class:`CheckpointError`."""
    state = {k: v for k, v in _strip_prefix(state).items() if not k.endswith("num_batches_tracked")}
    expected = net.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"{len(shapes)} shape mismatch(es) (checkpoint vs model): {_examples(shapes)}")
        if missing:
            parts.append(f"{len(missing)} missing key(s): {_examples(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s): {_examples(unexpected)}")
        arch = net.arch
        raise CheckpointError(
            f"{source} does not fit SCHP(num_classes={arch['num_classes']}, layers={arch['layers']}, "
            f"width={arch['width']}): " + "; ".join(parts)
        )
    net.load_state_dict(state, strict=True)


def save_schp_checkpoint(net: SCHPNet, path: str | os.PathLike, prefix: str = "module.") -> Path:
    """Write ``{"state_dict": {prefix + key: tensor}}`` the way SCHP's releases are laid out (atomic)."""
    from dlcr.io.atomic import atomic_write

    state = {prefix + k: v.detach().cpu() for k, v in net.state_dict().items()}
    with atomic_write(path, "wb") as fh:
        torch.save({"state_dict": state}, fh)
    return Path(path)


def infer_num_classes(state: Mapping[str, torch.Tensor]) -> int | None:
    """The class count of an SCHP state dict, read from its final classifier (``fushion.3``); None if absent."""
    state = _strip_prefix(state)
    for key in ("fushion.3.weight", "fushion.3.bias", "decoder.conv4.weight"):
        t = state.get(key)
        if isinstance(t, torch.Tensor) and t.ndim >= 1:
            return int(t.shape[0])
    return None
