"""One pedestrian, painted back to front into a :class:`~dlcr.synth.canvas.Canvas`: :func:`draw_person`.

The body's measures (key heights, limb radii, joint positions, fills) are computed once
(:func:`_body`); each part is then drawn by its own function, in the painter's order of
:func:`draw_person`. Person units: y = 0 at the top of the head, y = 1 at the soles, x = 0 on the
body axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dlcr import lip
from dlcr.synth import palette as pal
from dlcr.synth.canvas import Canvas, Fill, _darker, garment_fill, solid
from dlcr.synth.world import Identity, Outfit

HAIR, GLASSES, FACE, L_ARM, R_ARM = lip.HAIR, lip.SUNGLASSES, lip.FACE, lip.LEFT_ARM, lip.RIGHT_ARM  # LIP ids drawn
L_LEG, R_LEG, L_SHOE, R_SHOE = lip.LEFT_LEG, lip.RIGHT_LEG, lip.LEFT_SHOE, lip.RIGHT_SHOE

Joint = tuple[float, float]
Limb = tuple[float, Joint, Joint, Joint]  # (side sign, upper joint, middle joint, end joint)


@dataclass(frozen=True)
class Pose:
    view: str  # "front" | "back" | "left" | "right" (side views: the way the person faces)
    phase: float  # walking phase in radians


@dataclass
class _Body:
    """The measures of one person in one pose (person units), shared by the part painters."""

    ident: Identity
    outfit: Outfit
    view: str
    side: bool
    d: float  # facing direction in side views
    skin: Fill
    hair: Fill
    up_kind: str
    up_label: int
    sleeves: str
    up_fill: Fill
    lo_label: int
    lo_fill: Fill
    shoe_fill: Fill
    ry: float
    rx: float
    y_head: float
    y_chin: float
    y_sh: float
    y_hip: float
    y_knee: float
    y_waist: float
    sw: float
    hw: float
    r_thigh: float
    r_knee: float
    r_ankle: float
    r_ua: float
    r_el: float
    r_wr: float
    legs: list[Limb] = field(default_factory=list)
    arms: list[Limb] = field(default_factory=list)

    def limb_labels(self, sgn: float) -> tuple[int, int, int]:
        """LIP (arm, leg, shoe) labels of the limb on side ``sgn``.

        Front/back views: ``sgn`` is the image side (+x right); the person's left is on the image's
        right in a front view. Side views: ``sgn = +1`` is the near limb, which is the person's right
        one when facing +x and the left one when facing -x.
        """
        side, d, view = self.side, self.d, self.view
        is_left = (sgn > 0) == (d < 0) if side else (sgn > 0) == (view == "front")
        return (L_ARM, L_LEG, L_SHOE) if is_left else (R_ARM, R_LEG, R_SHOE)


def draw_person(cv: Canvas, ident: Identity, outfit: Outfit, pose: Pose, rng: np.random.Generator) -> None:
    """Paint one person, back to front, into ``cv``."""
    bd = _body(ident, outfit, pose, rng)
    sleeves = bd.sleeves
    if ident.hair_style == "long" and bd.view == "front":  # hair falling behind the shoulders
        rx, y_head, y_sh, hair = bd.rx, bd.y_head, bd.y_sh, bd.hair
        hw_hair = rx * 1.15
        cv.profile([y_head, y_sh + 0.02, y_sh + 0.11], [0, 0, 0], [hw_hair, hw_hair * 1.12, hw_hair * 1.05], HAIR, hair)
    # far limbs first in side views
    if bd.side:
        _draw_arm(cv, bd, -1.0, True, sleeves)
        _draw_leg(cv, bd, -1.0, True)
        _draw_leg(cv, bd, 1.0, False)
    else:
        _draw_leg(cv, bd, -1.0, False)
        _draw_leg(cv, bd, 1.0, False)
    _draw_lower_body(cv, bd)
    _draw_torso(cv, bd)
    _draw_neck(cv, bd)
    # near limbs / both arms
    if bd.side:
        _draw_arm(cv, bd, 1.0, False, sleeves)
    else:
        _draw_arm(cv, bd, -1.0, False, sleeves)
        _draw_arm(cv, bd, 1.0, False, sleeves)
    hcx, hrx, eye_y = _draw_head(cv, bd)
    _draw_hair(cv, bd, hcx, hrx)
    _draw_glasses(cv, bd, hcx, hrx, eye_y)


def _body(ident: Identity, outfit: Outfit, pose: Pose, rng: np.random.Generator) -> _Body:
    """Fills, key heights and limb radii of ``ident`` in ``outfit``; the joints of ``pose``."""
    view, ph = pose.view, pose.phase
    side = view in ("left", "right")
    d = 1.0 if view == "right" else -1.0  # facing direction in side views
    b = ident.build
    skin = solid(ident.skin)
    hair = solid(ident.hair, shading=0.25)
    up_kind = outfit.upper.kind
    up_label, sleeves = pal.UPPER_KINDS[up_kind]
    up_fill = garment_fill(outfit.upper, period=0.052, phase=float(rng.uniform(0, 0.05)))
    lo_label = pal.LOWER_KINDS[outfit.lower.kind]
    lo_fill = garment_fill(outfit.lower, period=0.06, phase=float(rng.uniform(0, 0.06)))
    shoe_fill = garment_fill(outfit.footwear, period=0.05, phase=0.0)
    shoe_fill.shading = 0.2

    # key heights
    ry, rx = ident.head_ry, ident.head_rx
    y_head = ry + 0.004
    y_chin = y_head + ry
    y_sh = y_chin + ident.neck + 0.012
    y_hip = ident.hip_y
    y_ankle = 0.962
    y_knee = 0.5 * (y_hip + y_ankle) - 0.012
    y_waist = y_sh + 0.62 * (y_hip - y_sh)
    sw, hw = ident.shoulder, ident.hip
    r_thigh, r_knee, r_ankle = 0.043 * b, 0.031 * b, 0.022 * b
    r_ua, r_el, r_wr = 0.026 * b, 0.021 * b, 0.016 * b
    bd = _Body(ident=ident, outfit=outfit, view=view, side=side, d=d, skin=skin, hair=hair, up_kind=up_kind,
               up_label=up_label, sleeves=sleeves, up_fill=up_fill, lo_label=lo_label, lo_fill=lo_fill,
               shoe_fill=shoe_fill, ry=ry, rx=rx, y_head=y_head, y_chin=y_chin, y_sh=y_sh, y_hip=y_hip,
               y_knee=y_knee, y_waist=y_waist, sw=sw, hw=hw, r_thigh=r_thigh, r_knee=r_knee, r_ankle=r_ankle,
               r_ua=r_ua, r_el=r_el, r_wr=r_wr)
    _joints(bd, ph, y_ankle)
    return bd


def _joints(bd: _Body, ph: float, y_ankle: float) -> None:
    """Hip-knee-ankle and shoulder-elbow-wrist positions of both sides at walking phase ``ph``."""
    ident, side, d, legs, arms = bd.ident, bd.side, bd.d, bd.legs, bd.arms
    y_hip, y_knee, y_sh, sw, hw = bd.y_hip, bd.y_knee, bd.y_sh, bd.sw, bd.hw
    r_thigh, r_ua = bd.r_thigh, bd.r_ua
    ua_len, fa_len = 0.165 * ident.arm, 0.15 * ident.arm
    if not side:
        for sgn in (-1.0, 1.0):
            lift = 0.018 * max(0.0, math.sin(ph + (0 if sgn > 0 else math.pi)))
            hx = sgn * max(hw - 0.9 * r_thigh, 0.35 * hw)
            ax = sgn * (0.55 * hw + ident.stance)
            legs.append((sgn, (hx, y_hip), (0.5 * (hx + ax), y_knee - lift), (ax, y_ankle - lift)))
            sx = sgn * (sw - 0.6 * r_ua)
            swing = 0.012 * math.sin(ph + (math.pi if sgn > 0 else 0))
            ex = sgn * (sw + 0.45 * ident.arm_spread + 0.4 * r_ua)
            wx = sgn * (sw + ident.arm_spread + 0.2 * r_ua)
            arms.append((sgn, (sx, y_sh + 0.018), (ex, y_sh + 0.018 + ua_len - swing),
                         (wx, y_sh + 0.018 + ua_len + fa_len - 2 * swing)))
    else:
        s = math.sin(ph)
        for sgn, k in ((-1.0, -1.0), (1.0, 1.0)):  # sgn: far (-1) / near (+1) in drawing order
            ax = d * k * ident.stride * s
            lift = 0.03 * max(0.0, -k * s)
            kx = 0.5 * ax + d * 0.02
            legs.append((sgn, (0.0, y_hip), (kx, y_knee - lift), (ax - d * 0.01, y_ankle - lift)))
            th = -k * 0.38 * s  # arm swings against the leg of the same side
            sx = d * 0.005
            ex = sx + d * ua_len * math.sin(th)
            ey = y_sh + 0.02 + ua_len * math.cos(th)
            th2 = th + 0.25
            arms.append((sgn, (sx, y_sh + 0.02), (ex, ey), (ex + d * fa_len * math.sin(th2), ey + fa_len * math.cos(th2))))


def _draw_leg(cv: Canvas, bd: _Body, sgn: float, far: bool) -> None:
    ident, outfit, side, d = bd.ident, bd.outfit, bd.side, bd.d
    r_thigh, r_knee, r_ankle = bd.r_thigh, bd.r_knee, bd.r_ankle
    lo_fill, lo_label, shoe_fill = bd.lo_fill, bd.lo_label, bd.shoe_fill
    arm_l, leg_l, shoe_l = bd.limb_labels(sgn)
    _, hip, knee, ankle = next(L for L in bd.legs if L[0] == sgn)
    sk = solid(np.asarray(ident.skin) * (0.85 if far else 1.0))
    cv.capsule(hip, knee, r_thigh, r_knee, leg_l, sk)
    cv.capsule(knee, ankle, r_knee, r_ankle, leg_l, sk)
    lf = lo_fill if not far else _darker(lo_fill)
    kind = outfit.lower.kind
    if kind in ("jeans", "trousers"):
        cv.capsule(hip, knee, r_thigh + 0.009, r_knee + 0.008, lo_label, lf)
        cv.capsule(knee, (ankle[0], ankle[1] - 0.004), r_knee + 0.008, r_ankle + 0.008, lo_label, lf)
    elif kind == "shorts":
        f = 0.55
        mid = (hip[0] + f * (knee[0] - hip[0]), hip[1] + f * (knee[1] - hip[1]))
        cv.capsule(hip, mid, r_thigh + 0.012, r_thigh + 0.008, lo_label, lf)
    # shoes
    boots = outfit.footwear.kind == "boots"
    sf = shoe_fill if not far else _darker(shoe_fill)
    if boots:
        cv.capsule((ankle[0], ankle[1] - 0.07), ankle, r_ankle + 0.01, r_ankle + 0.01, shoe_l, sf)
    if side:
        cv.ellipse((ankle[0] + d * 0.022, ankle[1] + 0.017), 0.042, 0.02, shoe_l, sf)
    else:
        cv.ellipse((ankle[0] + sgn * 0.004, ankle[1] + 0.018), r_ankle * 1.45, 0.021, shoe_l, sf)


def _draw_arm(cv: Canvas, bd: _Body, sgn: float, far: bool, covered: str) -> None:
    ident, b = bd.ident, bd.ident.build
    r_ua, r_el, r_wr, up_fill, up_label = bd.r_ua, bd.r_el, bd.r_wr, bd.up_fill, bd.up_label
    arm_l, _, _ = bd.limb_labels(sgn)
    _, sh, el, wr = next(A for A in bd.arms if A[0] == sgn)
    sk = solid(np.asarray(ident.skin) * (0.85 if far else 1.0))
    cv.capsule(sh, el, r_ua, r_el, arm_l, sk)
    cv.capsule(el, wr, r_el, r_wr, arm_l, sk)
    hand = (wr[0] + 0.35 * (wr[0] - el[0]) * 0.3, wr[1] + 0.018)
    cv.ellipse(hand, 0.019 * b ** 0.5, 0.025, arm_l, sk)
    uf = up_fill if not far else _darker(up_fill)
    if covered == "short":
        mid = (sh[0] + 0.5 * (el[0] - sh[0]), sh[1] + 0.5 * (el[1] - sh[1]))
        cv.capsule(sh, mid, r_ua + 0.01, r_ua + 0.009, up_label, uf)
    elif covered == "long":
        cv.capsule(sh, el, r_ua + 0.009, r_el + 0.008, up_label, uf)
        cv.capsule(el, (wr[0], wr[1] - 0.006), r_el + 0.008, r_wr + 0.007, up_label, uf)


def _draw_lower_body(cv: Canvas, bd: _Body) -> None:
    """The lower garment's body part (waist to crotch), or the skirt."""
    side, d, hw, lo_label, lo_fill = bd.side, bd.d, bd.hw, bd.lo_label, bd.lo_fill
    y_waist, y_hip, y_knee = bd.y_waist, bd.y_hip, bd.y_knee
    depth = 0.62  # side-view width factor
    wf = depth if side else 1.0
    kind = bd.outfit.lower.kind
    cx_side = d * 0.006 if side else 0.0
    if kind == "skirt":
        flare = 1.55 if not side else 1.9
        cv.profile([y_waist + 0.01, y_hip, y_knee + 0.02], [cx_side] * 3,
                   [hw * 0.95 * wf, hw * 1.1 * wf, hw * flare * wf], lo_label, lo_fill)
    else:
        cv.profile([y_waist + 0.01, y_hip, y_hip + 0.06], [cx_side] * 3,
                   [hw * 0.98 * wf, (hw + 0.008) * wf, (hw - 0.002) * wf], lo_label, lo_fill)


def _draw_torso(cv: Canvas, bd: _Body) -> None:
    """The upper garment on the torso, with its zip, buttons or hood."""
    side, d, view, b, sw, hw, rx = bd.side, bd.d, bd.view, bd.ident.build, bd.sw, bd.hw, bd.rx
    y_sh, y_waist, y_hip, y_knee = bd.y_sh, bd.y_waist, bd.y_hip, bd.y_knee
    up_kind, up_label, up_fill, skin = bd.up_kind, bd.up_label, bd.up_fill, bd.skin
    wf = 0.62 if side else 1.0  # the lower body's side-view width factor
    cx_side = d * 0.006 if side else 0.0
    sw_t = sw * wf if not side else max(sw * 0.55, 0.07 * b)
    hw_t = hw * wf if not side else max(hw * 0.7, 0.065 * b)
    waist_t = 0.5 * (sw_t + hw_t) * 0.9
    hem = {"coat": y_knee - 0.03, "jacket": y_hip + 0.025, "hoodie": y_hip + 0.01}.get(up_kind, y_hip - 0.005)
    ys = [y_sh - 0.008, y_sh + 0.05, y_waist, y_hip]
    hws = [sw_t - 0.012, sw_t + 0.004, waist_t, hw_t + 0.006]
    if hem > y_hip:
        ys.append(hem)
        hws.append(hw_t + 0.01 + (0.05 if up_kind == "coat" else 0.0) * (1 if not side else 0.7))
    else:
        ys[-1] = hem
    if up_kind == "tank top" and not side:
        # the shoulders stay bare: narrower at the top
        hws[0], hws[1] = sw_t - 0.045, sw_t - 0.03
        for sgn in (-1.0, 1.0):  # skin of the shoulder caps
            cv.ellipse((sgn * (sw_t - 0.025), y_sh + 0.012), 0.03, 0.022, bd.limb_labels(sgn)[0], skin)
    torso_c = [cx_side + (d * 0.01 if side else 0.0) * (i == 1) for i in range(len(ys))]
    cv.profile(ys, torso_c, hws, up_label, up_fill)
    dark = _darker(up_fill, 0.6)
    if up_kind in ("jacket", "coat") and view != "back":  # zip / button line
        zx = 0.0 if not side else d * (sw_t * 0.7)
        cv.capsule((zx, y_sh + 0.02), (zx, hem - 0.01), 0.004, 0.004, up_label, dark)
    if up_kind == "shirt" and view == "front":
        for i in range(4):
            cv.ellipse((0.0, y_sh + 0.05 + i * 0.055), 0.0045, 0.0045, up_label, dark)
    if up_kind == "hoodie":  # the hood around the neck / on the back
        if view == "back":
            cv.ellipse((0.0, y_sh + 0.025), rx * 1.25, 0.05, up_label, dark)
        elif side:
            cv.ellipse((-d * rx * 0.7, y_sh + 0.005), rx * 0.7, 0.04, up_label, dark)
        else:
            cv.capsule((-sw_t * 0.45, y_sh + 0.0), (sw_t * 0.45, y_sh + 0.0), 0.018, 0.018, up_label, dark)


def _draw_neck(cv: Canvas, bd: _Body) -> None:
    rx, y_chin, y_sh, skin, view, up_kind = bd.rx, bd.y_chin, bd.y_sh, bd.skin, bd.view, bd.up_kind
    cv.capsule((0.0, y_chin - 0.01), (0.0, y_sh + 0.004), rx * 0.48, rx * 0.52, FACE, skin)
    if view == "front" and up_kind not in ("hoodie",):  # neckline
        neck_depth = 0.045 if up_kind in ("tank top", "shirt", "jacket", "coat") else 0.025
        cv.profile([y_sh - 0.006, y_sh + neck_depth], [0, 0], [rx * 0.75, 0.004], FACE, skin)


def _draw_head(cv: Canvas, bd: _Body) -> tuple[float, float, float]:
    """Face, ears or nose, eyes, mouth and beard; returns the head's centre x, x radius and eye height."""
    side, d, view, rx, ry, y_head, skin, hair = bd.side, bd.d, bd.view, bd.rx, bd.ry, bd.y_head, bd.skin, bd.hair
    hcx = d * 0.01 if side else 0.0
    hrx = rx * (1.08 if side else 1.0)
    cv.ellipse((hcx, y_head), hrx, ry, FACE, skin)
    if not side:
        for sgn in (-1.0, 1.0):
            cv.ellipse((sgn * rx * 0.98, y_head + 0.1 * ry), rx * 0.2, ry * 0.26, FACE, skin)
    else:
        cv.ellipse((hcx + d * hrx * 0.92, y_head + 0.15 * ry), rx * 0.22, ry * 0.18, FACE, skin)  # nose
        cv.ellipse((hcx - d * hrx * 0.1, y_head + 0.1 * ry), rx * 0.18, ry * 0.25, FACE, _darker(skin, 0.9))
    eye = solid((0.08, 0.06, 0.06), shading=0.0)
    eye_y = y_head + 0.02 * ry
    if view == "front":
        for sgn in (-1.0, 1.0):
            cv.ellipse((sgn * rx * 0.4, eye_y), 0.0065, 0.0065, FACE, eye)
        cv.capsule((-rx * 0.25, y_head + 0.55 * ry), (rx * 0.25, y_head + 0.55 * ry), 0.004, 0.004, FACE,
                   _darker(skin, 0.7))
    elif side:
        cv.ellipse((hcx + d * hrx * 0.55, eye_y), 0.006, 0.006, FACE, eye)

    # beard
    if bd.ident.beard and view != "back":
        def below_mouth(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            return v > y_head + 0.3 * ry

        bx = hcx + (d * hrx * 0.25 if side else 0.0)
        cv.ellipse((bx, y_head + 0.2 * ry), hrx * (0.85 if side else 0.95), ry * 0.85, HAIR, hair, clip=below_mouth)
    return hcx, hrx, eye_y


def _draw_hair(cv: Canvas, bd: _Body, hcx: float, hrx: float) -> None:
    side, d, view, rx, ry, y_head, y_sh, hair = bd.side, bd.d, bd.view, bd.rx, bd.ry, bd.y_head, bd.y_sh, bd.hair
    style = bd.ident.hair_style
    long_hair = style == "long"
    if style == "bald":
        return
    big = 1.3 if style == "curly" else 1.07
    hairline = {"front": -0.3, "back": 0.55}.get(view, -0.3)
    back_line = 0.55 if style != "curly" else 0.7

    def cap(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        rel_v = (v - y_head) / ry
        if side:
            behind = (u - hcx) * d < 0.15 * hrx
            return (rel_v < hairline) | (behind & (rel_v < back_line))
        return rel_v < hairline

    cv.ellipse((hcx - (d * 0.006 if side else 0.0), y_head - 0.006), hrx * big, ry * big * 0.98, HAIR, hair,
               clip=cap)
    if view == "front" and style in ("long", "curly"):  # hair framing the face
        for sgn in (-1.0, 1.0):
            cv.capsule((sgn * rx * 0.95, y_head - 0.3 * ry), (sgn * rx * 1.02, y_head + 0.6 * ry),
                       0.012 * big, 0.01, HAIR, hair)
    if long_hair and view == "back":
        cv.profile([y_head, y_sh + 0.02, y_sh + 0.12], [0, 0, 0], [rx * 1.1, rx * 1.2, rx * 1.1], HAIR, hair)
    if long_hair and side:
        cv.profile([y_head, y_sh + 0.02, y_sh + 0.1], [hcx - d * rx * 0.55] * 3, [rx * 0.55, rx * 0.6, rx * 0.5],
                   HAIR, hair)
    if style == "ponytail":
        if view == "back":
            cv.capsule((0.0, y_head + 0.2 * ry), (0.0, y_sh + 0.05), 0.02, 0.012, HAIR, hair)
        elif side:
            cv.capsule((hcx - d * hrx * 0.95, y_head - 0.1 * ry), (hcx - d * (hrx + 0.03), y_head + ry + 0.04),
                       0.019, 0.011, HAIR, hair)
    if style == "bun":
        bc = (hcx - d * hrx * 0.75, y_head - 0.7 * ry) if side else (0.0, y_head - ry * 0.95)
        cv.ellipse(bc, 0.027, 0.024, HAIR, hair)


def _draw_glasses(cv: Canvas, bd: _Body, hcx: float, hrx: float, eye_y: float) -> None:
    ident, view, d, rx = bd.ident, bd.view, bd.d, bd.rx
    if ident.glasses and view != "back":
        frame = solid(ident.frame, shading=0.0)
        if view == "front":
            for sgn in (-1.0, 1.0):
                cv.ellipse((sgn * rx * 0.4, eye_y), 0.016, 0.012, GLASSES, frame)
                cv.ellipse((sgn * rx * 0.4, eye_y), 0.011, 0.0075, GLASSES, solid((0.55, 0.6, 0.65), 0.0))
            cv.capsule((-rx * 0.2, eye_y), (rx * 0.2, eye_y), 0.003, 0.003, GLASSES, frame)
        else:
            gx = hcx + d * hrx * 0.62
            cv.ellipse((gx, eye_y), 0.01, 0.012, GLASSES, frame)
            cv.capsule((gx, eye_y), (hcx - d * hrx * 0.2, eye_y - 0.004), 0.0028, 0.0028, GLASSES, frame)
