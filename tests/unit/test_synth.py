"""The synthetic clothes-changing world: layout, determinism, labels, splits, identity, resume."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from dlcr.errors import ConfigError, DatasetError
from dlcr.io.images import read_label_map, read_rgb
from dlcr.synth import contact_sheet, render_world
from dlcr.synth import palette as pal
from dlcr.synth.render import majority_downsample, render_image
from dlcr.synth.world import Camera, Garment, Outfit, WorldParams, build_world, sample_identity

NAME = re.compile(r"(\d+)_(\d+)_c(\d+)_(\d+)\.png")
TINY = {"ids": 6, "height": 64, "width": 32, "train_frames": 1, "gallery_frames": 2}
SPLITS = ("train", "query", "test")
CLOTHES_UPPER, CLOTHES_LOWER, SHOES = {5, 7}, {9, 12}, {18, 19}
ALLOWED = {0, 2, 4, 5, 7, 9, 12, 13, 14, 15, 16, 17, 18, 19}


def _files(root: Path) -> dict[str, bytes]:
    """Every file of a world except world.json (which records timings), by relative path."""
    base = root / "synthcc"
    return {
        str(p.relative_to(base)): p.read_bytes()
        for p in sorted(base.rglob("*"))
        if p.is_file() and p.name != "world.json"
    }


def _records(root: Path, split: str) -> list[tuple[int, int, int, int, Path]]:
    out = []
    for p in sorted((root / "synthcc" / split).iterdir()):
        m = NAME.fullmatch(p.name)
        assert m, p.name
        out.append((*map(int, m.groups()), p))
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("w")
    render_world(root, seed=0, **TINY)
    return root


def test_layout_naming_and_summary(world: Path) -> None:
    base = world / "synthcc"
    meta = json.loads((base / "world.json").read_text())
    assert meta["complete"] is True and meta["params"]["ids"] == 6 and meta["params"]["seed"] == 0
    outfits = json.loads((base / "outfits.json").read_text())
    for split in SPLITS:
        recs = _records(world, split)
        assert recs, split
        for pid, clothes, cam, _frame, p in recs:
            assert f"{pid:03d}_{clothes}" in outfits
            assert 1 <= cam <= 5
            assert (base / "masks" / split / p.name).is_file()
            assert set(outfits[f"{pid:03d}_{clothes}"]) == {"upper", "lower", "footwear"}
        assert sorted(p.name for p in (base / "masks" / split).iterdir()) == sorted(r[-1].name for r in recs)
    summary = meta["summary"]
    assert summary["images"] == {s: len(_records(world, s)) for s in SPLITS}
    # 6 ids -> 2 test ids, 4 train ids; 2-4 outfits each
    assert summary["ids"] == {"train": 4, "query": 2, "test": 2}
    per_pid: dict[int, set[int]] = {}
    for split in SPLITS:
        for pid, clothes, *_ in _records(world, split):
            per_pid.setdefault(pid, set()).add(clothes)
    assert all(2 <= len(c) <= 4 and c == set(range(1, len(c) + 1)) for c in per_pid.values())


def test_same_seed_same_bytes_other_seed_differs(world: Path, tmp_path: Path) -> None:
    render_world(tmp_path / "a", seed=0, **TINY)
    assert _files(tmp_path / "a") == _files(world)
    render_world(tmp_path / "b", seed=1, **TINY)
    other = _files(tmp_path / "b")
    assert other["outfits.json"] != _files(world)["outfits.json"]
    img_hashes = {hashlib.sha1(v).hexdigest() for k, v in _files(world).items() if not k.startswith("masks")}
    assert not img_hashes & {hashlib.sha1(v).hexdigest() for k, v in other.items() if not k.startswith("masks")}


def test_label_maps_match_images(world: Path) -> None:
    params = WorldParams.build(seed=0, **TINY)
    w = build_world(params)
    for split in SPLITS:
        for pid, clothes, _cam, _f, p in _records(world, split):
            img = read_rgb(p)
            lab = read_label_map(world / "synthcc" / "masks" / split / p.name)
            assert img.shape == (64, 32, 3) and lab.shape == (64, 32)
            present = set(np.unique(lab).tolist())
            assert present <= ALLOWED
            assert 13 in present and {14, 15} & present and {16, 17, 18, 19} & present
            assert present & CLOTHES_UPPER and present & CLOTHES_LOWER and present & SHOES
            outfit = w.outfits[pid][clothes - 1]
            assert pal.UPPER_KINDS[outfit.upper.kind][0] in present
            assert pal.LOWER_KINDS[outfit.lower.kind] in present
            if w.identities[pid].hair_style != "bald":
                assert 2 in present
            person = lab > 0
            assert 0.08 < person.mean() < 0.6  # a person, not the whole frame
            assert lab[0].max() == 0 or lab[-1].max() == 0  # feet or head stays inside the frame


def _neutral_camera(**kw) -> Camera:
    base = dict(
        camid=1, wall=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)), floor=((0.4, 0.4, 0.4), (0.4, 0.4, 0.4)), horizon=0.7,
        texture="plain", texture_period=0.3, props=0, gain=1.0, cast=(1.0, 1.0, 1.0), light=0.0,
        views=(1.0, 0.0, 0.0), scale=0.9, blur=0.0, noise=0.0, scene=0,
    )  # fmt: skip
    base.update(kw)
    return Camera(**base)  # type: ignore[arg-type]


def _interior(lab: np.ndarray, labels: set[int]) -> np.ndarray:
    """Pixels whose 3x3 neighbourhood carries only ``labels`` (no anti-aliased edge)."""
    ok = np.isin(lab, list(labels))
    inner = ok.copy()
    inner[1:-1, 1:-1] = np.all([np.roll(np.roll(ok, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)[
        1:-1, 1:-1
    ]
    inner[[0, -1]] = False
    inner[:, [0, -1]] = False
    return inner


def test_garment_pixels_have_the_described_colour() -> None:
    ident = sample_identity(0, 1)
    outfit = Outfit(Garment("sweater", "red"), Garment("trousers", "blue"), Garment("sneakers", "white"))
    img, lab = render_image(ident, outfit, _neutral_camera(), height=128, width=64, rng=np.random.default_rng(0))
    for label, name in ((5, "red"), (9, "blue")):
        px = img[_interior(lab, {label})].astype(float) / 255.0
        assert len(px) > 30
        want = np.asarray(pal.rgb01(name))
        # shading only darkens (1 - 0.35 t^2 >= 0.65): same chromaticity, brightness 0.6..1.05 of the colour
        chroma = px / px.sum(1, keepdims=True)
        assert np.allclose(np.median(chroma, 0), want / want.sum(), atol=0.03)
        ratio = np.median(px.sum(1)) / want.sum()
        assert 0.6 < ratio < 1.05


def test_identity_pixels_do_not_depend_on_the_outfit() -> None:
    ident = dataclasses.replace(sample_identity(0, 3), hair_style="short", glasses=False, beard=False)
    a = Outfit(Garment("t-shirt", "red", "striped"), Garment("jeans", "blue"), Garment("shoes", "black"))
    b = Outfit(Garment("shirt", "yellow", "checked"), Garment("shorts", "khaki"), Garment("boots", "brown"))
    cam = _neutral_camera(noise=0.01, blur=0.5)
    img_a, lab_a = render_image(ident, a, cam, height=128, width=64, rng=np.random.default_rng(7))
    img_b, lab_b = render_image(ident, b, cam, height=128, width=64, rng=np.random.default_rng(7))
    head = _interior(lab_a, {2, 13}) & _interior(lab_b, {2, 13}) & (lab_a == lab_b)
    # the neck meets the collar, whose cut depends on the garment: keep rows above the clothes (blur margin)
    first_clothes_row = min(np.flatnonzero(np.isin(lab, [5, 7]).any(1))[0] for lab in (lab_a, lab_b))
    head[first_clothes_row - 2 :] = False
    assert head.sum() > 40
    assert np.array_equal(img_a[head], img_b[head])
    assert not np.array_equal(img_a, img_b)
    # identity traits come from (seed, pid) alone, whatever the size of the world
    w_small = build_world(WorldParams.build(ids=6, seed=0))
    w_big = build_world(WorldParams.build(ids=40, seed=0, shared_outfits=0.9))
    assert w_small.identities[4] == w_big.identities[4]


def test_splits_disjoint_and_every_query_has_sc_and_cc_matches(world: Path) -> None:
    train = {r[0] for r in _records(world, "train")}
    query = _records(world, "query")
    gallery = _records(world, "test")
    assert not train & {r[0] for r in query} and not train & {r[0] for r in gallery}
    assert {r[0] for r in query} == {r[0] for r in gallery}
    for pid, clothes, cam, _f, _p in query:
        others = [(c, k) for p, c, k, _, _ in gallery if p == pid and k != cam]
        assert any(c == clothes for c, _ in others), "no same-clothes match on another camera"
        assert any(c != clothes for c, _ in others), "no clothes-changing match on another camera"
    train_recs = _records(world, "train")
    for pid in train:  # train: every outfit seen by several cameras
        for clothes in {r[1] for r in train_recs if r[0] == pid}:
            assert len({r[2] for r in train_recs if r[:2] == (pid, clothes)}) >= 2


def test_descriptions_use_the_recolor_vocabulary(world: Path) -> None:
    recolor = pytest.importorskip("dlcr.generation.inpainters.recolor")
    for name, rgb in pal.CLOTHES_RGB.items():
        assert recolor.COLOURS[name] == rgb
    w = build_world(WorldParams.build(seed=0, **TINY))
    outfits = json.loads((world / "synthcc" / "outfits.json").read_text())
    for pid, items in w.outfits.items():
        for k, o in enumerate(items, 1):
            d = outfits[f"{pid:03d}_{k}"]
            assert d == o.describe()
            styles = recolor.parse_outfit_prompt(f"a person wearing {d['upper']}, {d['lower']}, {d['footwear']}")
            for part, g in (("upper", o.upper), ("lower", o.lower), ("footwear", o.footwear)):
                st = styles[part]
                assert np.allclose(st.colour, pal.rgb01(g.colour))
                assert st.pattern == pal.PATTERN_WORDS[g.pattern]
                if g.second is not None:
                    assert np.allclose(st.secondary, pal.rgb01(g.second))


def test_noop_and_resume(tmp_path: Path) -> None:
    first = render_world(tmp_path, seed=2, **TINY)
    assert first["rendered"] == sum(first["images"].values()) and first["skipped"] == 0
    before = _files(tmp_path)
    again = render_world(tmp_path, seed=2, **TINY)
    assert again["rendered"] == 0
    # simulate a killed run: incomplete flag, a missing image, a missing mask, a stale temp file
    base = tmp_path / "synthcc"
    meta = json.loads((base / "world.json").read_text())
    meta["complete"] = False
    (base / "world.json").write_text(json.dumps(meta))
    victims = sorted((base / "train").iterdir())[:2]
    victims[0].unlink()
    (base / "masks" / "train" / victims[1].name).unlink()
    (base / "train" / ".x.png.123.tmp").write_bytes(b"partial")
    resumed = render_world(tmp_path, seed=2, **TINY)
    assert resumed["rendered"] == 2
    assert _files(tmp_path) == before
    assert json.loads((base / "world.json").read_text())["complete"] is True


def test_conflicting_parameters_and_bad_options(tmp_path: Path) -> None:
    render_world(tmp_path, seed=0, **TINY)
    with pytest.raises(DatasetError, match="ids"):
        render_world(tmp_path, seed=0, **{**TINY, "ids": 7})
    with pytest.raises(DatasetError, match="seed"):
        render_world(tmp_path, seed=5, **TINY)
    other = tmp_path / "other"
    (other / "synthcc").mkdir(parents=True)
    (other / "synthcc" / "stray.txt").write_text("x")
    with pytest.raises(DatasetError, match="not empty"):
        render_world(other, **TINY)
    empty = tmp_path / "empty"
    (empty / "synthcc").mkdir(parents=True)
    assert render_world(empty, **{**TINY, "ids": 2})["rendered"] > 0
    with pytest.raises(ConfigError, match="did you mean 'cameras'"):
        render_world(tmp_path / "x", camras=3)
    with pytest.raises(ConfigError, match="ids"):
        render_world(tmp_path / "y", ids=1)


def test_contact_sheet(world: Path, tmp_path: Path) -> None:
    out = contact_sheet(world, tmp_path / "sheet.png", n_ids=2, labels=False)
    sheet = read_rgb(out)
    recs = _records(world, "train")
    pids = sorted({r[0] for r in recs})[:2]
    rows = len({r[:2] for r in recs if r[0] in pids})
    cams = len({r[2] for r in recs})
    assert sheet.shape == (rows * (64 + 2), cams * (32 + 2), 3)
    with pytest.raises(DatasetError):
        contact_sheet(tmp_path, tmp_path / "none.png")


def test_majority_downsample_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(12, 9)).astype(np.uint8)
    got = majority_downsample(labels, 3)
    for i in range(4):
        for j in range(3):
            block = list(labels[3 * i : 3 * i + 3, 3 * j : 3 * j + 3].ravel())
            counts = [block.count(v) for v in block]
            assert got[i, j] == block[int(np.argmax(counts))]
