"""SCHP (Self-Correction for Human Parsing, Li et al.) as a plain PyTorch module.

The network mirrors the module names of the official implementation (``networks/AugmentCE2P.py``
in GoGoDuck912/Self-Correction-Human-Parsing) so that the released checkpoints, e.g. the LIP model
``exp-schp-201908261155-lip.pth`` (a dict whose ``state_dict`` keys carry DataParallel's ``module.``
prefix), load with ``strict=True``:

* backbone: ResNet-101 with a three-conv stem (``conv1``/``bn1`` … ``conv3``/``bn3``, 64-64-128
  channels), ``layer1``..``layer4`` of bottlenecks, ``layer4`` at stride 1 with dilation 2;
* ``context_encoding``: a PSP module (pools 1, 2, 3, 6; 512 channels);
* ``edge``: edge branch over ``layer1``..``layer3``; ``decoder``: parsing branch over the context
  and ``layer1``; ``fushion`` (sic): fusion of the decoder and edge features. The fusion logits
  (1/4 of the input resolution) are the parsing output.

The original uses in-place activated batch norm (InPlaceABN). :class:`ABN` reproduces its inference
arithmetic with the same parameter names (``weight``, ``bias``, ``running_mean``, ``running_var``,
no ``num_batches_tracked``): the scale is ``|weight| + eps``, followed by a leaky ReLU (slope 0.01)
in the heads and by no activation in the backbone (whose blocks apply their own ReLU).

The three released models (LIP 20 classes at 473x473, ATR 18 at 512, Pascal-Person-Part 7 at 512,
:data:`SCHP_DATASETS`) are told apart by the class count of the checkpoint's classifier; their class
names are mapped to LIP ids by name (:func:`dlcr.generation.label_schemes.lip_table_for_labels`). The
Pascal model segments body parts only, so it is refused unless ``label_map`` makes some of its
classes clothes.

Pre-processing follows SCHP's ``simple_extractor``: the whole image is the person box, its longer
side is fitted to the ``input_size`` square (aspect ratio kept, the rest zero-padded) by a bilinear
affine warp whose result is an uint8 image (``cv2.warpAffine`` on the uint8 input: values rounded to
the nearest integer), channels are in BGR order and normalised with the BGR-ordered ImageNet
statistics. The logits are upsampled to the input square and warped back to the image with the
inverse affine map, then argmax-ed.

``width`` and ``layers`` shrink the network for tests; the defaults are the official ResNet-101.
The network and its checkpoint functions live in :mod:`dlcr.generation.parsers.schp_net` (and are
importable from here).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import numpy as np
import torch
import torch.nn.functional as F

from dlcr.distributed.env import resolve_device
from dlcr.errors import ConfigError
from dlcr.generation.label_schemes import lip_table_for_labels, require_clothes_classes
from dlcr.generation.parsers.schp_net import (
    ABN,
    RESNET101_LAYERS,
    Bottleneck,
    DecoderModule,
    EdgeModule,
    PSPModule,
    SCHPNet,
    _up,
    infer_num_classes,
    load_schp_state,
    save_schp_checkpoint,
)
from dlcr.generation.parsing import HumanParser
from dlcr.io.images import check_images
from dlcr.lip import ATR_LABELS, LIP_LABELS, PASCAL_LABELS
from dlcr.models.backbones import read_state_dict
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import batched
from dlcr.utils.torch_device import resolve_dtype

log = get_logger(__name__)

# SCHP's normalisation, applied to BGR images in [0, 1] (ImageNet statistics in BGR order)
BGR_MEAN = (0.406, 0.456, 0.485)
BGR_STD = (0.225, 0.224, 0.229)
DEFAULT_INPUT_SIZE = 473  # LIP model; SCHP's ATR and Pascal models use 512


# --------------------------------------------------------------------------------------------
# Geometry: SCHP's aspect-preserving affine warp, with torch's affine_grid / grid_sample
# --------------------------------------------------------------------------------------------


def _warp_scale(h: int, w: int, size: int) -> tuple[float, float]:
    """Scale (x, y) of the affine map from the ``size`` square to the image, in normalised coordinates.

    SCHP takes the box (0, 0, w-1, h-1), centre c = ((w-1)/2, (h-1)/2), and maps its longer side
    s = max(w, h) - 1 onto the size-1 pixel span of the square: square pixel j samples the image at
    x = (j - (size-1)/2) * s / (size-1) + c. In grid_sample's normalised coordinates (pixel-edge
    convention, align_corners=False, which stays exact for 1-pixel-wide images) that is a pure scale.
    """
    s = max(max(h, w) - 1, 1)
    k = size * s / max(size - 1, 1)
    return k / w, k / h


def _sample(src: torch.Tensor, sx: float, sy: float, out_h: int, out_w: int) -> torch.Tensor:
    theta = src.new_tensor([[[sx, 0.0, 0.0], [0.0, sy, 0.0]]])
    grid = F.affine_grid(theta, [1, src.shape[0], out_h, out_w], align_corners=False)
    return F.grid_sample(src[None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0]


def warp_to_input(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, h, w) image -> (C, size, size): longer side fitted, centred, zero-padded (bilinear)."""
    h, w = image.shape[-2:]
    sx, sy = _warp_scale(h, w, size)
    return _sample(image, sx, sy, size, size)


def warp_to_image(logits: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(C, S, S) input-square logits -> (C, h, w) on the image grid (inverse of :func:`warp_to_input`)."""
    sx, sy = _warp_scale(h, w, logits.shape[-1])
    return _sample(logits, 1.0 / sx, 1.0 / sy, h, w)


def _input_affine(h: int, w: int, size: int) -> np.ndarray:
    """SCHP's image -> input-square affine map (2 x 3, float64) for the whole-image box.

    Computed as the official code does: box centre and square scale in float32
    (``_box2cs([0, 0, w-1, h-1])``), three float32 point pairs (``get_affine_transform``), the
    exact affine map through them in float64 (``cv2.getAffineTransform``).
    """
    c = np.array([(w - 1) * 0.5, (h - 1) * 0.5], np.float32)
    s = np.float32(max(w - 1, h - 1))
    d = np.float32((size - 1) * 0.5)
    src = np.array([c, c + np.array([0, s * np.float32(-0.5)], np.float32)], np.float32)
    dst = np.array([[d, d], [d, 0]], np.float32)

    def third(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        v = a - b
        return b + np.array([-v[1], v[0]], np.float32)

    src = np.vstack([src, third(src[0], src[1])]).astype(np.float64)
    dst = np.vstack([dst, third(dst[0], dst[1])]).astype(np.float64)
    a = np.hstack([src, np.ones((3, 1))])
    return np.linalg.solve(a, dst).T


def warp_to_input_uint8(image: torch.Tensor, size: int) -> torch.Tensor:
    """(C, h, w) 0..255 image -> (C, size, size) uint8-valued float image, as ``cv2.warpAffine`` writes it.

    The bilinear warp of the official extractor (OpenCV >= 4.11 arithmetic): the inverse map is
    taken in float64 and applied in float32, each output pixel blends its four source neighbours
    (outside the image: black), and the result is rounded to the nearest integer (ties to even).
    It agrees with ``cv2.warpAffine`` to the grey level on all but ~1e-4 of the values (float
    ties that OpenCV's vector code rounds the other way).
    """
    h, w = image.shape[-2:]
    m = np.vstack([_input_affine(h, w, size), [0.0, 0.0, 1.0]])
    inv = np.linalg.inv(m)[:2].astype(np.float32)
    dev = image.device
    grid = torch.arange(size, dtype=torch.float32, device=dev)
    # the map has no rotation: x depends on the output column only, y on the output row only
    sx = grid * float(inv[0, 0]) + float(inv[0, 2])
    sy = grid * float(inv[1, 1]) + float(inv[1, 2])
    src = F.pad(image.float(), (1, 1, 1, 1))  # a black border: taps outside the image read 0

    def taps(coord: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c0 = torch.floor(coord)
        frac = coord - c0
        i0 = (c0.long() + 1).clamp(0, n + 1)  # +1: the padded border
        i1 = (c0.long() + 2).clamp(0, n + 1)
        return i0, i1, frac

    x0, x1, a = taps(sx, w)
    y0, y1, b = taps(sy, h)
    # a source column/row index clamped onto the border reads 0 there, as OpenCV's constant border
    rows0, rows1 = src[:, y0, :], src[:, y1, :]
    top = rows0[:, :, x0] * (1 - a) + rows0[:, :, x1] * a
    bottom = rows1[:, :, x0] * (1 - a) + rows1[:, :, x1] * a
    out = top * (1 - b)[:, None] + bottom * b[:, None]
    return out.round_().clamp_(0.0, 255.0)


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SCHPDataset:
    """One of SCHP's released models: its dataset, class names and network input size."""

    name: str
    labels: tuple[str, ...]
    input_size: int
    checkpoint: str  # the released file's name


#: SCHP's released models by class count (``dataset_settings`` of the official ``simple_extractor.py``).
SCHP_DATASETS: Mapping[int, SCHPDataset] = MappingProxyType({
    20: SCHPDataset("lip", LIP_LABELS, 473, "exp-schp-201908261155-lip.pth"),
    18: SCHPDataset("atr", ATR_LABELS, 512, "exp-schp-201908301523-atr.pth"),
    7: SCHPDataset("pascal", PASCAL_LABELS, 512, "exp-schp-201908270938-pascal-person-part.pth"),
})  # fmt: skip


class SCHPParser(HumanParser):
    """Human parsing with an SCHP network; its classes are mapped to LIP ids by name.

    The class names come from the class count (SCHP's LIP, ATR and Pascal-Person-Part models, see
    :data:`SCHP_DATASETS`) unless ``labels`` names them; ``label_map`` ({class name: LIP id},
    ``generate.parser_label_map``) overrides the name mapping. ``input_size`` defaults to the size
    the model was trained at (LIP 473, ATR and Pascal 512). A model none of whose classes maps to a
    clothes label (SCHP's Pascal model: body parts only) is refused with a :class:`ConfigError`.

    Pre-processing is that of the official extractor: the warped image is an uint8 image (rounded
    to the nearest integer, as ``cv2.warpAffine`` writes it) before ``ToTensor`` / ``Normalize``.
    """

    name = "schp"
    #: 2: the warped input is rounded to uint8 like the official extractor's (1: kept in float).
    output_version = 2

    def __init__(
        self,
        net: SCHPNet,
        *,
        input_size: int | None = None,
        labels: Sequence[str] | None = None,
        label_map: Mapping[str, int] | None = None,
        batch_size: int = 8,
        device: str | None = None,
        source: str = "",
        dtype: str | None = None,
    ):
        n = int(net.num_classes)
        dataset = SCHP_DATASETS.get(n)
        if labels is None:
            if dataset is None:
                raise ConfigError(
                    f"an SCHP model with {n} classes is none of SCHP's released models "
                    f"({', '.join(f'{d.name} {k}' for k, d in SCHP_DATASETS.items())}); "
                    "name its classes with labels=[...]"
                )
            labels = dataset.labels
        labels = tuple(str(x) for x in labels)
        if len(labels) != n:
            raise ConfigError(f"labels names {len(labels)} classes, the SCHP model has {n}")
        if input_size is None:
            input_size = dataset.input_size if dataset is not None else DEFAULT_INPUT_SIZE
        if int(input_size) < 8:
            raise ConfigError(f"input_size must be at least 8 pixels, got {input_size}")
        self.input_size = int(input_size)
        self.batch_size = int(batch_size)
        self.source = source
        self.labels = labels
        self.dataset = dataset.name if dataset is not None and labels == dataset.labels else None
        id2label = dict(enumerate(labels))
        self.table, self.unmapped = lip_table_for_labels(id2label, label_map)
        hint = ""
        if self.dataset == "pascal":
            hint = (
                "It is SCHP's Pascal-Person-Part model, which segments body parts only and has no clothes "
                f"classes: use SCHP's LIP ({SCHP_DATASETS[20].checkpoint}) or ATR "
                f"({SCHP_DATASETS[18].checkpoint}) checkpoint."
            )
        require_clothes_classes(self.table, id2label, self.description, hint)
        if self.unmapped:
            log.warning(
                "%s: classes with no LIP counterpart are read as background: %s "
                "(map them with generate.parser_label_map={name: lip_id})",
                self.description,
                ", ".join(self.unmapped),
            )
        self.device = torch.device(resolve_device(device))
        # dtype: the network's precision on CUDA ("float16" / "bfloat16": batched half-precision
        # inference, with the input warp, normalisation and the upsampled logits' argmax kept in
        # float32); None / "float32" is full precision, the default, and the only one on the CPU
        self.dtype = torch.float32
        if dtype not in (None, "auto") and self.device.type == "cuda":
            self.dtype = resolve_dtype(dtype, str(self.device))
        self.net = net.to(self.device).eval()
        if self.dtype != torch.float32:
            self.net.to(dtype=self.dtype, memory_format=torch.channels_last)
        self._to_lip = torch.as_tensor(self.table, dtype=torch.uint8)
        self._mean = torch.tensor(BGR_MEAN, device=self.device).view(3, 1, 1)
        self._std = torch.tensor(BGR_STD, device=self.device).view(3, 1, 1)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        num_classes: int | None = None,
        *,
        input_size: int | None = None,
        labels: Sequence[str] | None = None,
        label_map: Mapping[str, int] | None = None,
        batch_size: int = 8,
        device: str | None = None,
        layers: Sequence[int] = RESNET101_LAYERS,
        width: int = 64,
        dtype: str | None = None,
    ) -> SCHPParser:
        """Load an SCHP checkpoint (the official LIP, ATR or Pascal-Person-Part release, or a re-trained one).

        ``num_classes`` (default: read from the checkpoint's classifier) must match the checkpoint.
        """
        state = read_state_dict(path)
        if num_classes is None:  # no classifier: not SCHP; the strict load below says what differs
            num_classes = infer_num_classes(state) or 20
        with torch.device("meta"):
            net = SCHPNet(num_classes=num_classes, layers=layers, width=width)
        net.to_empty(device="cpu")
        load_schp_state(net, state, source=f"checkpoint {path}")
        return cls(
            net.float(),
            input_size=input_size,
            labels=labels,
            label_map=label_map,
            batch_size=batch_size,
            device=device,
            source=str(path),
            dtype=dtype,
        )

    @property
    def description(self) -> str:
        return f"schp:{Path(self.source).name}" if self.source else "schp"

    def mapping(self) -> dict[str, str]:
        """Model class name -> LIP class name, as used by this parser."""
        return {name: LIP_LABELS[int(self.table[i])] for i, name in enumerate(self.labels)}

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """RGB uint8 (h, w, 3) -> normalised BGR (3, S, S) network input.

        As the official extractor: bilinear affine warp into an uint8 image (round to nearest,
        ties to even as OpenCV's saturating cast), then scale to [0, 1] and normalise.
        """
        x = torch.from_numpy(np.require(image, requirements=["C", "W"])).to(self.device)
        x = x.permute(2, 0, 1).flip(0)  # RGB -> BGR, 0..255
        x = warp_to_input_uint8(x, self.input_size).div_(255.0)
        return (x - self._mean) / self._std

    @torch.inference_mode()
    def parse(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        images = check_images(images)
        out: list[np.ndarray] = []
        size = (self.input_size, self.input_size)
        for chunk in batched(images, self.batch_size):
            x = torch.stack([self.preprocess(img) for img in chunk])
            if self.dtype != torch.float32:
                x = x.to(dtype=self.dtype, memory_format=torch.channels_last)
            logits = _up(self.net(x).float(), size)  # as SCHP: fusion logits upsampled to the input square
            for img, lg in zip(chunk, logits, strict=True):
                h, w = img.shape[:2]
                labels = warp_to_image(lg, h, w).argmax(0).to("cpu")
                out.append(self._to_lip[labels].numpy())
        return out


__all__ = [
    "ABN",
    "BGR_MEAN",
    "BGR_STD",
    "DEFAULT_INPUT_SIZE",
    "RESNET101_LAYERS",
    "SCHP_DATASETS",
    "Bottleneck",
    "DecoderModule",
    "EdgeModule",
    "PSPModule",
    "SCHPDataset",
    "SCHPNet",
    "SCHPParser",
    "infer_num_classes",
    "load_schp_state",
    "read_state_dict",
    "save_schp_checkpoint",
    "warp_to_image",
    "warp_to_input",
    "warp_to_input_uint8",
]
