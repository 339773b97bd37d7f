import numpy as np
import pytest
import torch
from PIL import Image

from dlcr.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transforms, denormalize

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
    tf = build_transforms(H, W, train=True, random_erasing=0.0, pad=pad)
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


@pytest.mark.parametrize("p", [0.0, 1.0])
def test_random_erasing(p):
    arr = np.full((H, W, 3), 200, dtype=np.uint8)
    tf = build_transforms(H, W, train=True, random_erasing=p, pad=0)
    torch.manual_seed(0)
    outs = [tf(arr) for _ in range(10)]
    # a uniform image is flip-invariant, so any zero (= erased, ImageNet mean) pixel comes from erasing
    erased = [bool((o == 0).all(dim=0).any()) for o in outs]
    assert all(erased) if p == 1.0 else not any(erased)


def test_bad_size():
    with pytest.raises(ValueError):
        build_transforms(0, 10, train=True)
