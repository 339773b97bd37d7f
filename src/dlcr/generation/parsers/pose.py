"""``pose``: a LIP-compatible human parser built from mediapipe's bundled pose and segmentation models.

mediapipe 0.10.21 ships, inside its wheel, a pose-landmark model (33 body landmarks, the legacy
``solutions.pose`` API with ``model_complexity=1``) that also predicts a person mask, and a
selfie-segmentation model. Nothing is downloaded, so this backend parses real photographs on a machine
without model weights. It is not a clothes segmenter: garments are *inferred* from body geometry.

How a label map is made (one image at a time; measured ~35 ms for a 128x64 crop and ~0.1-0.2 s for a
512x512 photo on one CPU core):

1. **Person mask**: the pose model's segmentation output, thresholded at ``mask_threshold``.
2. **Body regions**: every person pixel goes to the nearest "bone" of the skeleton: the head (a disc
   around the face landmarks), the neck, the torso (the shoulder-hip quadrilateral, distance 0
   inside), upper arms, forearms, hands, thighs, shins and feet (segments between landmarks). A limb
   whose two end landmarks both have a visibility below ``min_visibility`` is left out (a portrait
   cut at the hips has no thighs), so its pixels go to the bones that are seen.
3. **LIP labels**: head -> ``Face`` (13) inside an ellipse fitted to the face landmarks, ``Hair`` (2)
   elsewhere; neck -> ``Face``; torso -> ``Upper-clothes`` (5); thighs and shins (hips to ankles) ->
   ``Pants`` (9); feet (below the ankles) -> ``Left-shoe`` / ``Right-shoe`` (18 / 19); hands ->
   ``Left-arm`` / ``Right-arm`` (14 / 15, skin, never repainted). Each upper arm and forearm is a
   sleeve (5) or bare skin (14 / 15) depending on its median CIELAB colour: skin when it is closer to
   the face's colour than to the torso garment's (without a visible face: skin when it is further
   than :data:`SLEEVE_DELTA_E` from the torso colour). A thigh or shin is bare skin (16 / 17) when its
   colour is within :data:`LEG_SKIN_DELTA_E` of the face's, so shorts and skirts do not paint bare
   legs (trousers of a skin-like colour are then missed). Left / right are the
   person's own (mediapipe's convention, also LIP's).

**Fallback.** When the model finds no pose (small, blurred or occluded crops; no person at all) or
the shoulders are not visible, the person mask comes from the selfie-segmentation model and a fixed
pedestrian geometry is laid over the mask's bounding box, by fraction of its height: hair 0-5 %,
face 5-13 %, upper clothes 13-52 %, pants 52-93 %, shoes 93-100 % (left / right by the box's
centre column). Every such image is counted in :attr:`PoseParser.fallback_count` (and in
``ParseReport.fallbacks``) and logged; an empty person mask gives an all-background map, which
:func:`~dlcr.generation.parsing.parse_dataset` flags as an empty clothes mask.

Install (mediapipe 0.10.21 declares ``numpy<2`` and ``protobuf<5``; its pose and segmentation
graphs run unchanged on numpy 2, so it is installed without its declared dependencies to keep this
project's numpy 2 stack)::

    pip install -e ".[pose]" && pip install --no-deps mediapipe==0.10.21

The geometry (steps 2 and 3, and the fallback; pure numpy) is
:mod:`dlcr.generation.parsers.pose_geometry`; its names are importable from here too.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from dlcr.errors import ConfigError, first_line
from dlcr.generation.parsers.pose_geometry import (
    BACKGROUND,
    FACE,
    FACE_POINTS,
    FALLBACK_BANDS,
    HAIR,
    L_ANKLE,
    L_ARM,
    L_EAR,
    L_ELBOW,
    L_FOOT,
    L_HEEL,
    L_HIP,
    L_INDEX,
    L_KNEE,
    L_LEG,
    L_PINKY,
    L_SHOE,
    L_SHOULDER,
    L_THUMB,
    L_WRIST,
    LEG_SKIN_DELTA_E,
    MIN_COLOUR_PIXELS,
    MOUTH_L,
    MOUTH_R,
    NOSE,
    PANTS,
    R_ANKLE,
    R_ARM,
    R_EAR,
    R_ELBOW,
    R_FOOT,
    R_HEEL,
    R_HIP,
    R_INDEX,
    R_KNEE,
    R_LEG,
    R_PINKY,
    R_SHOE,
    R_SHOULDER,
    R_THUMB,
    R_WRIST,
    SLEEVE_DELTA_E,
    UPPER,
    Bone,
    face_ellipse,
    fallback_labels,
    labels_from_pose,
    polygon_distance,
    segment_distance,
    skeleton,
)
from dlcr.generation.parsing import HumanParser
from dlcr.io.images import check_images
from dlcr.utils.logging import get_logger

log = get_logger(__name__)

MEDIAPIPE_VERSION = "0.10.21"
INSTALL_HINT = 'pip install -e ".[pose]" && pip install --no-deps mediapipe==0.10.21'


def mediapipe_missing() -> str | None:
    """Why the pose backend cannot run here (a one-line reason), or None when mediapipe is usable."""
    import importlib.util

    if importlib.util.find_spec("mediapipe") is None:
        return f"mediapipe is not installed ({INSTALL_HINT})"
    try:
        import importlib.metadata as md

        version = md.version("mediapipe")
    except Exception:  # a vendored copy without metadata: let the import decide
        version = MEDIAPIPE_VERSION
    if version != MEDIAPIPE_VERSION:
        # releases from 0.10.30 on ship no models; older ones have other graph options
        return f"mediapipe {version} is installed, the pose backend needs {MEDIAPIPE_VERSION} ({INSTALL_HINT})"
    return None


def _import_mediapipe() -> Any:
    reason = mediapipe_missing()
    if reason:
        raise ConfigError(f"parser 'pose': {reason}")
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ start-up chatter
    try:
        import mediapipe as mp

        return mp.solutions
    except Exception as e:  # e.g. a protobuf >= 5 runtime
        msg = first_line(e)
        raise ConfigError(f"parser 'pose': cannot import mediapipe ({msg}); {INSTALL_HINT}") from None


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------


class PoseParser(HumanParser):
    """LIP label maps from mediapipe's bundled pose landmarks + person mask (see the module docstring).

    ``fallback_count`` counts the images parsed with the fixed-geometry fallback since creation;
    ``last_fallbacks`` tells, for the last :meth:`parse` call, which images used it.
    """

    name = "pose"

    def __init__(
        self,
        *,
        min_detection_confidence: float = 0.5,
        min_visibility: float = 0.5,
        mask_threshold: float = 0.5,
        batch_size: int = 16,
    ):
        for key, v in (("min_detection_confidence", min_detection_confidence),
                       ("min_visibility", min_visibility), ("mask_threshold", mask_threshold)):  # fmt: skip
            if not 0.0 <= float(v) <= 1.0:
                raise ConfigError(f"parser 'pose': {key} must be in [0, 1], got {v}")
        if batch_size < 1:
            raise ConfigError(f"parser 'pose': batch_size must be at least 1, got {batch_size}")
        solutions = _import_mediapipe()
        self.min_detection_confidence = float(min_detection_confidence)
        self.min_visibility = float(min_visibility)
        self.mask_threshold = float(mask_threshold)
        self.batch_size = int(batch_size)
        try:
            # static_image_mode: every image is independent (no tracking between dataset images)
            self._pose = solutions.pose.Pose(
                static_image_mode=True,
                model_complexity=1,  # the only complexity whose model ships in the wheel
                enable_segmentation=True,
                min_detection_confidence=self.min_detection_confidence,
            )
            self._selfie = solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)
        except Exception as e:  # seen with protobuf >= 5: "FieldDescriptor has no attribute 'label'"
            import importlib.metadata as md

            try:
                pb = md.version("protobuf")
            except md.PackageNotFoundError:
                pb = "missing"
            msg = first_line(e)
            raise ConfigError(
                f"parser 'pose': mediapipe cannot build its graphs ({msg}); it needs protobuf>=4.25.3,<5 "
                f"(installed: {pb}): {INSTALL_HINT}"
            ) from None
        self._lock = threading.Lock()  # mediapipe graphs are not re-entrant
        self.fallback_count = 0
        self.images_parsed = 0
        self.last_fallbacks: list[bool] = []

    @property
    def description(self) -> str:
        return f"pose:mediapipe-{MEDIAPIPE_VERSION}(pose_landmark_full+segmentation,fallback=geometry)"

    def person_mask(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(person mask, landmarks or None when no usable pose was found).

        Landmarks are a (33, 3) array: x and y in pixels, and the model's visibility (0..1).
        """
        (image,) = check_images([image])
        h, w = image.shape[:2]
        with self._lock:
            res = self._pose.process(np.ascontiguousarray(image))
        lms = res.pose_landmarks
        if lms is not None and res.segmentation_mask is not None:
            pts = np.array([(p.x * w, p.y * h, p.visibility) for p in lms.landmark], dtype=np.float64)
            if min(pts[L_SHOULDER, 2], pts[R_SHOULDER, 2]) >= self.min_visibility:
                return np.asarray(res.segmentation_mask) > self.mask_threshold, pts
        with self._lock:
            seg = self._selfie.process(np.ascontiguousarray(image)).segmentation_mask
        mask = np.zeros((h, w), dtype=bool) if seg is None else np.asarray(seg) > self.mask_threshold
        return mask, None

    def parse_one(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """(label map, whether the fallback geometry was used) for one RGB uint8 image."""
        person, pts = self.person_mask(image)
        if pts is None:
            return fallback_labels(person), True
        return labels_from_pose(image, person, pts[:, :2], pts[:, 2], self.min_visibility), False

    def parse(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        out, flags = [], []
        for img in check_images(images):
            labels, fell_back = self.parse_one(img)
            out.append(labels)
            flags.append(fell_back)
        n = sum(flags)
        self.fallback_count += n
        self.images_parsed += len(flags)
        self.last_fallbacks = flags
        if n:
            log.warning(
                "pose parser: no usable pose in %d of %d images; used the fixed-geometry fallback "
                "(%d of %d so far)", n, len(flags), self.fallback_count, self.images_parsed,
            )  # fmt: skip
        return out

    def close(self) -> None:
        """Release the mediapipe graphs; the parser cannot be used afterwards."""
        for g in (getattr(self, "_pose", None), getattr(self, "_selfie", None)):
            if g is not None:
                g.close()
        self._pose = self._selfie = None


__all__ = [
    "BACKGROUND",
    "FACE",
    "FACE_POINTS",
    "FALLBACK_BANDS",
    "HAIR",
    "INSTALL_HINT",
    "LEG_SKIN_DELTA_E",
    "L_ANKLE",
    "L_ARM",
    "L_EAR",
    "L_ELBOW",
    "L_FOOT",
    "L_HEEL",
    "L_HIP",
    "L_INDEX",
    "L_KNEE",
    "L_LEG",
    "L_PINKY",
    "L_SHOE",
    "L_SHOULDER",
    "L_THUMB",
    "L_WRIST",
    "MEDIAPIPE_VERSION",
    "MIN_COLOUR_PIXELS",
    "MOUTH_L",
    "MOUTH_R",
    "NOSE",
    "PANTS",
    "R_ANKLE",
    "R_ARM",
    "R_EAR",
    "R_ELBOW",
    "R_FOOT",
    "R_HEEL",
    "R_HIP",
    "R_INDEX",
    "R_KNEE",
    "R_LEG",
    "R_PINKY",
    "R_SHOE",
    "R_SHOULDER",
    "R_THUMB",
    "R_WRIST",
    "SLEEVE_DELTA_E",
    "UPPER",
    "Bone",
    "PoseParser",
    "face_ellipse",
    "fallback_labels",
    "labels_from_pose",
    "mediapipe_missing",
    "polygon_distance",
    "segment_distance",
    "skeleton",
]
