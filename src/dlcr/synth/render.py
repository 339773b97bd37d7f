"""A tiny vectorised rasteriser that draws one pedestrian with its LIP label map.

The person is a stack of primitives (tapered capsules for limbs, ellipses for head and shoes,
row-wise profiles for torso, skirt and hair), painted back to front at ``supersample`` times the
output size; each primitive is evaluated only inside its bounding box. Every painted pixel gets a
colour (garment colour and pattern in *body* coordinates, so stripes move with the person, times a
cylinder-like shading) and a LIP label. The supersampled person is box-filtered to the output size
(anti-aliasing), laid over the camera's background, and the camera's illumination, colour cast,
blur and noise are applied. The label map takes the majority label of each output pixel's samples.

Person units: y = 0 at the top of the head, y = 1 at the soles, x = 0 on the body axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from dlcr import lip
from dlcr.synth import palette as pal
from dlcr.synth.world import Camera, Garment, Identity, Outfit

HAIR, GLASSES, FACE, L_ARM, R_ARM = lip.HAIR, lip.SUNGLASSES, lip.FACE, lip.LEFT_ARM, lip.RIGHT_ARM  # LIP ids drawn
L_LEG, R_LEG, L_SHOE, R_SHOE = lip.LEFT_LEG, lip.RIGHT_LEG, lip.LEFT_SHOE, lip.RIGHT_SHOE

Clip = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class Fill:
    """Colour source of a primitive: a plain colour or a pattern in person units."""

    main: np.ndarray
    second: np.ndarray | None = None
    pattern: str = "plain"
    period: float = 0.05
    phase: float = 0.0
    shading: float = 0.35  # darkening towards a primitive's silhouette

    def grid(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Colours at the points (u (1, w), v (h, 1)): (h, w, 3), or (1, 1, 3) for a plain fill."""
        if self.pattern == "plain" or self.second is None:
            return self.main[None, None, :]
        p = self.period
        if self.pattern == "stripes":
            on = np.floor((v + self.phase) / (p / 2)) % 2 == 1
        elif self.pattern == "checks":
            on = (np.floor((v + self.phase) / (p / 2)) + np.floor((u + 1.0) / (p / 2))) % 2 == 1
        else:  # dots
            cy = (v + self.phase) % p - p / 2
            cx = (u + 1.0) % p - p / 2
            on = cy * cy + cx * cx <= (0.28 * p) ** 2
        on = np.broadcast_to(on, (v.shape[0], u.shape[1]))
        return np.where(on[..., None], self.second[None, None, :], self.main[None, None, :])


def solid(rgb: tuple[float, float, float] | np.ndarray, shading: float = 0.35) -> Fill:
    return Fill(np.asarray(rgb, dtype=np.float32), shading=shading)


def garment_fill(g: Garment, period: float, phase: float) -> Fill:
    main, second = g.rgb()
    return Fill(
        np.asarray(main, np.float32),
        np.asarray(second, np.float32),
        pal.PATTERN_WORDS[g.pattern],
        period,
        phase,
    )


class Canvas:
    """Supersampled person layer: premultiplied colour, coverage and labels."""

    def __init__(self, h: int, w: int, cx: float, top: float, scale: float, light: float):
        self.h, self.w = h, w
        self.labels = np.zeros((h, w), np.uint8)
        self.rgb = np.zeros((h, w, 3), np.float32)
        self.xs = np.arange(w, dtype=np.float32) + 0.5
        self.ys = np.arange(h, dtype=np.float32) + 0.5
        self.cx, self.top, self.s, self.light = cx, top, scale, light

    # person units <-> pixels
    def px(self, u: float) -> float:
        return self.cx + u * self.s

    def py(self, v: float) -> float:
        return self.top + v * self.s

    def _win(self, x0: float, x1: float, y0: float, y1: float):
        ix0, ix1 = max(int(math.floor(x0)), 0), min(int(math.ceil(x1)) + 1, self.w)
        iy0, iy1 = max(int(math.floor(y0)), 0), min(int(math.ceil(y1)) + 1, self.h)
        if ix0 >= ix1 or iy0 >= iy1:
            return None
        return (slice(iy0, iy1), slice(ix0, ix1)), self.xs[None, ix0:ix1], self.ys[iy0:iy1, None]

    def _paint(self, win, mask: np.ndarray, t: np.ndarray, label: int, fill: Fill, clip: Clip | None) -> None:
        sl, x, y = win
        u = (x - self.cx) / self.s  # (1, w) person units
        v = (y - self.top) / self.s  # (h, 1)
        if clip is not None:
            mask = mask & clip(u, v)
        if not mask.any():
            return
        mask = np.broadcast_to(mask, (y.shape[0], x.shape[1]))
        shade = (1.0 - fill.shading * t * t) + 0.12 * self.light * np.clip(u / 0.15, -1.0, 1.0)
        col = fill.grid(u, v) * shade[..., None]
        np.copyto(self.rgb[sl], col, where=mask[..., None])
        np.copyto(self.labels[sl], np.uint8(label), where=mask)

    # primitives, all in person units
    def capsule(self, a: tuple[float, float], b: tuple[float, float], r0: float, r1: float, label: int,
                fill: Fill, clip: Clip | None = None) -> None:
        x0, y0, x1, y1 = self.px(a[0]), self.py(a[1]), self.px(b[0]), self.py(b[1])
        R0, R1 = r0 * self.s, r1 * self.s
        rm = max(R0, R1)
        win = self._win(min(x0, x1) - rm, max(x0, x1) + rm, min(y0, y1) - rm, max(y0, y1) + rm)
        if win is None:
            return
        _, x, y = win
        dx, dy = x1 - x0, y1 - y0
        l2 = max(dx * dx + dy * dy, 1e-6)
        s = np.clip(((x - x0) * dx + (y - y0) * dy) / l2, 0.0, 1.0)
        r = R0 + (R1 - R0) * s
        d = np.hypot(x - (x0 + s * dx), y - (y0 + s * dy))
        self._paint(win, d <= r, d / r, label, fill, clip)

    def ellipse(self, c: tuple[float, float], rx: float, ry: float, label: int, fill: Fill,
                clip: Clip | None = None) -> None:
        cx, cy, RX, RY = self.px(c[0]), self.py(c[1]), rx * self.s, ry * self.s
        win = self._win(cx - RX, cx + RX, cy - RY, cy + RY)
        if win is None:
            return
        _, x, y = win
        q = ((x - cx) / RX) ** 2 + ((y - cy) / RY) ** 2
        self._paint(win, q <= 1.0, np.sqrt(np.minimum(q, 1.0)), label, fill, clip)

    def profile(self, ys: list[float], cs: list[float], hws: list[float], label: int, fill: Fill,
                clip: Clip | None = None) -> None:
        """Rows between ys[0] and ys[-1]; centre and half-width interpolated between knots."""
        Y = [self.py(v) for v in ys]
        C = [self.px(c) for c in cs]
        H = [hw * self.s for hw in hws]
        x_lo = min(c - h for c, h in zip(C, H, strict=True))
        x_hi = max(c + h for c, h in zip(C, H, strict=True))
        win = self._win(x_lo, x_hi, Y[0], Y[-1])
        if win is None:
            return
        _, x, y = win
        yc = y[:, 0]
        c = np.interp(yc, Y, C).astype(np.float32)[:, None]
        hw = np.maximum(np.interp(yc, Y, H).astype(np.float32)[:, None], 1e-3)
        inside_y = ((yc >= Y[0]) & (yc <= Y[-1]))[:, None]
        dist = np.abs(x - c)
        self._paint(win, (dist <= hw) & inside_y, dist / hw, label, fill, clip)


# ------------------------------------------------------------------------------------------- person


@dataclass(frozen=True)
class Pose:
    view: str  # "front" | "back" | "left" | "right" (side views: the way the person faces)
    phase: float  # walking phase in radians


def draw_person(cv: Canvas, ident: Identity, outfit: Outfit, pose: Pose, rng: np.random.Generator) -> None:
    """Paint one person, back to front, into ``cv``."""
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
    ua_len, fa_len = 0.165 * ident.arm, 0.15 * ident.arm

    def limb_labels(sgn: float) -> tuple[int, int, int]:
        """LIP (arm, leg, shoe) labels of the limb on side ``sgn``.

        Front/back views: ``sgn`` is the image side (+x right); the person's left is on the image's
        right in a front view. Side views: ``sgn = +1`` is the near limb, which is the person's right
        one when facing +x and the left one when facing -x.
        """
        is_left = (sgn > 0) == (d < 0) if side else (sgn > 0) == (view == "front")
        return (L_ARM, L_LEG, L_SHOE) if is_left else (R_ARM, R_LEG, R_SHOE)

    # --- joints ------------------------------------------------------------------------------
    legs: list[tuple[float, tuple[float, float], tuple[float, float], tuple[float, float]]] = []
    arms: list[tuple[float, tuple[float, float], tuple[float, float], tuple[float, float]]] = []
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

    # --- layers --------------------------------------------------------------------------------
    long_hair = ident.hair_style == "long"
    if long_hair and view == "front":  # hair falling behind the shoulders
        hw_hair = rx * 1.15
        cv.profile([y_head, y_sh + 0.02, y_sh + 0.11], [0, 0, 0], [hw_hair, hw_hair * 1.12, hw_hair * 1.05], HAIR, hair)

    def draw_leg(sgn: float, far: bool) -> None:
        arm_l, leg_l, shoe_l = limb_labels(sgn)
        _, hip, knee, ankle = next(L for L in legs if L[0] == sgn)
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

    def draw_arm(sgn: float, far: bool, covered: str) -> None:
        arm_l, _, _ = limb_labels(sgn)
        _, sh, el, wr = next(A for A in arms if A[0] == sgn)
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

    # far limbs first in side views
    if side:
        draw_arm(-1.0, True, sleeves)
        draw_leg(-1.0, True)
        draw_leg(1.0, False)
    else:
        draw_leg(-1.0, False)
        draw_leg(1.0, False)

    # lower garment body part (waist to crotch) and skirt
    depth = 0.62  # side-view width factor
    wf = depth if side else 1.0
    kind = outfit.lower.kind
    cx_side = d * 0.006 if side else 0.0
    if kind == "skirt":
        flare = 1.55 if not side else 1.9
        cv.profile([y_waist + 0.01, y_hip, y_knee + 0.02], [cx_side] * 3,
                   [hw * 0.95 * wf, hw * 1.1 * wf, hw * flare * wf], lo_label, lo_fill)
    else:
        cv.profile([y_waist + 0.01, y_hip, y_hip + 0.06], [cx_side] * 3,
                   [hw * 0.98 * wf, (hw + 0.008) * wf, (hw - 0.002) * wf], lo_label, lo_fill)

    # torso (upper garment)
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
            cv.ellipse((sgn * (sw_t - 0.025), y_sh + 0.012), 0.03, 0.022, limb_labels(sgn)[0], skin)
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

    # neck
    cv.capsule((0.0, y_chin - 0.01), (0.0, y_sh + 0.004), rx * 0.48, rx * 0.52, FACE, skin)
    if view == "front" and up_kind not in ("hoodie",):  # neckline
        neck_depth = 0.045 if up_kind in ("tank top", "shirt", "jacket", "coat") else 0.025
        cv.profile([y_sh - 0.006, y_sh + neck_depth], [0, 0], [rx * 0.75, 0.004], FACE, skin)

    # near limbs / both arms
    if side:
        draw_arm(1.0, False, sleeves)
    else:
        draw_arm(-1.0, False, sleeves)
        draw_arm(1.0, False, sleeves)

    # --- head ------------------------------------------------------------------------------------
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
    if ident.beard and view != "back":
        def below_mouth(u: np.ndarray, v: np.ndarray) -> np.ndarray:
            return v > y_head + 0.3 * ry

        bx = hcx + (d * hrx * 0.25 if side else 0.0)
        cv.ellipse((bx, y_head + 0.2 * ry), hrx * (0.85 if side else 0.95), ry * 0.85, HAIR, hair, clip=below_mouth)

    # hair
    style = ident.hair_style
    if style != "bald":
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

    # glasses
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


def _darker(f: Fill, k: float = 0.82) -> Fill:
    return Fill(f.main * k, None if f.second is None else f.second * k, f.pattern, f.period, f.phase, f.shading)


# ----------------------------------------------------------------------------------------- camera


_SCENES: dict[tuple[Camera, int, int], np.ndarray] = {}


def _scene(cam: Camera, h: int, w: int) -> np.ndarray:
    """The camera's static scene, two image widths wide (cached: it never changes)."""
    key = (cam, h, w)
    if key in _SCENES:
        return _SCENES[key]
    scene_rng = np.random.default_rng(cam.scene)
    W = 2 * w
    y = (np.arange(h, dtype=np.float32)[:, None] + 0.5) / h
    x = (np.arange(W, dtype=np.float32)[None, :] + 0.5) / w  # in image widths
    hz = cam.horizon
    t_wall = np.clip(y / hz, 0, 1)[..., None]
    t_floor = np.clip((y - hz) / max(1 - hz, 1e-3), 0, 1)[..., None]
    wall = np.asarray(cam.wall[0]) * (1 - t_wall) + np.asarray(cam.wall[1]) * t_wall
    floor = np.asarray(cam.floor[0]) * (1 - t_floor) + np.asarray(cam.floor[1]) * t_floor
    img = np.broadcast_to(np.where((y < hz)[..., None], wall, floor), (h, W, 3)).astype(np.float32)
    p = cam.texture_period
    above = np.broadcast_to(y < hz, (h, W))
    if cam.texture == "pillars":
        img[above & (((x / p) % 1.0) < 0.3)] *= 0.82
    elif cam.texture == "bricks":
        offs = (np.floor(y / (p * 0.25)) % 2) * 0.5
        line = (((y / (p * 0.25)) % 1.0) < 0.12) | ((((x / (p * 0.5)) + offs) % 1.0) < 0.06)
        img[above & line] *= 0.78
    elif cam.texture == "tiles":
        line = (((y / (p * 0.5)) % 1.0) < 0.06) | (((x / (p * 0.5)) % 1.0) < 0.06)
        img[above & line] *= 1.12
    elif cam.texture == "blinds":
        img[above & (((y / (p * 0.12)) % 1.0) < 0.35)] *= 0.9
    for _ in range(cam.props):  # doors, posters, windows
        x0 = scene_rng.uniform(0, 2 * 0.9)
        pw = scene_rng.uniform(0.15, 0.45)
        y0 = scene_rng.uniform(0.05, hz * 0.7)
        ph = scene_rng.uniform(0.15, hz - y0)
        col = scene_rng.uniform(0.1, 0.9, 3).astype(np.float32)
        box = (x >= x0) & (x < x0 + pw) & (y >= y0) & (y < y0 + ph)
        img[box] = img[box] * 0.35 + col * 0.65
    img[np.broadcast_to(np.abs(y - hz) < 0.6 / h, (h, W))] *= 0.75  # skirting line
    img.setflags(write=False)
    if len(_SCENES) > 64:
        _SCENES.clear()
    _SCENES[key] = img
    return img


def background(cam: Camera, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """The camera's scene (H, W, 3) in [0, 1], with a per-image pan and exposure jitter."""
    scene = _scene(cam, h, w)
    off = int(rng.integers(0, scene.shape[1] - w + 1))
    return scene[:, off : off + w] * np.float32(rng.uniform(0.94, 1.06))


def box_down(a: np.ndarray, ss: int) -> np.ndarray:
    """Mean of each ss x ss block (the anti-aliasing filter)."""
    if ss == 1:
        return a.astype(np.float32)
    acc = None
    for dy in range(ss):
        for dx in range(ss):
            part = a[dy::ss, dx::ss]
            acc = part.astype(np.float32) if acc is None else acc + part
    return acc / np.float32(ss * ss)


def render_image(ident: Identity, outfit: Outfit, cam: Camera, *, height: int, width: int, rng: np.random.Generator,
                 supersample: int = 2, noise: float = 1.0, blur: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Render one image of ``ident`` in ``outfit`` seen by ``cam``: (RGB uint8, LIP labels uint8)."""
    ss = supersample
    H, W = height * ss, width * ss
    v = rng.choice(3, p=np.asarray(cam.views) / sum(cam.views))
    view = ("front", "back", "side")[int(v)]
    if view == "side":
        view = "left" if rng.uniform() < 0.5 else "right"
    pose = Pose(view, float(rng.uniform(0, 2 * math.pi)))
    frac = cam.scale * float(rng.uniform(0.96, 1.04))
    scale = H * frac
    top = (H - scale) * float(rng.uniform(0.35, 0.65))
    cx = W * (0.5 + float(rng.uniform(-0.07, 0.07)))
    cv = Canvas(H, W, cx, top, scale, cam.light)
    draw_person(cv, ident, outfit, pose, rng)

    # box-filter the supersampled person layer (premultiplied colour + coverage)
    prgb = box_down(cv.rgb, ss)
    alpha = box_down(cv.labels > 0, ss)[..., None]
    bg = background(cam, height, width, rng)
    # contact shadow under the feet
    yy = (np.arange(height, dtype=np.float32)[:, None] + 0.5) - (top + scale) / ss
    xx = (np.arange(width, dtype=np.float32)[None, :] + 0.5) - cx / ss
    shadow = np.exp(-((xx / (0.12 * scale / ss)) ** 2) - ((yy / (0.015 * scale / ss + 0.5)) ** 2))
    bg = bg * (1.0 - 0.35 * shadow[..., None])
    img = bg * (1.0 - alpha) + prgb
    img = img * (cam.gain * np.asarray(cam.cast, np.float32))
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    sigma = cam.blur * blur
    if sigma > 0.05:
        u8 = np.asarray(Image.fromarray(u8).filter(ImageFilter.GaussianBlur(sigma)))
    if noise > 0:
        n = rng.standard_normal(u8.shape, dtype=np.float32) * np.float32(cam.noise * noise * 255.0)
        u8 = np.clip(np.rint(u8 + n), 0, 255).astype(np.uint8)
    labels = majority_downsample(cv.labels, ss)
    return u8, labels


def majority_downsample(labels: np.ndarray, ss: int) -> np.ndarray:
    """The most frequent label of each ss x ss block (ties: the first sample in row-major order)."""
    if ss == 1:
        return labels.copy()
    h, w = labels.shape[0] // ss, labels.shape[1] // ss
    out = labels[::ss, ::ss].copy()
    samples = [labels[dy::ss, dx::ss] for dy in range(ss) for dx in range(ss)]
    mixed = np.zeros((h, w), bool)
    for smp in samples[1:]:
        mixed |= smp != out
    if not mixed.any():
        return out
    blocks = np.stack([smp[mixed] for smp in samples], axis=-1)  # only the blocks on an edge
    counts = (blocks[:, :, None] == blocks[:, None, :]).sum(-1)
    out[mixed] = np.take_along_axis(blocks, counts.argmax(-1)[:, None], -1)[:, 0]
    return out
