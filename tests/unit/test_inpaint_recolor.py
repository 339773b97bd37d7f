import numpy as np
import pytest

from dlcr.errors import DlcrError, InputError
from dlcr.generation.inpainters import INPAINTERS, create_inpainter
from dlcr.generation.inpainters.recolor import (
    COLOURS,
    RecolorInpainter,
    luminance,
    parse_outfit_prompt,
    parse_part,
)
from dlcr.generation.inpainting import InpaintItem, composite
from dlcr.generation.planning import Job

UPPER, PANTS, SHOE = 5, 9, 18


def _job(prompt: str, seed: int = 1, kind: str = "train") -> Job:
    return Job(
        job_id=f"j{seed}",
        kind=kind,
        dataset="t",
        source="a.png",
        source_clothes_key="a",
        pid=0,
        target_clothes_key="b",
        variant=0,
        partition=0,
        prompt=prompt,
        seed=seed,
        generator="recolor",
    )


def _scene(h=48, w=24, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.zeros((h, w), np.uint8)
    labels[4:10, 8:16] = 13  # face
    labels[10:26, 6:18] = UPPER
    labels[26:42, 6:18] = PANTS
    labels[42:46, 6:18] = SHOE
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    # the upper garment: green cloth with a strong vertical shading ramp
    ramp = np.linspace(0.4, 1.0, 16)[:, None]
    img[10:26, 6:18] = (np.array([40, 160, 60]) * ramp[..., None]).astype(np.uint8)
    return img, labels


def test_parse_outfit_prompt_per_part():
    st = parse_outfit_prompt("a person wearing red striped t-shirt, navy blue jeans, white sneakers")
    assert set(st) == {"upper", "lower", "footwear"}
    assert st["upper"].pattern == "stripes"
    assert np.allclose(np.asarray(st["upper"].colour) * 255, COLOURS["red"])
    assert np.allclose(np.asarray(st["lower"].colour) * 255, COLOURS["navy"])  # one colour, not two
    assert st["lower"].secondary is None and st["lower"].pattern == "plain"
    assert np.allclose(np.asarray(st["footwear"].colour) * 255, COLOURS["white"])


def test_parse_part_second_colour_modifiers_and_order_free_phrases():
    p = parse_part("red and white checked shirt")
    assert p.pattern == "checks"
    assert np.allclose(np.asarray(p.secondary) * 255, COLOURS["white"])
    assert parse_part("dark green hoodie").colour[1] < COLOURS["green"][1] / 255
    assert parse_part("light blue shirt").colour[0] > COLOURS["blue"][0] / 255
    st = parse_outfit_prompt("a person wearing black boots, grey shorts, yellow polka dot blouse")
    assert st["footwear"].text == "black boots" and st["lower"].text == "grey shorts"
    assert st["upper"].pattern == "dots"
    # phrases without a garment word fill the free parts in order
    st = parse_outfit_prompt("a person wearing something red, blue")
    assert st["upper"].text == "something red" and st["lower"].text == "blue"
    assert parse_outfit_prompt("a person") == {}


def test_recolor_changes_only_the_clothes_and_hits_the_target_colour():
    img, labels = _scene()
    mask = np.isin(labels, [UPPER, PANTS, SHOE])
    out = RecolorInpainter()(
        [InpaintItem(_job("a person wearing red shirt, blue jeans, black shoes"), img, mask, labels)]
    )[0]
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.array_equal(out[~mask], img[~mask])  # bit-identical outside the mask
    up = out[labels == UPPER].astype(float).mean(0)
    assert up[0] > 2 * up[1] and up[0] > 2 * up[2]  # red
    lo = out[labels == PANTS].astype(float).mean(0)
    assert lo[2] > 1.5 * lo[0]  # blue
    assert out[labels == SHOE].astype(float).mean() < 60  # black


def test_recolor_keeps_the_shading():
    img, labels = _scene()
    mask = labels == UPPER
    out = RecolorInpainter()([InpaintItem(_job("a person wearing yellow shirt"), img, mask, labels)])[0]
    y_src = luminance(img[mask].astype(float) / 255)
    y_out = luminance(out[mask].astype(float) / 255)
    assert np.corrcoef(y_src, y_out)[0, 1] > 0.95
    # top rows (dark) stay darker than bottom rows (bright), as in the source
    assert out[10:13, 6:18].mean() < out[23:26, 6:18].mean() - 20


def test_recolor_patterns_are_seeded_and_two_coloured():
    img, labels = _scene()
    mask = labels == UPPER
    inp = RecolorInpainter(jitter=0.0)
    a = inp([InpaintItem(_job("a person wearing red and white striped shirt", seed=5), img, mask, labels)])[0]
    b = inp([InpaintItem(_job("a person wearing red and white striped shirt", seed=5), img, mask, labels)])[0]
    c = inp([InpaintItem(_job("a person wearing red and white striped shirt", seed=6), img, mask, labels)])[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    px = a[mask].astype(int)
    whiteish = (px.min(1) > 120).mean()
    reddish = (px[:, 0] > px[:, 1] + 40).mean()
    assert 0.2 < whiteish < 0.8 and 0.2 < reddish < 0.8
    # stripes run across the image: within a row the upper garment has one colour class
    rows = a[10:26, 6:18].astype(int)
    assert all(len({bool(p.min() > 120) for p in row}) == 1 for row in rows)


def test_recolor_without_label_map_uses_the_whole_mask():
    img, labels = _scene()
    mask = labels == PANTS
    out = RecolorInpainter()([InpaintItem(_job("a person wearing red shirt"), img, mask)])[0]
    assert np.array_equal(out[~mask], img[~mask])
    m = out[mask].astype(float).mean(0)
    assert m[0] > 2 * m[1]


def test_item_validation_and_composite():
    img, labels = _scene()
    with pytest.raises(InputError, match="mask shape"):
        InpaintItem(_job("x"), img, np.zeros((3, 3), bool))
    with pytest.raises(InputError, match="RGB uint8"):
        InpaintItem(_job("x"), img.astype(np.float32), labels > 0)
    gen = np.zeros_like(img)
    out = composite(img, gen, labels == UPPER)
    assert np.array_equal(out[labels != UPPER], img[labels != UPPER]) and not out[labels == UPPER].any()


def test_registry_knows_the_backends():
    assert {"recolor", "tiny", "diffusers"} <= set(INPAINTERS.names())
    assert create_inpainter("recolor").name == "recolor"
    with pytest.raises(DlcrError, match="did you mean 'recolor'"):
        create_inpainter("recolour")
