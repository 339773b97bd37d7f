"""Human-parser backends and their registry: ``schp``, ``hf``, ``folder``, ``synthcc``, ``pose``.

The interface they implement (:class:`~dlcr.generation.parsing.HumanParser`) and the masks
stage's driver are :mod:`dlcr.generation.parsing`; the LIP label scheme is :mod:`dlcr.lip`. This
package registers the backends in :data:`PARSERS` and builds them by name (:func:`create_parser`):
``schp`` (SCHP ResNet-101, torch), ``hf`` (``hf_segmentation``, transformers), ``folder`` and
``synthcc`` (precomputed label maps) and ``pose`` (mediapipe). A backend module is imported only
when the backend is created (or its class is looked up here), so importing this package imports
nothing heavy.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from dlcr.generation.parsing import HumanParser
from dlcr.registry import Registry, lazy_attributes

PARSERS: Registry = Registry("parser")


@PARSERS.register("schp")
def _create_schp(
    checkpoint: str | os.PathLike,
    num_classes: int | None = None,
    input_size: int | None = None,
    label_map: Mapping[str, int] | None = None,
    labels: Sequence[str] | None = None,
    batch_size: int = 8,
    device: str | None = None,
) -> HumanParser:
    """SCHP; ``num_classes`` is read from the checkpoint and ``input_size`` follows its dataset when unset."""
    from dlcr.generation.parsers.schp import SCHPParser

    return SCHPParser.from_checkpoint(
        checkpoint,
        num_classes=num_classes,
        input_size=input_size,
        labels=labels,
        label_map=label_map,
        batch_size=batch_size,
        device=device,
    )


PARSERS.register_lazy("hf", "dlcr.generation.parsers.hf_segmentation:HFSegmentationParser")


@PARSERS.register("folder")
def _create_folder(labels_dir: str | os.PathLike, label_set: str = "lip") -> HumanParser:
    from dlcr.generation.parsers.folder import FolderParser

    return FolderParser(labels_dir, label_set=label_set)


@PARSERS.register("synthcc")
def _create_synthcc() -> HumanParser:
    from dlcr.generation.parsers.folder import SynthCCParser

    return SynthCCParser()


@PARSERS.register("pose")
def _create_pose(
    min_detection_confidence: float = 0.5,
    min_visibility: float = 0.5,
    mask_threshold: float = 0.5,
    batch_size: int = 16,
) -> HumanParser:
    from dlcr.generation.parsers.pose import PoseParser

    return PoseParser(
        min_detection_confidence=min_detection_confidence,
        min_visibility=min_visibility,
        mask_threshold=mask_threshold,
        batch_size=batch_size,
    )


def create_parser(name: str, **kwargs: Any) -> HumanParser:
    """Create a parser backend by name (``schp``, ``hf``, ``folder``, ``synthcc``, ``pose``).

    Unknown names and unknown options raise a :class:`DlcrError` that lists what is accepted.
    """
    return PARSERS.create(name, **kwargs)


# lazy access to the backend classes (torch-free import)
__getattr__ = lazy_attributes(__name__, {
    "SCHPParser": "dlcr.generation.parsers.schp",
    "SCHPNet": "dlcr.generation.parsers.schp",
    "HFSegmentationParser": "dlcr.generation.parsers.hf_segmentation",
    "FolderParser": "dlcr.generation.parsers.folder",
    "SynthCCParser": "dlcr.generation.parsers.folder",
    "PoseParser": "dlcr.generation.parsers.pose",
})

__all__ = ["PARSERS", "create_parser"]
