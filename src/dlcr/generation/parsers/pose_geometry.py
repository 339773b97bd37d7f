"""The geometry of the ``pose`` parser (:mod:`dlcr.generation.parsers.pose`), pure numpy and
unit-testable without mediapipe: mediapipe's landmark indices, the skeleton's bones and the distance
of pixels to them, the LIP label map made from a pose (:func:`labels_from_pose`, steps 2 and 3 of
that module's docstring) and the fixed-geometry fallback (:func:`fallback_labels`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dlcr import lip
from dlcr.vocabulary import rgb_to_lab

BACKGROUND, HAIR, UPPER, PANTS, FACE = lip.BACKGROUND, lip.HAIR, lip.UPPER_CLOTHES, lip.PANTS, lip.FACE  # LIP ids
L_ARM, R_ARM, L_LEG, R_LEG, L_SHOE, R_SHOE = lip.LEFT_ARM, lip.RIGHT_ARM, lip.LEFT_LEG, lip.RIGHT_LEG, lip.LEFT_SHOE, lip.RIGHT_SHOE

# mediapipe pose landmark indices (the person's left / right)
NOSE, L_EAR, R_EAR, MOUTH_L, MOUTH_R = 0, 7, 8, 9, 10
FACE_POINTS = tuple(range(11))
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_PINKY, R_PINKY, L_INDEX, R_INDEX, L_THUMB, R_THUMB = 17, 18, 19, 20, 21, 22
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_FOOT, R_FOOT = 29, 30, 31, 32

#: A forearm / upper arm further than this (CIE76) from the torso colour is skin when no face is seen.
SLEEVE_DELTA_E = 25.0
#: A thigh / shin this close (CIE76) to the face colour may be bare skin.
LEG_SKIN_DELTA_E = 18.0
#: Regions with fewer pixels than this keep their default label (too few to judge a colour).
MIN_COLOUR_PIXELS = 12

#: Fixed geometry of the fallback: (end of band as a fraction of the person's height, LIP id).
FALLBACK_BANDS: tuple[tuple[float, int], ...] = (
    (0.05, HAIR),
    (0.13, FACE),
    (0.52, UPPER),
    (0.93, PANTS),
    (1.00, L_SHOE),  # split into left / right shoe by column
)


def segment_distance(ys: np.ndarray, xs: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance of pixels (``ys``, ``xs`` broadcastable grids) to the segment a-b (x, y)."""
    d = b - a
    L2 = float(d @ d)
    px, py = xs - a[0], ys - a[1]
    if L2 < 1e-9:
        return np.hypot(px, py)
    t = np.clip((px * d[0] + py * d[1]) / L2, 0.0, 1.0)
    return np.hypot(px - t * d[0], py - t * d[1])


def polygon_distance(ys: np.ndarray, xs: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance to a simple polygon (vertices (x, y) in order): 0 inside, distance to the edges outside."""
    ys, xs = np.broadcast_arrays(ys, xs)
    n = len(poly)
    dist = np.full(ys.shape, np.inf)
    inside = np.zeros(ys.shape, dtype=bool)
    for i in range(n):
        a, b = poly[i], poly[(i + 1) % n]
        dist = np.minimum(dist, segment_distance(ys, xs, a, b))
        # even-odd rule: count crossings of a ray towards +x
        if a[1] != b[1]:
            crosses = ((a[1] > ys) != (b[1] > ys)) & (xs < a[0] + (ys - a[1]) * (b[0] - a[0]) / (b[1] - a[1]))
            inside ^= crosses
    return np.where(inside, 0.0, dist)


@dataclass(frozen=True)
class Bone:
    """A body region: pixels nearest to it (among all bones) get its name."""

    name: str
    kind: str  # "segment", "polygon" or "disc"
    points: np.ndarray  # (k, 2) x, y
    radius: float = 0.0  # for discs

    def distance(self, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
        if self.kind == "segment":
            return segment_distance(ys, xs, self.points[0], self.points[1])
        if self.kind == "polygon":
            return polygon_distance(ys, xs, self.points)
        c = self.points[0]
        return np.maximum(np.hypot(xs - c[0], ys - c[1]) - self.radius, 0.0)


def skeleton(pts: np.ndarray, vis: np.ndarray | None = None, min_visibility: float = 0.5) -> list[Bone]:
    """The bones of one pose; ``pts`` is (33, 2) landmark positions in pixels (x, y).

    With visibilities ``vis`` (33,), a limb bone both of whose ends are below ``min_visibility`` is
    left out (e.g. the thighs of a portrait cut at the hips), so its pixels go to the bones that are
    seen. The head, neck and torso are always kept.
    """
    face = pts[list(FACE_POINTS)]
    head_c = face.mean(axis=0)
    ear_span = float(np.linalg.norm(pts[L_EAR] - pts[R_EAR]))
    eye_mouth = float(np.linalg.norm(pts[NOSE] - (pts[MOUTH_L] + pts[MOUTH_R]) / 2))
    # a head is about 1.1 ear spans wide; a tilted / profile head still has the nose-mouth distance
    head_r = max(0.55 * ear_span, 2.2 * eye_mouth, 1.0)
    sh_mid = (pts[L_SHOULDER] + pts[R_SHOULDER]) / 2
    chin = (pts[MOUTH_L] + pts[MOUTH_R]) / 2
    bones = [
        Bone("head", "disc", head_c[None], head_r),
        # the neck stops half-way to the shoulder line, so a collar or neckline stays with the torso
        Bone("neck", "segment", np.stack([chin, chin + 0.5 * (sh_mid - chin)])),
        Bone("torso", "polygon", pts[[L_SHOULDER, R_SHOULDER, R_HIP, L_HIP]]),
    ]
    limbs: list[tuple[Bone, int, int]] = []  # bone, proximal and distal landmark
    for side, (sh, el, wr, hand_pts, hip, kn, an, foot_pts) in {
        "l": (L_SHOULDER, L_ELBOW, L_WRIST, (L_PINKY, L_INDEX, L_THUMB), L_HIP, L_KNEE, L_ANKLE, (L_HEEL, L_FOOT)),
        "r": (R_SHOULDER, R_ELBOW, R_WRIST, (R_PINKY, R_INDEX, R_THUMB), R_HIP, R_KNEE, R_ANKLE, (R_HEEL, R_FOOT)),
    }.items():
        hand_end = pts[list(hand_pts)].mean(axis=0)
        foot_end = pts[list(foot_pts)].mean(axis=0)
        limbs += [
            (Bone(f"{side}_upper_arm", "segment", pts[[sh, el]]), sh, el),
            (Bone(f"{side}_forearm", "segment", pts[[el, wr]]), el, wr),
            (Bone(f"{side}_hand", "segment", np.stack([pts[wr], hand_end])), wr, hand_pts[1]),
            (Bone(f"{side}_thigh", "segment", pts[[hip, kn]]), hip, kn),
            (Bone(f"{side}_shin", "segment", pts[[kn, an]]), kn, an),
            (Bone(f"{side}_foot", "segment", np.stack([pts[an], foot_end])), an, foot_pts[1]),
        ]
    for bone, a, b in limbs:
        if vis is None or max(vis[a], vis[b]) >= min_visibility:
            bones.append(bone)
    return bones


_BONE_NAMES = tuple(b.name for b in skeleton(np.zeros((33, 2))))


def face_ellipse(pts: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Pixels inside an ellipse around the face: ears to ears wide, brows to below the chin tall."""
    face = pts[list(FACE_POINTS)]
    cx = float(face[:, 0].mean())
    eyes_y = float(pts[1:7, 1].mean())
    mouth_y = float(pts[[MOUTH_L, MOUTH_R], 1].mean())
    ear_span = float(np.linalg.norm(pts[L_EAR] - pts[R_EAR]))
    down = max(mouth_y - eyes_y, 1.0)
    top, bottom = eyes_y - 0.9 * down, mouth_y + 1.1 * down
    cy, ry = (top + bottom) / 2, max((bottom - top) / 2, 1.0)
    rx = max(0.5 * ear_span, 0.6 * ry)
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1.0


def _median_lab(lab: np.ndarray, region: np.ndarray) -> np.ndarray | None:
    if int(region.sum()) < MIN_COLOUR_PIXELS:
        return None
    return np.median(lab[region], axis=0)


def _de(a: np.ndarray | None, b: np.ndarray | None) -> float:
    return float("inf") if a is None or b is None else float(np.linalg.norm(a - b))


def labels_from_pose(
    image: np.ndarray,
    person: np.ndarray,
    pts: np.ndarray,
    vis: np.ndarray | None = None,
    min_visibility: float = 0.5,
) -> np.ndarray:
    """A LIP label map from an RGB image, its person mask and 33 landmarks (pixels, (x, y)).

    ``vis`` (33,) are the landmarks' visibilities; limbs seen at neither end are left out
    (:func:`skeleton`).
    """
    h, w = person.shape
    out = np.zeros((h, w), dtype=np.uint8)
    box = lip.mask_bbox(person)
    if box is None:
        return out
    y0, y1, x0, x1 = box
    ys = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5
    bones = skeleton(pts, vis, min_visibility)
    # running arg-min over the bones (memory of a few maps, not one per bone); ties go to the first
    best = np.full((y1 - y0, x1 - x0), np.inf)
    nearest = np.zeros((y1 - y0, x1 - x0), dtype=np.int16)
    for i, b in enumerate(bones):
        d = np.broadcast_to(b.distance(ys, xs), best.shape)
        closer = d < best
        best[closer] = d[closer]
        nearest[closer] = i
    inside = person[y0:y1, x0:x1]
    empty = np.zeros_like(inside)
    region = {b.name: (nearest == i) & inside for i, b in enumerate(bones)}
    region = {b: region.get(b, empty) for b in _BONE_NAMES}
    lab = rgb_to_lab(image[y0:y1, x0:x1])

    sub = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    face = face_ellipse(pts, ys, xs) & region["head"]
    sub[region["head"]] = HAIR
    sub[face] = FACE
    sub[region["neck"]] = FACE
    sub[region["torso"]] = UPPER

    skin = _median_lab(lab, face)
    torso = _median_lab(lab, region["torso"])
    for side, arm, leg, shoe in (("l", L_ARM, L_LEG, L_SHOE), ("r", R_ARM, R_LEG, R_SHOE)):
        for part in ("upper_arm", "forearm"):
            m = region[f"{side}_{part}"]
            c = _median_lab(lab, m)
            if c is None:
                bare = part == "forearm" and skin is not None  # too small to judge: a guess
            elif skin is not None:
                bare = _de(c, skin) < _de(c, torso)
            else:
                bare = _de(c, torso) > SLEEVE_DELTA_E
            sub[m] = arm if bare else UPPER
        sub[region[f"{side}_hand"]] = arm
        for part in ("thigh", "shin"):
            m = region[f"{side}_{part}"]
            sub[m] = leg if _de(_median_lab(lab, m), skin) < LEG_SKIN_DELTA_E else PANTS
        sub[region[f"{side}_foot"]] = shoe
    sub[~inside] = BACKGROUND
    out[y0:y1, x0:x1] = sub
    return out


def fallback_labels(person: np.ndarray) -> np.ndarray:
    """The fixed pedestrian geometry of :data:`FALLBACK_BANDS` laid over the person mask's bounding box."""
    h, w = person.shape
    out = np.zeros((h, w), dtype=np.uint8)
    box = lip.mask_bbox(person)
    if box is None:
        return out
    y0, y1, x0, x1 = box
    mid = (x0 + x1) / 2
    frac = (np.arange(h) + 0.5 - y0) / max(y1 - y0, 1)
    band = np.full(h, BACKGROUND, dtype=np.uint8)
    start = 0.0
    for end, label in FALLBACK_BANDS:
        band[(frac >= start) & (frac < end)] = label
        start = end
    out[:] = band[:, None]
    # the person's left shoe is on the image's right for a person facing the camera
    is_shoe = out == L_SHOE
    out[is_shoe & (np.arange(w)[None, :] + 0.5 < mid)] = R_SHOE
    out[~person] = BACKGROUND
    return out
