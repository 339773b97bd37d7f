"""Re-id models behind one registry and one entry point (timm-style).

``create_model(name, num_pids, pretrained=…)`` builds any registered architecture; every model is a
:class:`ReIDModel` with the same interface (``forward`` → features, ``classify`` → logits,
``feat_dim``). ``pretrained`` is ``None`` (random init), ``"imagenet"`` (torchvision weights when they
can be had, otherwise random init with one warning) or a local weights file loaded strictly into the
backbone (safetensors, or a torch file read with ``weights_only=True``).

``backbone="timm:<name>"`` (config ``model.backbone``) puts a timm model under the architecture's
head in place of its ResNet (CAL, BoT, C2D, PCB, HPM; see :mod:`dlcr.models.timm_backbone`);
MGN and small_resnet build their own network and refuse it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from dlcr.models.backbones import (
    ResNetBackbone,
    SmallResNet,
    init_backbone,
    load_backbone_weights,
    read_state_dict,
    resnet50_backbone,
)
from dlcr.models.classifiers import ClothesClassifier, linear_classifier
from dlcr.models.hpm import HPMModel
from dlcr.models.mgn import MGNModel
from dlcr.models.parts import PartHead, PartModel
from dlcr.models.pcb import PCBModel
from dlcr.models.reid import GlobalPool, ReIDModel
from dlcr.models.timm_backbone import TimmBackbone, build_timm_backbone, parse_backbone, refuse_backbone
from dlcr.registry import Registry

__all__ = [
    "MODELS", "ClothesClassifier", "GlobalPool", "HPMModel", "MGNModel", "PCBModel", "PartHead", "PartModel",
    "ReIDModel", "ResNetBackbone", "SmallResNet", "TimmBackbone", "create_model", "init_backbone",
    "linear_classifier", "load_backbone_weights", "read_state_dict",
]

MODELS: Registry[Callable[..., ReIDModel]] = Registry("model")

Pretrained = str | os.PathLike | None


#: CAL's head: neck scale ~ N(1, 0.02), trainable zero-initialised neck shift, classifier with a bias.
CAL_HEAD: dict[str, Any] = {"neck_init_std": 0.02, "train_neck_bias": True, "classifier_bias": True}


def _resnet50_or_timm(backbone: str | None, pretrained: Pretrained, arch: str,
                      last_stride: int) -> ResNetBackbone | TimmBackbone:
    """The architecture's ResNet-50 (with ``pretrained`` applied), or the timm model ``backbone`` names."""
    name = parse_backbone(backbone, arch)
    if name is not None:
        return build_timm_backbone(name, pretrained, arch)
    net = resnet50_backbone(last_stride)
    init_backbone(net, pretrained, arch)
    return net


@MODELS.register("cal_resnet50")
def cal_resnet50(num_pids: int, *, pretrained: Pretrained = None, last_stride: int = 1,
                 backbone: str | None = None) -> ReIDModel:
    """CAL: ResNet-50 (last stride 1), [max ; avg] pooling → 4096-d, BN neck (trainable shift), linear
    classifier with a bias (Simple-CCReID ``models/img_resnet.py``, ``models/classifier.py``)."""
    net = _resnet50_or_timm(backbone, pretrained, "cal_resnet50", last_stride)
    return ReIDModel(net, num_pids, pooling="maxavg", arch="cal_resnet50", **CAL_HEAD)


@MODELS.register("c2d_resnet50")
def c2d_resnet50(num_pids: int, *, pretrained: Pretrained = None, last_stride: int = 1,
                 backbone: str | None = None) -> ReIDModel:
    """CAL's video model (Simple-CCReID ``models/vid_resnet.py`` C2DResNet50): every frame through a
    ResNet-50 (last stride 1), global max pooling → 2048-d, frames averaged, CAL's BN neck and classifier."""
    net = _resnet50_or_timm(backbone, pretrained, "c2d_resnet50", last_stride)
    return ReIDModel(net, num_pids, pooling="max", arch="c2d_resnet50", **CAL_HEAD)


@MODELS.register("bot_resnet50")
def bot_resnet50(num_pids: int, *, pretrained: Pretrained = None, last_stride: int = 1,
                 backbone: str | None = None) -> ReIDModel:
    """BoT baseline: ResNet-50 (last stride 1), average pooling → 2048-d, BN neck, linear classifier."""
    net = _resnet50_or_timm(backbone, pretrained, "bot_resnet50", last_stride)
    return ReIDModel(net, num_pids, pooling="avg", arch="bot_resnet50")


@MODELS.register("pcb_resnet50")
def pcb_resnet50(num_pids: int, *, pretrained: Pretrained = None, parts: int = 6, part_dim: int = 256,
                 last_stride: int = 1, backbone: str | None = None) -> PCBModel:
    """PCB: 6 horizontal stripes, per-part 256-d reduction and classifier (see :mod:`dlcr.models.pcb`)."""
    net = _resnet50_or_timm(backbone, pretrained, "pcb_resnet50", last_stride)
    return PCBModel(net, num_pids, parts=parts, part_dim=part_dim, arch="pcb_resnet50")


@MODELS.register("mgn_resnet50")
def mgn_resnet50(num_pids: int, *, pretrained: Pretrained = None, part_dim: int = 256,
                 backbone: str | None = None) -> MGNModel:
    """MGN: shared ResNet-50 trunk to layer3[0], a global and two part branches (2 and 3 stripes),
    8 reduced 256-d features → 2048-d (see :mod:`dlcr.models.mgn`)."""
    refuse_backbone(backbone, "mgn_resnet50", "MGN splits a ResNet's layer3 into three branches")
    net = resnet50_backbone(last_stride=2)  # the global branch's stride; the part branches get 1
    init_backbone(net, pretrained, "mgn_resnet50")
    return MGNModel(net, num_pids, part_dim=part_dim, arch="mgn_resnet50")


@MODELS.register("hpm_resnet50")
def hpm_resnet50(num_pids: int, *, pretrained: Pretrained = None, part_dim: int = 256, last_stride: int = 1,
                 backbone: str | None = None) -> HPMModel:
    """HPM: a 1/2/4/8-stripe pyramid (15 parts) of avg + max pooled, 256-d reduced stripes → 3840-d
    (see :mod:`dlcr.models.hpm`)."""
    net = _resnet50_or_timm(backbone, pretrained, "hpm_resnet50", last_stride)
    return HPMModel(net, num_pids, part_dim=part_dim, arch="hpm_resnet50")


@MODELS.register("small_resnet")
def small_resnet(num_pids: int, *, pretrained: Pretrained = None, widths: tuple[int, ...] = (32, 64, 128, 256),
                 layers: tuple[int, ...] = (1, 1, 1, 1), last_stride: int = 1,
                 pooling: str = "maxavg", backbone: str | None = None) -> ReIDModel:
    """A narrow ResNet with CAL's head ([max ; avg] pooling, BN neck, biased classifier) for CPU demos and tests."""
    refuse_backbone(backbone, "small_resnet", "it is its own narrow ResNet (use cal_resnet50 for CAL's head)")
    net = SmallResNet(tuple(widths), tuple(layers), last_stride)
    init_backbone(net, pretrained, "small_resnet")
    return ReIDModel(net, num_pids, pooling=pooling, arch="small_resnet", **CAL_HEAD)


def model_options(name: str, widths: Sequence[int] | None = None,
                  backbone: str | None = None) -> dict[str, Any]:
    """Keyword arguments of :func:`create_model` from the ``model`` settings beyond name and weights
    (``model.widths``: small_resnet's four stage widths, a one-line error on any other model;
    ``model.backbone``: e.g. ``"timm:resnet18"``, checked when the model is built)."""
    options: dict[str, Any] = {}
    if backbone is not None:
        options["backbone"] = backbone
    if widths is None:
        return options
    from dlcr.errors import ConfigError

    if name != "small_resnet":
        raise ConfigError(f"model.widths applies to small_resnet only, not to {name!r}")
    if len(widths) != 4:
        raise ConfigError(f"model.widths needs 4 stage widths, got {list(widths)}")
    options["widths"] = tuple(int(w) for w in widths)
    return options


def create_model(name: str, num_pids: int, *, pretrained: Pretrained = None, **kwargs: Any) -> ReIDModel:
    """Build a registered re-id model (unknown names raise with a did-you-mean hint)."""
    return MODELS.get(name)(num_pids, pretrained=pretrained, **kwargs)
