import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from dlcr.data.transforms import (
    CAL_ERASING_FILL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    CALRandomErasing,
    build_transforms,
    denormalize,
)

H, W = 32, 16


def rand_image(h=H, w=W, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def normalized(arr: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(arr).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


def test_test_transform_resize_and_normalise():
    arr = rand_image()
    tf = build_transforms(H, W, train=False)
    out = tf(Image.fromarray(arr))
    assert out.shape == (3, H, W) and out.dtype == torch.float32
    torch.testing.assert_close(out, normalized(arr), rtol=0, atol=1e-5)  # already at size: no resampling
    torch.testing.assert_close(tf(arr), out)  # HWC numpy input gives the same
    big = tf(Image.fromarray(rand_image(100, 40)))
    assert big.shape == (3, H, W)
    torch.testing.assert_close(denormalize(out), torch.from_numpy(arr).permute(2, 0, 1).float() / 255, atol=1e-5,
                               rtol=0)


def test_train_transform_is_flip_of_a_padded_crop():
    arr = rand_image(seed=1)
    ref = normalized(arr)
    pad = 4
    padded = torch.nn.functional.pad(ref, (pad, pad, pad, pad), value=0.0)
    # zero pixels are padded *before* normalisation, so in normalised space the border is -mean/std
    border = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)).view(3, 1, 1)
    padded = torch.where(torch.nn.functional.pad(torch.ones(1, H, W), (pad,) * 4) > 0, padded, border)
    tf = build_transforms(H, W, train=True, random_erasing=0.0, pad=pad, crop="pad")
    offsets, flips = set(), set()
    torch.manual_seed(0)
    for _ in range(60):
        out = tf(Image.fromarray(arr))
        found = None
        for flip in (False, True):
            src = padded.flip(-1) if flip else padded
            for dy in range(2 * pad + 1):
                for dx in range(2 * pad + 1):
                    if torch.allclose(out, src[:, dy:dy + H, dx:dx + W], atol=1e-5):
                        found = (flip, dy, dx)
                        break
                if found:
                    break
            if found:
                break
        assert found is not None
        flips.add(found[0])
        offsets.add(found[1:])
    assert flips == {False, True} and len(offsets) > 5


@pytest.mark.parametrize("erasing, fill", [("cal", CAL_ERASING_FILL), ("torchvision", (0.0, 0.0, 0.0))])
@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_erasing(p, erasing, fill):
    arr = np.full((H, W, 3), 200, dtype=np.uint8)
    tf = build_transforms(H, W, train=True, random_erasing=p, crop="none", erasing=erasing)
    torch.manual_seed(0)
    outs = [tf(arr) for _ in range(10)]
    # a uniform image is flip-invariant, so any pixel holding the fill value comes from erasing
    value = torch.tensor(fill).view(3, 1, 1)
    erased = [bool((o - value).abs().lt(1e-6).all(dim=0).any()) for o in outs]
    assert all(erased) if p == 1.0 else not any(erased)


def test_bad_size():
    with pytest.raises(ValueError):
        build_transforms(0, 10, train=True)


def test_bad_options():
    with pytest.raises(ValueError, match="crop"):
        build_transforms(H, W, train=True, crop="random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="erasing"):
        build_transforms(H, W, train=True, erasing="zero")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# CAL's training transform, re-stated from guxinqian/Simple-CCReID (data/__init__.py
# build_img_transforms; data/img_transforms.py RandomCroping / RandomErasing; torchvision's
# RandomHorizontalFlip) on PIL images as CAL runs it, with every `random.uniform(a, b)` /
# `random.randint(a, b)` / `torch.rand(1)` of the reference drawn as `a + (b - a) * torch.rand(())` /
# `torch.randint(a, b + 1, ())` / `torch.rand(())` in the reference's order, so that one seed gives
# both the same decisions.

def cal_reference(pil: Image.Image, seed: int, height=H, width=W, rc_prob=0.5, rf_prob=0.5,
                  re_prob=0.5) -> torch.Tensor:
    torch.manual_seed(seed)

    def uniform(a, b):
        return a + (b - a) * float(torch.rand(()))

    img = pil.resize((width, height), Image.BILINEAR)  # T.Resize((HEIGHT, WIDTH))
    # RandomCroping(p=RC_PROB)
    w, h = img.size
    if not uniform(0, 1) >= rc_prob:  # `if random.uniform(0, 1) >= self.p: return img`
        new_width, new_height = int(round(w * 1.125)), int(round(h * 1.125))
        resized_img = img.resize((new_width, new_height), Image.BILINEAR)
        x1 = int(round(uniform(0, new_width - w)))
        y1 = int(round(uniform(0, new_height - h)))
        img = resized_img.crop((x1, y1, x1 + w, y1 + h))
    # RandomHorizontalFlip(p=RF_PROB): `if torch.rand(1) < self.p: return F.hflip(img)`
    if float(torch.rand(())) < rf_prob:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0  # ToTensor
    x = (x - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    # RandomErasing(probability=RE_PROB, sl=0.02, sh=0.4, r1=0.3, mean=[0.4914, 0.4822, 0.4465])
    if uniform(0, 1) >= re_prob:
        return x
    for _ in range(100):
        area = x.size()[1] * x.size()[2]
        target_area = uniform(0.02, 0.4) * area
        aspect_ratio = uniform(0.3, 1 / 0.3)
        eh = int(round(math.sqrt(target_area * aspect_ratio)))
        ew = int(round(math.sqrt(target_area / aspect_ratio)))
        if ew < x.size()[2] and eh < x.size()[1]:
            r = int(torch.randint(0, x.size()[1] - eh + 1, ()))
            c = int(torch.randint(0, x.size()[2] - ew + 1, ()))
            for ch, m in enumerate((0.4914, 0.4822, 0.4465)):
                x[ch, r:r + eh, c:c + ew] = m
            return x
    return x


@pytest.mark.parametrize("size", [(H, W), (100, 40)])  # already at the input size / resized first
def test_cal_train_transform_matches_the_reference_logic(size):
    arr = rand_image(*size, seed=3)
    pil = Image.fromarray(arr)
    tf = build_transforms(H, W, train=True)  # the defaults are CAL's recipe
    fired = {"crop": 0, "flip": 0, "erase": 0}
    plain = cal_reference(pil, 0, rc_prob=0.0, rf_prob=0.0, re_prob=0.0)  # resized only
    seeds = range(200)
    for seed in seeds:
        torch.manual_seed(seed)
        out = tf(pil)
        ref = cal_reference(pil, seed)
        assert out.shape == (3, H, W)
        # torchvision's antialiased resampling of uint8 data is within one grey level of PIL's per
        # resize (2 resizes: 2/255/0.225 < 0.04); a crop shifted by one pixel, a missed flip or a
        # misplaced rectangle differ by far more on a noise image
        torch.testing.assert_close(out, ref, atol=0.04, rtol=0, msg=f"seed {seed}")
        erased = (ref - torch.tensor(CAL_ERASING_FILL).view(3, 1, 1)).abs().lt(1e-6).all(0)
        fired["erase"] += bool(erased.any())
        keep = ~erased
        if torch.allclose(ref[:, keep], plain[:, keep], atol=1e-5):
            continue
        if torch.allclose(ref[:, keep], plain.flip(-1)[:, keep], atol=1e-5):
            fired["flip"] += 1
            continue
        fired["crop"] += 1
    n = len(seeds)
    assert 0.3 * n < fired["erase"] < 0.7 * n
    assert 0.3 * n < fired["crop"] < 0.7 * n  # crops, flipped or not
    assert fired["flip"] > 0.1 * n  # flipped, uncropped images (a quarter of them)


def test_cal_crop_enlarges_by_one_eighth_and_crops_back_anywhere():
    arr = rand_image(seed=4)
    tf = build_transforms(H, W, train=True, random_erasing=0.0, flip_prob=0.0)
    nh, nw = round(H * 1.125), round(W * 1.125)  # 36 x 18
    big = F.interpolate(torch.from_numpy(arr).permute(2, 0, 1)[None].float(), size=(nh, nw), mode="bilinear",
                        align_corners=False)[0].round().clamp(0, 255) / 255.0
    big = (big - torch.tensor(IMAGENET_MEAN).view(3, 1, 1)) / torch.tensor(IMAGENET_STD).view(3, 1, 1)
    plain = normalized(arr)
    torch.manual_seed(0)
    offsets, uncropped, n = set(), 0, 300
    for _ in range(n):
        out = tf(arr)
        if torch.allclose(out, plain, atol=1e-5):
            uncropped += 1
            continue
        found = [(dy, dx) for dy in range(nh - H + 1) for dx in range(nw - W + 1)
                 if torch.allclose(out, big[:, dy:dy + H, dx:dx + W], atol=0.02)]
        assert len(found) == 1
        offsets.add(found[0])
    assert 0.4 * n < uncropped < 0.6 * n  # p = 0.5
    assert {(0, 0), (nh - H, nw - W)} <= offsets and len(offsets) > 8  # corners included


def test_cal_erasing_constants():
    e = CALRandomErasing()
    assert (e.p, e.sl, e.sh, e.r1, e.tries) == (0.5, 0.02, 0.4, 0.3, 100)
    assert e.fill == (0.4914, 0.4822, 0.4465)


def test_cal_erasing_rectangles_fit_and_cover_two_to_forty_percent():
    e = CALRandomErasing(p=1.0)
    torch.manual_seed(0)
    fracs, aspects = [], []
    for _ in range(300):
        x = torch.full((3, 64, 32), 5.0)
        y = e(x)
        mask = (y != 5.0).all(0)
        rows, cols = mask.any(1).nonzero(), mask.any(0).nonzero()
        h, w = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert int(mask.sum()) == h * w and h < 64 and w < 32  # one rectangle, strictly inside
        fracs.append(h * w / (64 * 32))
        aspects.append(h / w)
    assert min(fracs) > 0.01 and max(fracs) < 0.45
    assert min(aspects) < 0.6 and max(aspects) > 1.5


def test_no_crop_is_resize_flip_normalise():
    arr = rand_image(seed=5)
    tf = build_transforms(H, W, train=True, crop="none", random_erasing=0.0)
    torch.manual_seed(0)
    outs = [tf(arr) for _ in range(20)]
    plain = normalized(arr)
    assert all(torch.allclose(o, plain, atol=1e-5) or torch.allclose(o, plain.flip(-1), atol=1e-5) for o in outs)
    assert any(torch.allclose(o, plain.flip(-1), atol=1e-5) for o in outs)


def test_bicubic_interpolation_is_used():
    arr = rand_image(100, 40, seed=6)
    a = build_transforms(H, W, train=False, interpolation="bicubic")(arr)
    b = build_transforms(H, W, train=False)(arr)
    assert a.shape == b.shape == (3, H, W) and not torch.allclose(a, b)
