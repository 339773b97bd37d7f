"""Any transformers semantic-segmentation checkpoint as a human parser.

The model's classes (``config.id2label``) are mapped to LIP ids by name: LIP, ATR, CIHP and
Fashionpedia class names and common garment words, case-, space- and punctuation-insensitively, a
name listing several items (``"shirt, blouse"``) by its first known item (see
:func:`dlcr.generation.label_schemes.lip_id_for_name`). ``label_map`` ({class name: LIP id},
``generate.parser_label_map``) overrides or completes that mapping. Classes that match nothing
become background and are listed in a warning; a model none of whose classes maps to a clothes label
is refused (:class:`~dlcr.errors.ConfigError` naming its labels). Remote code is never trusted
unless asked for.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from dlcr.distributed.env import resolve_device
from dlcr.errors import CheckpointError, ConfigError, first_line
from dlcr.generation.label_schemes import lip_table_for_labels, require_clothes_classes
from dlcr.generation.parsing import HumanParser
from dlcr.io.images import check_images
from dlcr.io.paths import local_model_missing
from dlcr.lip import LIP_LABELS
from dlcr.utils.logging import get_logger
from dlcr.utils.progress import batched

log = get_logger(__name__)


class HFSegmentationParser(HumanParser):
    """Human parsing with ``AutoModelForSemanticSegmentation`` (SegFormer, UperNet, DPT, BEiT …).

    ``model`` is a hub id or a local folder written by ``save_pretrained`` (model and image
    processor). Logits are upsampled (bilinear) to each image's size before the argmax.
    """

    name = "hf"

    def __init__(
        self,
        model: str | os.PathLike,
        label_map: Mapping[str, int] | None = None,
        *,
        trust_remote_code: bool = False,
        batch_size: int = 8,
        device: str | None = None,
        revision: str | None = None,
        local_files_only: bool = False,
    ):
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation
        except ImportError:
            raise ConfigError("the 'hf' parser needs transformers: pip install 'dlcr[gen]'") from None

        self.model_name = str(model)
        if local_model_missing(self.model_name):
            raise CheckpointError(f"segmentation model folder not found: {self.model_name}")
        kw = {
            "trust_remote_code": bool(trust_remote_code),
            "revision": revision,
            "local_files_only": bool(local_files_only),
        }
        try:
            self.processor = AutoImageProcessor.from_pretrained(self.model_name, **kw)
            self.net = AutoModelForSemanticSegmentation.from_pretrained(self.model_name, **kw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"cannot load segmentation model {self.model_name!r}: {first_line(e)}"
            ) from None
        self.batch_size = int(batch_size)
        self.device = torch.device(resolve_device(device))
        self.net.to(self.device).eval()

        id2label = dict(getattr(self.net.config, "id2label", None) or {})
        if not id2label:
            raise CheckpointError(f"model {self.model_name!r} has no id2label in its config")
        self.table, self.unmapped = lip_table_for_labels(id2label, label_map)
        n_out = int(getattr(self.net.config, "num_labels", 0) or 0)
        if n_out > self.table.size:  # classes without a name: background
            self.table = np.concatenate([self.table, np.zeros(n_out - self.table.size, np.uint8)])
        self.id2label = {int(k): str(v) for k, v in id2label.items()}
        require_clothes_classes(self.table, self.id2label, repr(self.model_name))
        if self.unmapped:
            log.warning(
                "model %s: classes with no LIP counterpart are read as background: %s "
                "(map them with generate.parser_label_map={name: lip_id})",
                self.model_name,
                ", ".join(self.unmapped),
            )
        self._lut = torch.as_tensor(self.table, dtype=torch.uint8, device=self.device)

    @property
    def description(self) -> str:
        return f"hf:{self.model_name}"

    def mapping(self) -> dict[str, str]:
        """Model class name -> LIP class name, as used by this parser."""
        return {self.id2label[i]: LIP_LABELS[int(self.table[i])] for i in sorted(self.id2label)}

    def parse(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        import torch
        import torch.nn.functional as F
        from PIL import Image

        images = check_images(images)
        out: list[np.ndarray] = []
        for chunk in batched(images, self.batch_size):
            inputs = self.processor(images=[Image.fromarray(a) for a in chunk], return_tensors="pt")
            pixel_values = inputs["pixel_values"].to(self.device, dtype=next(self.net.parameters()).dtype)
            with torch.inference_mode():
                logits = self.net(pixel_values=pixel_values).logits
                for img, lg in zip(chunk, logits, strict=True):
                    h, w = img.shape[:2]
                    up = F.interpolate(lg[None].float(), size=(h, w), mode="bilinear", align_corners=False)
                    out.append(self._lut[up[0].argmax(0)].cpu().numpy())
        return out
