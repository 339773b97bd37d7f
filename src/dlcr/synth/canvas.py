"""The rasteriser: colour sources (:class:`Fill`) and the supersampled person layer (:class:`Canvas`)
with its primitives (tapered capsules, ellipses, row-wise profiles), in person units.

Person units: y = 0 at the top of the head, y = 1 at the soles, x = 0 on the body axis.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dlcr.synth import palette as pal
from dlcr.synth.world import Garment

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


def _darker(f: Fill, k: float = 0.82) -> Fill:
    return Fill(f.main * k, None if f.second is None else f.second * k, f.pattern, f.period, f.phase, f.shading)
