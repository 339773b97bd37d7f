"""What exists in the synthetic world: parameters, people, outfits, cameras and the split plan.

Everything is drawn from seeded generators keyed by *what* is drawn (``[seed, kind, pid, ...]``),
never from one shared stream, so a person looks the same whatever the number of ids, and a resumed
run renders exactly the images a fresh run would.

Identity (fixed per person) lives in :class:`Identity`: body proportions, skin tone, hair colour
and style, head size and shape, glasses, beard, stance and arm carriage. Clothes live in
:class:`Outfit` (upper / lower garment type, colour and pattern, shoes), 2-4 per person, drawn from
a palette shared by everybody plus a small pool of "popular" outfits that several people wear, so
that clothes alone do not identify a person.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from dlcr.errors import ConfigError, did_you_mean
from dlcr.synth import palette as pal

VERSION = 1
SPLITS = ("train", "query", "test")


@dataclass(frozen=True)
class WorldParams:
    """Generation parameters; everything not in the public signature is an ``**advanced`` option.

    Defaults (150 ids, seed 0, 128x64) give 100 train / 50 test ids, 301 train outfits, 1,806 train
    images, 322 queries and 1,449 gallery images (about 14 s of CPU to render). The defaults were tuned
    with ``benchmarks/calibrate_synthcc.py``: a small CNN trained from scratch on the originals scores
    SC top-1 95.7 vs CC top-1 14.6 (chance 0.6), and 36.6 CC when trained on recoloured copies too.
    ``reuse_lower`` / ``reuse_shoes`` make wardrobes share items across outfits (more LTCC-like: the
    baseline's CC rises, through the shared items); they are 0 so that a clothes change is a full one.
    """

    ids: int = 150
    seed: int = 0
    height: int = 128
    width: int = 64
    cameras: int = 5
    test_fraction: float = 1 / 3
    min_outfits: int = 2
    max_outfits: int = 4
    train_cams: int = 3  # cameras that see each outfit in train
    train_frames: int = 2  # frames per (outfit, camera) in train
    query_cams: int = 2  # cameras reserved for the queries of each test id
    query_frames: int = 1  # frames per (outfit, query camera)
    gallery_frames: int = 3  # frames per (outfit, gallery camera)
    shared_outfits: float = 0.4  # probability that an outfit comes from the shared popular pool
    reuse_lower: float = 0.0  # probability that a new outfit keeps a lower garment of an earlier one
    reuse_shoes: float = 0.0  # same for the shoes
    vivid: float = 1.0  # weight multiplier of saturated clothes colours (0: neutral clothing only)
    supersample: int = 2  # anti-aliasing factor
    noise: float = 1.0  # multiplier of every camera's sensor noise
    blur: float = 1.0  # multiplier of every camera's blur

    @classmethod
    def build(cls, **kw: object) -> WorldParams:
        names = [f.name for f in dataclasses.fields(cls)]
        for k in kw:
            if k not in names:
                raise ConfigError(f"unknown synthcc option {k!r}{did_you_mean(k, names)}")
        p = cls(**kw)  # type: ignore[arg-type]
        p.validate()
        return p

    def validate(self) -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise ConfigError(f"synthcc: {msg}")

        need(self.ids >= 2, f"ids must be >= 2 (one train and one test id), got {self.ids}")
        need(self.height >= 32 and self.width >= 16, f"image size must be at least 32x16, got {self.height}x{self.width}")
        need(2 <= self.min_outfits <= self.max_outfits <= 9, "outfits per person must satisfy 2 <= min <= max <= 9")
        need(1 <= self.query_cams < self.cameras, "query_cams must be >= 1 and leave a gallery camera")
        need(1 <= self.train_cams <= self.cameras, "train_cams must be between 1 and cameras")
        need(self.cameras <= 9, "at most 9 cameras")
        need(0.0 < self.test_fraction < 1.0, "test_fraction must be in (0, 1)")
        need(min(self.train_frames, self.query_frames, self.gallery_frames) >= 1, "frame counts must be >= 1")
        need(1 <= self.supersample <= 4, "supersample must be 1..4")
        need(0.0 <= self.shared_outfits <= 1.0, "shared_outfits must be in [0, 1]")
        need(self.vivid >= 0.0, "vivid must be >= 0")

    @property
    def n_test(self) -> int:
        return min(self.ids - 1, max(1, round(self.ids * self.test_fraction)))

    def to_json(self) -> dict[str, object]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class Identity:
    """Body and face of one person, in person units (0 = top of the head, 1 = the soles)."""

    pid: int
    head_rx: float
    head_ry: float
    neck: float
    shoulder: float  # half-width of the shoulders (front view)
    hip: float  # half-width of the hips
    hip_y: float  # height of the hip joint: smaller = longer legs
    build: float  # limb and torso thickness factor
    arm: float  # arm length factor
    arm_spread: float  # how far the hands hang away from the body
    stance: float  # half-distance between the feet (front view)
    stride: float  # walking stride (side view)
    skin: tuple[float, float, float]
    hair_name: str
    hair: tuple[float, float, float]
    hair_style: str
    glasses: bool
    beard: bool
    frame: tuple[float, float, float]  # colour of the glasses frame


def sample_identity(seed: int, pid: int) -> Identity:
    rng = np.random.default_rng([seed, 1, pid])
    u = rng.uniform
    t = u(0.0, 1.0)
    skin = tuple(
        float(np.clip((a + (b - a) * t) / 255.0 + rng.normal(0, 0.02), 0, 1))
        for a, b in zip(pal.SKIN_LIGHT, pal.SKIN_DARK, strict=True)
    )
    style = str(rng.choice(pal.HAIR_STYLES, p=[0.3, 0.2, 0.12, 0.1, 0.12, 0.16]))
    hair_w = np.array([0.3, 0.2, 0.15, 0.09, 0.14, 0.08, 0.04, 0.06, 0.06, 0.06, 0.06, 0.06, 0.06])
    hair_name = str(rng.choice(list(pal.HAIR_RGB), p=hair_w / hair_w.sum()))
    hair = tuple(float(np.clip(c / 255.0 + rng.normal(0, 0.025), 0, 1)) for c in pal.HAIR_RGB[hair_name])
    head_ry = u(0.058, 0.076)
    frame_col = [(0.08, 0.08, 0.09), (0.45, 0.25, 0.12), (0.7, 0.7, 0.72), (0.55, 0.1, 0.12)]
    return Identity(
        pid=pid,
        head_rx=head_ry * u(0.72, 0.95),
        head_ry=head_ry,
        neck=u(0.02, 0.045),
        shoulder=u(0.09, 0.15),
        hip=u(0.075, 0.11),
        hip_y=u(0.47, 0.56),
        build=u(0.75, 1.4),
        arm=u(0.88, 1.1),
        arm_spread=u(0.0, 0.045),
        stance=u(0.005, 0.05),
        stride=u(0.07, 0.15),
        skin=skin,  # type: ignore[arg-type]
        hair_name=hair_name,
        hair=hair,  # type: ignore[arg-type]
        hair_style=style,
        glasses=bool(u() < 0.25),
        beard=bool(style != "long" and u() < 0.2),
        frame=frame_col[int(rng.integers(len(frame_col)))],
    )


# ------------------------------------------------------------------------------------------ outfits


@dataclass(frozen=True)
class Garment:
    """One garment: ``kind`` is a description word; colours are names of :data:`pal.CLOTHES_RGB`."""

    kind: str
    colour: str
    pattern: str = "plain"  # a key of pal.PATTERN_WORDS
    second: str | None = None  # pattern colour named in the description (None: the contrast rule)
    tint: tuple[float, float, float] = (0.0, 0.0, 0.0)  # small per-garment colour jitter

    def describe(self) -> str:
        words = [self.colour]
        if self.second is not None:
            words += ["and", self.second]
        if self.pattern != "plain":
            words.append(self.pattern)
        words.append(self.kind)
        return " ".join(words)

    def rgb(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """(main, pattern) colours in [0, 1]."""
        main = tuple(float(np.clip(c + d, 0, 1)) for c, d in zip(pal.rgb01(self.colour), self.tint, strict=True))
        second = pal.rgb01(self.second) if self.second else pal.contrast_rgb(pal.rgb01(self.colour))
        return main, second  # type: ignore[return-value]


@dataclass(frozen=True)
class Outfit:
    upper: Garment
    lower: Garment
    footwear: Garment

    def describe(self) -> dict[str, str]:
        return {"upper": self.upper.describe(), "lower": self.lower.describe(), "footwear": self.footwear.describe()}


def _pattern(rng: np.random.Generator, probs: tuple[float, float, float, float]) -> str:
    return str(rng.choice(list(pal.PATTERN_WORDS), p=probs))


def _pick(rng: np.random.Generator, weights: dict[str, float], vivid: float, exclude: str | None = None) -> str:
    names = [n for n in weights if n != exclude]
    w = np.array([weights[n] * (vivid if n in pal.VIVID else 1.0) for n in names], dtype=np.float64)
    return names[int(rng.choice(len(names), p=w / w.sum()))]


def _garment(rng: np.random.Generator, kind: str, colours: dict[str, float], probs, vivid: float) -> Garment:
    colour = _pick(rng, colours, vivid)
    pattern = _pattern(rng, probs)
    second = None
    if pattern != "plain" and rng.uniform() < 0.45:
        second = _pick(rng, pal.UPPER_COLOURS, vivid, exclude=colour)
    tint = tuple(float(x) for x in rng.normal(0.0, 0.025, 3))
    return Garment(kind, colour, pattern, second, tint)  # type: ignore[arg-type]


def sample_outfit(rng: np.random.Generator, vivid: float = 1.0) -> Outfit:
    upper_kind = str(rng.choice(list(pal.UPPER_KINDS), p=[0.3, 0.08, 0.17, 0.15, 0.1, 0.12, 0.08]))
    upper = _garment(rng, upper_kind, pal.UPPER_COLOURS, (0.7, 0.12, 0.1, 0.08), vivid)
    lower_kind = str(rng.choice(list(pal.LOWER_KINDS), p=[0.35, 0.3, 0.18, 0.17]))
    if lower_kind == "jeans":
        lower = _garment(rng, "jeans", pal.JEANS_COLOURS, (1.0, 0.0, 0.0, 0.0), 1.0)
    else:
        lower = _garment(rng, lower_kind, pal.LOWER_COLOURS, (0.88, 0.04, 0.06, 0.02), vivid)
    shoes = _garment(rng, str(rng.choice(pal.FOOTWEAR_KINDS)), pal.SHOE_COLOURS, (1.0, 0.0, 0.0, 0.0), vivid)
    return Outfit(upper, lower, shoes)


def popular_outfits(seed: int, vivid: float, n: int = 20) -> list[Outfit]:
    """A small pool of outfits that several people wear (the look-alike distractors)."""
    rng = np.random.default_rng([seed, 5])
    return [sample_outfit(rng, vivid) for _ in range(n)]


def sample_outfits(seed: int, pid: int, params: WorldParams, pool: list[Outfit]) -> list[Outfit]:
    """2-4 clearly different outfits of one person (no two share upper colour and kind)."""
    rng = np.random.default_rng([seed, 3, pid])
    n = int(rng.integers(params.min_outfits, params.max_outfits + 1))
    out: list[Outfit] = []
    while len(out) < n:
        o = pool[int(rng.integers(len(pool)))] if rng.uniform() < params.shared_outfits else sample_outfit(rng, params.vivid)
        keep_lower, keep_shoes = rng.uniform(size=2) < (params.reuse_lower, params.reuse_shoes)
        if out and keep_lower:  # a wardrobe: the same trousers with another top
            o = dataclasses.replace(o, lower=out[int(rng.integers(len(out)))].lower)
        if out and keep_shoes:
            o = dataclasses.replace(o, footwear=out[int(rng.integers(len(out)))].footwear)
        clash = any(
            (o.upper.colour == p.upper.colour and o.upper.kind == p.upper.kind)
            or (o.upper.colour == p.upper.colour and o.lower.colour == p.lower.colour)
            for p in out
        )
        if not clash:
            out.append(o)
    return out


# ------------------------------------------------------------------------------------------ cameras


@dataclass(frozen=True)
class Camera:
    camid: int
    wall: tuple[tuple[float, float, float], tuple[float, float, float]]  # gradient top -> horizon
    floor: tuple[tuple[float, float, float], tuple[float, float, float]]  # horizon -> bottom
    horizon: float  # fraction of the image height
    texture: str  # "plain" | "pillars" | "bricks" | "tiles" | "blinds"
    texture_period: float  # fraction of the image width
    props: int  # number of background rectangles (doors, signs)
    gain: float
    cast: tuple[float, float, float]
    light: float  # -1..1: side the light comes from
    views: tuple[float, float, float]  # P(front), P(back), P(side)
    scale: float  # person height as a fraction of the image height
    blur: float  # Gaussian sigma in output pixels
    noise: float  # std of sensor noise in [0, 1] units
    scene: int  # seed of the background props


def sample_camera(seed: int, camid: int) -> Camera:
    rng = np.random.default_rng([seed, 2, camid])
    u = rng.uniform

    def muted(lo: float, hi: float) -> tuple[float, float, float]:
        base = u(lo, hi)
        return tuple(float(np.clip(base + rng.normal(0, 0.08), 0, 1)) for _ in range(3))  # type: ignore[return-value]

    dominant = int(rng.integers(3))
    views = np.full(3, 0.2)
    views[dominant] = 0.6
    return Camera(
        camid=camid,
        wall=(muted(0.3, 0.8), muted(0.3, 0.8)),
        floor=(muted(0.2, 0.6), muted(0.25, 0.7)),
        horizon=u(0.55, 0.8),
        texture=str(rng.choice(["plain", "pillars", "bricks", "tiles", "blinds"])),
        texture_period=u(0.15, 0.45),
        props=int(rng.integers(0, 4)),
        gain=u(0.85, 1.1),
        cast=tuple(float(x) for x in u(0.94, 1.06, 3)),  # type: ignore[arg-type]
        light=u(-1.0, 1.0),
        views=tuple(float(x) for x in views),  # type: ignore[arg-type]
        scale=u(0.8, 0.92),
        blur=u(0.25, 0.85),
        noise=u(0.006, 0.02),
        scene=int(rng.integers(2**31)),
    )


# --------------------------------------------------------------------------------------- split plan


@dataclass(frozen=True)
class ImageSpec:
    """One image to render."""

    split: str
    pid: int
    clothes: int  # 1-based outfit index of the person
    cam: int  # 1-based
    frame: int

    @property
    def name(self) -> str:
        return f"{self.pid:03d}_{self.clothes}_c{self.cam}_{self.frame:03d}.png"

    @property
    def clothes_key(self) -> str:
        return f"{self.pid:03d}_{self.clothes}"


@dataclass(frozen=True)
class World:
    params: WorldParams
    identities: dict[int, Identity]
    outfits: dict[int, list[Outfit]]
    cameras: dict[int, Camera]
    train_ids: tuple[int, ...]
    test_ids: tuple[int, ...]
    plan: tuple[ImageSpec, ...]


def build_world(params: WorldParams) -> World:
    """Sample every person, outfit and camera and decide which image goes to which split.

    Train: each outfit on ``train_cams`` random cameras, ``train_frames`` frames each. Test: each
    test id gets ``query_cams`` query cameras; every outfit is seen ``query_frames`` times on each of
    them (queries) and ``gallery_frames`` times on every other camera (gallery). So every query has a
    same-clothes and a clothes-changing true match in the gallery, on other cameras.
    """
    s = params.seed
    pids = list(range(1, params.ids + 1))
    pool = popular_outfits(s, params.vivid)
    identities = {p: sample_identity(s, p) for p in pids}
    outfits = {p: sample_outfits(s, p, params, pool) for p in pids}
    cameras = {c: sample_camera(s, c) for c in range(1, params.cameras + 1)}
    order = np.random.default_rng([s, 4, params.ids]).permutation(pids)
    test_ids = tuple(sorted(int(p) for p in order[: params.n_test]))
    train_ids = tuple(sorted(int(p) for p in order[params.n_test :]))
    cams = np.arange(1, params.cameras + 1)
    plan: list[ImageSpec] = []
    for pid in train_ids:
        rng = np.random.default_rng([s, 6, pid])
        for k in range(1, len(outfits[pid]) + 1):
            for cam in sorted(rng.choice(cams, size=params.train_cams, replace=False)):
                plan += [ImageSpec("train", pid, k, int(cam), f) for f in range(params.train_frames)]
    for pid in test_ids:
        rng = np.random.default_rng([s, 6, pid])
        qcams = set(int(c) for c in rng.choice(cams, size=params.query_cams, replace=False))
        for k in range(1, len(outfits[pid]) + 1):
            for cam in map(int, cams):
                if cam in qcams:
                    plan += [ImageSpec("query", pid, k, cam, f) for f in range(params.query_frames)]
                else:
                    plan += [ImageSpec("test", pid, k, cam, f) for f in range(params.gallery_frames)]
    return World(params, identities, outfits, cameras, train_ids, test_ids, tuple(plan))
