"""SCHP checkpoints as the official repository releases them, tiny and random.

GoGoDuck912/Self-Correction-Human-Parsing releases three models, one per dataset
(``simple_extractor.py``'s ``dataset_settings``)::

    exp-schp-201908261155-lip.pth                  LIP                20 classes, input 473 x 473
    exp-schp-201908301523-atr.pth                  ATR                18 classes, input 512 x 512
    exp-schp-201908270938-pascal-person-part.pth   Pascal-Person-Part  7 classes, input 512 x 512

Each file is a ``torch.save`` of ``{"state_dict": …}`` (``train.py`` also stores ``cycle_n`` next
to it) whose keys carry ``nn.DataParallel``'s ``module.`` prefix. The network is ``ResNet`` of
``networks/AugmentCE2P.py``; every batch norm there is an ``InPlaceABNSync`` (the backbone's with
``activation='none'``), which holds ``weight``, ``bias``, ``running_mean`` and ``running_var`` and
no ``num_batches_tracked``. The parameter layout, walked here from that definition:

* stem ``conv1`` 3->64 (3x3, stride 2), ``conv2`` 64->64, ``conv3`` 64->128, each with ``bn1..3``;
* ``layer1..4``: ResNet-101 bottlenecks (3, 4, 23, 3 blocks; planes 64, 128, 256, 512; expansion
  4), block 0 of each with ``downsample.0`` (1x1 conv) + ``downsample.1`` (norm);
* ``context_encoding``: PSP over 2048 channels, ``stages.{0..3}.1`` 1x1 conv to 512 +
  ``stages.{i}.2`` norm, ``bottleneck.0`` 3x3 conv 4096->512 + ``bottleneck.1``;
* ``edge``: ``conv1/2/3`` (``.0`` 1x1 conv from 256 / 512 / 1024 to 256, ``.1`` norm), ``conv4``
  3x3 256->2 with bias, ``conv5`` 1x1 6->2 with bias;
* ``decoder``: ``conv1`` 512->256, ``conv2`` 256->48, ``conv3`` (``.0`` 304->256, ``.1``, ``.2``
  256->256, ``.3``), ``conv4`` 256->classes with bias;
* ``fushion`` (sic): ``.0`` 1x1 1024->256, ``.1`` norm, ``.2`` dropout, ``.3`` 256->classes with
  bias.

``width`` scales every channel count by ``width / 64`` (64 gives the official sizes above) and
``layers`` sets the blocks per stage, so that the tests run in milliseconds.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

#: The released files' names, by dataset.
RELEASED = {
    "lip": "exp-schp-201908261155-lip.pth",
    "atr": "exp-schp-201908301523-atr.pth",
    "pascal": "exp-schp-201908270938-pascal-person-part.pth",
}
#: Class count and input size of each released model.
DATASETS = {"lip": (20, 473), "atr": (18, 512), "pascal": (7, 512)}
OFFICIAL_LAYERS = (3, 4, 23, 3)
TINY_LAYERS = (1, 1, 1, 1)
TINY_WIDTH = 8


def key_shapes(
    num_classes: int, layers: Sequence[int] = OFFICIAL_LAYERS, width: int = 64
) -> OrderedDict[str, tuple[tuple[int, ...], str]]:
    """Every state-dict key of AugmentCE2P's ResNet with its shape and kind (conv / norm / bias)."""
    out: OrderedDict[str, tuple[tuple[int, ...], str]] = OrderedDict()

    def ch(n: int) -> int:  # an official channel count at this width
        return n * width // 64

    def conv(name: str, cout: int, cin: int, k: int, bias: bool = False) -> None:
        out[f"{name}.weight"] = ((cout, cin, k, k), "conv")
        if bias:
            out[f"{name}.bias"] = ((cout,), "bias")

    def norm(name: str, c: int) -> None:
        out[f"{name}.weight"] = ((c,), "norm_weight")
        out[f"{name}.bias"] = ((c,), "bias")
        out[f"{name}.running_mean"] = ((c,), "running_mean")
        out[f"{name}.running_var"] = ((c,), "running_var")

    conv("conv1", ch(64), 3, 3)
    norm("bn1", ch(64))
    conv("conv2", ch(64), ch(64), 3)
    norm("bn2", ch(64))
    conv("conv3", ch(128), ch(64), 3)
    norm("bn3", ch(128))
    inplanes = ch(128)
    for li, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
        p = ch(planes)
        for b in range(blocks):
            pre = f"layer{li}.{b}"
            conv(f"{pre}.conv1", p, inplanes, 1)
            norm(f"{pre}.bn1", p)
            conv(f"{pre}.conv2", p, p, 3)
            norm(f"{pre}.bn2", p)
            conv(f"{pre}.conv3", 4 * p, p, 1)
            norm(f"{pre}.bn3", 4 * p)
            if b == 0:  # stride 2 or a channel change in every stage's first block
                conv(f"{pre}.downsample.0", 4 * p, inplanes, 1)
                norm(f"{pre}.downsample.1", 4 * p)
            inplanes = 4 * p
    for i in range(4):  # PSP pools 1, 2, 3, 6
        conv(f"context_encoding.stages.{i}.1", ch(512), ch(2048), 1)
        norm(f"context_encoding.stages.{i}.2", ch(512))
    conv("context_encoding.bottleneck.0", ch(512), ch(2048) + 4 * ch(512), 3)
    norm("context_encoding.bottleneck.1", ch(512))
    for i, cin in enumerate((256, 512, 1024), start=1):
        conv(f"edge.conv{i}.0", ch(256), ch(cin), 1)
        norm(f"edge.conv{i}.1", ch(256))
    conv("edge.conv4", 2, ch(256), 3, bias=True)
    conv("edge.conv5", 2, 6, 1, bias=True)
    conv("decoder.conv1.0", ch(256), ch(512), 1)
    norm("decoder.conv1.1", ch(256))
    conv("decoder.conv2.0", ch(48), ch(256), 1)
    norm("decoder.conv2.1", ch(48))
    conv("decoder.conv3.0", ch(256), ch(256) + ch(48), 1)
    norm("decoder.conv3.1", ch(256))
    conv("decoder.conv3.2", ch(256), ch(256), 1)
    norm("decoder.conv3.3", ch(256))
    conv("decoder.conv4", num_classes, ch(256), 1, bias=True)
    conv("fushion.0", ch(256), ch(1024), 1)
    norm("fushion.1", ch(256))
    conv("fushion.3", num_classes, ch(256), 1, bias=True)
    return out


def state_dict(
    num_classes: int,
    *,
    layers: Sequence[int] = TINY_LAYERS,
    width: int = TINY_WIDTH,
    seed: int = 0,
    winner: int | None = None,
) -> OrderedDict:
    """Random weights in the official layout (no ``module.`` prefix yet).

    Convolutions get He-normal weights, norms a scale of either sign (InPlaceABN uses its absolute
    value) and non-trivial running statistics. ``winner``: the final classifier says that class
    everywhere (zero weights, one positive bias).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    sd: OrderedDict = OrderedDict()
    for key, (shape, kind) in key_shapes(num_classes, layers, width).items():
        if kind == "conv":
            fan_in = shape[1] * shape[2] * shape[3]
            t = torch.randn(shape, generator=g) * (2.0 / fan_in) ** 0.5
        elif kind == "norm_weight":
            sign = torch.where(torch.rand(shape, generator=g) < 0.2, -1.0, 1.0)
            t = sign * (0.5 + torch.rand(shape, generator=g))
        elif kind in ("bias", "running_mean"):
            t = torch.randn(shape, generator=g) * 0.1
        else:  # running_var
            t = 0.5 + 1.5 * torch.rand(shape, generator=g)
        sd[key] = t.float()
    if winner is not None:
        sd["fushion.3.weight"].zero_()
        sd["fushion.3.bias"].zero_()
        sd["fushion.3.bias"][winner] = 5.0
    return sd


def write_checkpoint(
    path: str | Path,
    dataset: str = "lip",
    *,
    num_classes: int | None = None,
    layers: Sequence[int] = TINY_LAYERS,
    width: int = TINY_WIDTH,
    seed: int = 0,
    legacy: bool = False,
    winner: int | None = None,
) -> Path:
    """Write a checkpoint as released: ``torch.save({"state_dict": {"module." + key: …}, "cycle_n": …})``.

    ``legacy`` writes the pre-1.6 (non-zip) ``torch.save`` format the 2019 files were saved in;
    otherwise the zip format. ``path`` may be a folder: the released file name is used.
    """
    import torch

    n = num_classes if num_classes is not None else DATASETS[dataset][0]
    p = Path(path)
    if p.is_dir():
        p = p / RELEASED[dataset]
    sd = state_dict(n, layers=layers, width=width, seed=seed, winner=winner)
    payload = {"state_dict": OrderedDict(("module." + k, v) for k, v in sd.items()), "cycle_n": 3}
    p.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, p, _use_new_zipfile_serialization=not legacy)
    return p
