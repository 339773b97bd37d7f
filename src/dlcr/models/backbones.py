"""Convolutional backbones that map images to feature maps.

Both backbones keep torchvision's parameter names (``conv1``, ``bn1``, ``layer1`` … ``layer4``) so
that torchvision / ImageNet state dicts load into them directly (their ``fc.*`` keys are ignored).
Re-id models use a *last stride of 1* (the first block of ``layer4`` does not downsample): at
384×192 the final map is 24×12 instead of 12×6, which is what CAL, BoT and PCB use.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torchvision.models import resnet as tv_resnet

from dlcr.errors import CheckpointError, weights_only_error
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

#: ImageNet weights of torchvision's ResNet-50 (IMAGENET1K_V1, the ones CAL starts from).
RESNET50_IMAGENET_URL = "https://download.pytorch.org/models/resnet50-0676ba61.pth"

_WARNED: set[str] = set()
_IMAGENET_FAILED = False  # one failed download per process is enough


def set_last_stride_one(layer4: nn.Sequential) -> None:
    """Remove the stride-2 of layer4's first block (main path and shortcut)."""
    block = layer4[0]
    conv = block.conv2 if isinstance(block, tv_resnet.Bottleneck) else block.conv1
    conv.stride = (1, 1)
    if block.downsample is not None:
        block.downsample[0].stride = (1, 1)


class ResNetBackbone(nn.Module):
    """torchvision ResNet without its pooling and classifier head."""

    def __init__(self, net: tv_resnet.ResNet, out_channels: int, last_stride: int = 1):
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        if last_stride == 1:
            set_last_stride_one(self.layer4)
        elif last_stride != 2:
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def resnet50_backbone(last_stride: int = 1) -> ResNetBackbone:
    return ResNetBackbone(tv_resnet.resnet50(weights=None), 2048, last_stride)


class SmallResNet(nn.Module):
    """A narrow ResNet (BasicBlocks, widths 32/64/128/256) for CPU demos and tests.

    The stem is a stride-2 7×7 conv + max pool like ResNet's, so a 128×64 input gives an 8×4 final
    map with last stride 1 — the same 16× reduction as the re-id ResNet-50.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 256), layers: tuple[int, ...] = (1, 1, 1, 1),
                 last_stride: int = 1):
        super().__init__()
        if len(widths) != 4 or len(layers) != 4:
            raise ValueError("SmallResNet needs 4 widths and 4 layer counts")
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = widths[0]
        strides = (1, 2, 2, last_stride)
        stages = []
        for w, n, s in zip(widths, layers, strides, strict=True):
            stages.append(self._stage(inplanes, w, n, s))
            inplanes = w
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.out_channels = widths[-1]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(inplanes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or inplanes != planes:
            down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes))
        mods = [tv_resnet.BasicBlock(inplanes, planes, stride, down)]
        mods += [tv_resnet.BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


# ---------------------------------------------------------------------------------------------
# Loading weights into a backbone

_PREFIXES = ("module.", "model.", "backbone.", "base.", "encoder.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a weights file: safetensors, or a torch file loaded with ``weights_only=True``.

    A torch file holding ``{"state_dict": …}`` or ``{"model": …}`` (common training checkpoints,
    SCHP's releases) is unwrapped. Used for backbone weights and for SCHP parser checkpoints.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"weights file not found: {p}")
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(p)))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"cannot read {p}: {e}") from None
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors come in many types
        raise CheckpointError(f"cannot read {p} safely as a weights-only torch file: {weights_only_error(e)}") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{p} does not hold a flat state dict of tensors")
    return dict(obj)


def _strip_prefixes(sd: Mapping[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.``, ``model.backbone.`` …) until keys match ``expected``."""
    out = dict(sd)
    for _ in range(len(_PREFIXES) + 1):
        if any(k in expected for k in out):
            break
        for pre in _PREFIXES:
            if any(k.startswith(pre) for k in out):
                out = {k[len(pre):]: v for k, v in out.items() if k.startswith(pre)}
                break
        else:
            break
    return out


def load_backbone_weights(backbone: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strictly load ``state`` into ``backbone``: every backbone key must be present with its shape.

    Classifier heads of the source (``fc.*``) are dropped; any other extra or missing key, or a shape
    mismatch, is a one-line :class:`CheckpointError` naming the first offending key.
    """
    own = backbone.state_dict()
    sd = _strip_prefixes(state, set(own))
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    for k, v in own.items():
        if k not in sd:
            raise CheckpointError(f"{source}: missing backbone key {k!r}")
        if tuple(sd[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: shape mismatch for {k!r}: file {tuple(sd[k].shape)} "
                                  f"vs model {tuple(v.shape)}")
    extra = sorted(set(sd) - set(own))
    if extra:
        raise CheckpointError(f"{source}: unexpected key {extra[0]!r} ({len(extra)} unexpected keys)")
    backbone.load_state_dict(sd, strict=True)


def _warn_once(key: str, message: str, stacklevel: int = 5) -> None:
    """Warn once per ``key``; the default stack level points at the caller of ``create_model``."""
    if key not in _WARNED:
        _WARNED.add(key)
        warnings.warn(message, UserWarning, stacklevel=stacklevel)


def imagenet_resnet50_state() -> dict[str, torch.Tensor] | None:
    """torchvision's ImageNet ResNet-50 weights from the torch hub cache or a download; None if neither.

    The download attempt's own console line is swallowed so that the caller's single warning is the
    only message a user sees when offline.
    """
    global _IMAGENET_FAILED
    from torch.hub import get_dir, load_state_dict_from_url

    cached = Path(get_dir()) / "checkpoints" / Path(RESNET50_IMAGENET_URL).name
    try:
        if cached.is_file():
            return torch.load(cached, map_location="cpu", weights_only=True)
        if _IMAGENET_FAILED:
            return None
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            return load_state_dict_from_url(RESNET50_IMAGENET_URL, map_location="cpu", progress=False,
                                            weights_only=True)
    except Exception as e:  # network, DNS, truncated download …
        _IMAGENET_FAILED = True
        log.debug("ImageNet weights unavailable: %s", e)
        return None


def init_backbone(backbone: nn.Module, pretrained: str | os.PathLike | None, arch: str) -> None:
    """Apply ``pretrained`` to ``backbone``: None (random), ``"imagenet"``, or a local weights file."""
    if pretrained is None:
        return
    if str(pretrained).lower() == "imagenet":
        state = imagenet_resnet50_state() if isinstance(backbone, ResNetBackbone) else None
        if state is None:
            why = ("no ImageNet weights exist for this architecture" if not isinstance(backbone, ResNetBackbone)
                   else "they could not be loaded or downloaded")
            _warn_once(f"imagenet:{arch}", f"{arch}: ImageNet weights requested but {why}; "
                       "using random initialisation")
            return
        load_backbone_weights(backbone, state, "ImageNet weights")
        return
    load_backbone_weights(backbone, read_state_dict(pretrained), str(pretrained))
