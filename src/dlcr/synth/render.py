"""A tiny vectorised rasteriser that draws one pedestrian with its LIP label map.

The person is a stack of primitives (tapered capsules for limbs, ellipses for head and shoes,
row-wise profiles for torso, skirt and hair), painted back to front at ``supersample`` times the
output size; each primitive is evaluated only inside its bounding box. Every painted pixel gets a
colour (garment colour and pattern in *body* coordinates, so stripes move with the person, times a
cylinder-like shading) and a LIP label. The supersampled person is box-filtered to the output size
(anti-aliasing), laid over the camera's background, and the camera's illumination, colour cast,
blur and noise are applied. The label map takes the majority label of each output pixel's samples.

Person units: y = 0 at the top of the head, y = 1 at the soles, x = 0 on the body axis.

The rasteriser (:class:`Fill`, :class:`Canvas`) is :mod:`dlcr.synth.canvas`, the person
(:class:`Pose`, :func:`draw_person`) :mod:`dlcr.synth.person`; both are importable from here too.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from dlcr.synth.canvas import Canvas, Clip, Fill, garment_fill, solid
from dlcr.synth.person import (
    FACE,
    GLASSES,
    HAIR,
    L_ARM,
    L_LEG,
    L_SHOE,
    R_ARM,
    R_LEG,
    R_SHOE,
    Pose,
    draw_person,
)
from dlcr.synth.world import Camera, Identity, Outfit

__all__ = ["FACE", "GLASSES", "HAIR", "L_ARM", "L_LEG", "L_SHOE", "R_ARM", "R_LEG", "R_SHOE", "Canvas", "Clip",
           "Fill", "Pose", "background", "box_down", "draw_person", "garment_fill", "majority_downsample",
           "render_image", "solid"]


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
