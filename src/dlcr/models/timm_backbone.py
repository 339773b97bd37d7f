"""Any timm model as a re-id backbone (``model.backbone: timm:<name>``).

``build_timm_backbone("resnet18", pretrained, arch)`` builds ``timm.create_model(name, pretrained=False,
num_classes=0, global_pool="")`` and wraps it as a backbone that returns the last stage's feature map
``(B, C, H, W)`` with ``out_channels = C``, so that the global heads (CAL, BoT, C2D) and the part
heads (PCB, HPM) sit on it as they sit on the ResNet-50. The map is read with timm's
``forward_intermediates`` (NCHW for convolutional nets and for transformers alike: a ViT's patch
tokens come back as a grid); models without it use ``forward_features``, which must give NCHW.

The timm model keeps its own strides: the re-id "last stride 1" is not applied, so most nets give a
map half as tall and wide as the ResNet-50's (e.g. 12×6 instead of 24×12 at 384×192). Models with a
fixed input size (some ViTs, MaxViT windows) need ``data.height``/``data.width`` to fit them.

Weights: ``"imagenet"`` loads timm's pretrained weights only when they are already on this machine
(the Hugging Face cache, or the torch hub cache for URL-hosted ones); nothing is downloaded, and when
they are absent the model starts from random weights with one warning. A local file is loaded
strictly into the timm model (its own classifier keys are dropped). Both go through
:func:`dlcr.models.backbones.read_state_dict` (safetensors, or ``weights_only=True``).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dlcr.errors import ConfigError
from dlcr.models.backbones import _warn_once, load_backbone_weights, read_state_dict

#: the prefix of ``model.backbone`` values that name a timm model
PREFIX = "timm:"


def parse_backbone(spec: str | None, arch: str) -> str | None:
    """The timm model name of a ``model.backbone`` value, or None for the architecture's own backbone."""
    if spec is None or spec == "":
        return None
    if not isinstance(spec, str) or not spec.startswith(PREFIX) or not spec[len(PREFIX):].strip():
        raise ConfigError(f"model.backbone must be timm:<name> (e.g. timm:resnet50), got {spec!r}")
    return spec[len(PREFIX):].strip()


def refuse_backbone(spec: str | None, arch: str, why: str) -> None:
    """One-line error when ``model.backbone`` is set for an architecture that builds its own network."""
    if spec is not None and spec != "":
        raise ConfigError(f"model.backbone={spec!r} does not apply to {arch}: {why}")


def _import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise ConfigError("model.backbone=timm:<name> needs the timm package: "
                          "pip install 'dlcr[timm]' (or pip install 'timm>=1.0')") from None
    return timm


def _check_name(timm: Any, name: str) -> None:
    if timm.is_model(name):
        return
    close = difflib.get_close_matches(name.split(".")[0], timm.list_models(), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else \
        "; timm.list_models('<pattern>*') lists the names"
    raise ConfigError(f"unknown timm model {name!r}{hint}")


class TimmBackbone(nn.Module):
    """A timm model (no classifier, no pooling) returning its last stage's map ``(B, out_channels, H, W)``."""

    def __init__(self, net: nn.Module, name: str):
        super().__init__()
        self.net = net
        self.name = name
        self.intermediates = hasattr(net, "forward_intermediates")
        info = getattr(net, "feature_info", None)
        if self.intermediates and info:
            self.out_channels = int(info[-1]["num_chs"])
        else:
            self.out_channels = int(net.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.intermediates:
            fmap = self.net.forward_intermediates(x, indices=1, intermediates_only=True)[-1]
        else:
            fmap = self.net.forward_features(x)
        if fmap.dim() != 4 or fmap.shape[1] != self.out_channels:
            raise ValueError(f"timm model {self.name!r} gives features of shape {tuple(fmap.shape)}, "
                             f"not a (B, {self.out_channels}, H, W) map")
        return fmap

    def extra_repr(self) -> str:
        return f"name={self.name!r}, out_channels={self.out_channels}"


def cached_weights(cfg: dict[str, Any]) -> Path | None:
    """The file of a timm pretrained config that is already on this machine (no download), or None."""
    hub_id = cfg.get("hf_hub_id")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        names = [cfg["hf_hub_filename"]] if cfg.get("hf_hub_filename") else ["model.safetensors", "pytorch_model.bin"]
        for fn in names:
            hit = try_to_load_from_cache(hub_id, fn)
            if isinstance(hit, str) and Path(hit).is_file():
                return Path(hit)
    url = cfg.get("url")
    if url:
        from torch.hub import get_dir

        p = Path(get_dir()) / "checkpoints" / Path(url).name
        if p.is_file():
            return p
    return None


def _drop_classifier(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Remove the timm model's classifier keys (``pretrained_cfg['classifier']``, e.g. ``fc`` or ``head``)."""
    heads = getattr(net, "pretrained_cfg", {}).get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    own = set(net.state_dict())
    return {k: v for k, v in state.items()
            if k in own or not any(k == h or k.startswith(h + ".") for h in heads)}


def build_timm_backbone(name: str, pretrained: str | os.PathLike | None, arch: str) -> TimmBackbone:
    """Build timm model ``name`` as a backbone and apply ``pretrained`` (None, ``"imagenet"``, or a file)."""
    timm = _import_timm()
    _check_name(timm, name)
    try:
        net = timm.create_model(name, pretrained=False, num_classes=0, global_pool="")
    except (RuntimeError, ValueError, TypeError, KeyError) as e:
        raise ConfigError(f"timm cannot build {name!r} as a backbone: {e}") from None
    if pretrained is not None and str(pretrained).lower() == "imagenet":
        path = cached_weights(dict(getattr(net, "pretrained_cfg", {}) or {}))
        if path is None or path.suffix not in (".safetensors", ".bin", ".pth", ".pt"):
            _warn_once(f"imagenet:{arch}:timm:{name}", f"{arch} (timm:{name}): pretrained weights requested but "
                       "they are not in the local cache (nothing is downloaded); using random initialisation",
                       stacklevel=6)  # the caller of create_model
        else:
            state = read_state_dict(path)
            # timm's own loader applies the model's checkpoint filter and drops its classifier
            net = timm.create_model(name, pretrained=True, num_classes=0, global_pool="",
                                    pretrained_cfg_overlay={"state_dict": state})
    elif pretrained is not None:
        load_backbone_weights(net, _drop_classifier(read_state_dict(pretrained), net), str(pretrained))
    return TimmBackbone(net, name)
