"""SCHP network: official key layout, checkpoint loading, SCHP's affine warp, parsing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcr.errors import CheckpointError, ConfigError
from dlcr.generation.parsers import create_parser
from dlcr.generation.parsers.schp import (
    BGR_MEAN,
    BGR_STD,
    SCHPNet,
    SCHPParser,
    read_state_dict,
    save_schp_checkpoint,
    warp_to_image,
    warp_to_input,
)
from dlcr.lip import ATR_TO_LIP
from dlcr.testing.tiny import TINY_SCHP_ARCH, tiny_schp, tiny_schp_checkpoint
from public_formats import schp as official

# --------------------------------------------------------------------------- architecture


def test_full_size_keys_match_the_official_layout():
    with torch.device("meta"):
        net = SCHPNet(num_classes=20)
    sd = net.state_dict()
    # names and shapes of the released LIP checkpoint (after stripping "module.")
    expected = {
        "conv1.weight": (64, 3, 3, 3),
        "bn1.running_mean": (64,),
        "conv3.weight": (128, 64, 3, 3),
        "bn3.running_var": (128,),
        "layer1.0.downsample.0.weight": (256, 128, 1, 1),
        "layer1.0.downsample.1.weight": (256,),
        "layer3.22.bn3.bias": (1024,),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "layer4.2.conv2.weight": (512, 512, 3, 3),
        "context_encoding.stages.0.1.weight": (512, 2048, 1, 1),
        "context_encoding.stages.3.2.running_var": (512,),
        "context_encoding.bottleneck.0.weight": (512, 4096, 3, 3),
        "context_encoding.bottleneck.1.weight": (512,),
        "edge.conv1.0.weight": (256, 256, 1, 1),
        "edge.conv3.0.weight": (256, 1024, 1, 1),
        "edge.conv4.weight": (2, 256, 3, 3),
        "edge.conv5.bias": (2,),
        "decoder.conv1.0.weight": (256, 512, 1, 1),
        "decoder.conv2.0.weight": (48, 256, 1, 1),
        "decoder.conv3.0.weight": (256, 304, 1, 1),
        "decoder.conv3.3.running_mean": (256,),
        "decoder.conv4.weight": (20, 256, 1, 1),
        "fushion.0.weight": (256, 1024, 1, 1),
        "fushion.1.running_var": (256,),
        "fushion.3.weight": (20, 256, 1, 1),
        "fushion.3.bias": (20,),
    }
    for k, shape in expected.items():
        assert tuple(sd[k].shape) == shape, k
    assert not [k for k in sd if "num_batches_tracked" in k]  # InPlaceABN has no such buffer
    assert not [k for k in sd if k.startswith("layer3.23.")]  # 23 blocks in layer3
    assert sum(v.numel() for v in sd.values()) == 66_838_456


def test_abn_uses_abs_weight_and_leaky_relu():
    from dlcr.generation.parsers.schp import ABN

    abn = ABN(2).eval()
    with torch.no_grad():
        abn.weight.copy_(torch.tensor([-2.0, 1.0]))
        abn.running_mean.copy_(torch.tensor([1.0, 0.0]))
        abn.running_var.copy_(torch.tensor([4.0, 1.0]))
    x = torch.tensor([3.0, -1.0]).view(1, 2, 1, 1)
    y = abn(x).flatten()
    # channel 0: (3-1)/2 * |−2| = 2; channel 1: −1 * 1 = −1 -> leaky 0.01 -> −0.01
    torch.testing.assert_close(y, torch.tensor([2.0, -0.01]), atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- geometry


def _schp_forward_matrix(h: int, w: int, size: int) -> np.ndarray:
    """SCHP's get_affine_transform for the whole-image box, from its three point pairs."""
    c = np.array([(w - 1) * 0.5, (h - 1) * 0.5])
    s = max(w - 1, h - 1)  # box (0, 0, w-1, h-1) made square (aspect ratio 1)

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]])

    src = [c, c + [0, -s * 0.5]]
    d0 = np.array([(size - 1) * 0.5, (size - 1) * 0.5])
    dst = [d0, d0 + [0, -(size - 1) * 0.5]]
    src.append(third(*src))
    dst.append(third(*dst))
    a = np.array([[x, y, 1.0] for x, y in src])
    return np.linalg.solve(a, np.array(dst)).T  # 2x3, dst = M @ [x, y, 1]


def _bilinear_zero_pad(img: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    out = np.zeros(xs.shape + img.shape[2:])
    for dy in (0, 1):
        for dx in (0, 1):
            xi, yi = x0 + dx, y0 + dy
            wt = (1 - np.abs(xs - xi)) * (1 - np.abs(ys - yi))
            ok = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
            vals = img[np.clip(yi, 0, h - 1), np.clip(xi, 0, w - 1)]
            out += np.where(ok, wt, 0.0)[..., None] * vals
    return out


def _reference_warp(img: np.ndarray, m: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """cv2.warpAffine(img, m, (out_w, out_h), INTER_LINEAR, BORDER_CONSTANT 0), in numpy."""
    inv = np.linalg.inv(np.vstack([m, [0, 0, 1]]))[:2]
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(float)
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    return _bilinear_zero_pad(img, sx, sy)


@pytest.mark.parametrize("hw", [(9, 5), (5, 9), (7, 7), (12, 3), (1, 4)])
def test_warp_to_input_matches_schp_affine(hw):
    h, w = hw
    size = 17
    img = np.random.default_rng(h * w).random((h, w, 3))
    expected = _reference_warp(img, _schp_forward_matrix(h, w, size), size, size)
    got = warp_to_input(torch.from_numpy(img).permute(2, 0, 1).float(), size).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_warp_geometry_by_hand_and_round_trip():
    # a 9-high, 5-wide image in a 17 square: scale 16/8 = 2, columns 0..4 land on 4, 6, .., 12
    img = torch.arange(45, dtype=torch.float32).view(1, 9, 5) + 1
    x = warp_to_input(img, 17)[0]
    assert (x[:, :3] == 0).all() and (x[:, 14:] == 0).all()
    torch.testing.assert_close(x[::2, 4:13:2], img[0])
    torch.testing.assert_close(x[::2, 3], img[0, :, 0] / 2)  # half a pixel out: blended with black
    torch.testing.assert_close(x[0, 5], (img[0, 0, 0] + img[0, 0, 1]) / 2)
    # logits warped back land on the image grid
    smooth = torch.linspace(0, 1, 9).view(1, 9, 1) + torch.linspace(0, 2, 5).view(1, 1, 5)
    back = warp_to_image(warp_to_input(smooth, 33), 9, 5)
    torch.testing.assert_close(back, smooth, atol=1e-5, rtol=0)


def test_preprocess_is_bgr_and_normalised():
    parser = SCHPParser(tiny_schp(), input_size=9, device="cpu")
    red = np.zeros((9, 3, 3), np.uint8)
    red[..., 0] = 255
    x = parser.preprocess(red)
    assert x.shape == (3, 9, 9)
    centre = x[:, 4, 4]
    expected = (torch.tensor([0.0, 0.0, 1.0]) - torch.tensor(BGR_MEAN)) / torch.tensor(BGR_STD)
    torch.testing.assert_close(centre, expected)
    pad = x[:, 4, 0]  # outside the 3-wide image: black, normalised
    torch.testing.assert_close(pad, -torch.tensor(BGR_MEAN) / torch.tensor(BGR_STD))


# --------------------------------------------------------------------------- checkpoints + parsing


def _images():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (37, 21, 3), dtype=np.uint8),
        rng.integers(0, 256, (18, 45, 3), dtype=np.uint8),
    ]


def test_tiny_checkpoint_round_trip_and_parse(tmp_path):
    net = tiny_schp(seed=3)
    path = tiny_schp_checkpoint(tmp_path / "exp-schp-tiny-lip.pth", seed=3)
    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"state_dict"} and all(k.startswith("module.") for k in raw["state_dict"])

    parser = SCHPParser.from_checkpoint(path, num_classes=20, input_size=65, device="cpu", **TINY_SCHP_ARCH)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(parser.net.state_dict()[k], v, rtol=0, atol=0)

    images = _images()
    labels = parser.parse(images)
    assert [lab.shape for lab in labels] == [(37, 21), (18, 45)]
    assert all(lab.dtype == np.uint8 and lab.max() < 20 for lab in labels)
    # the same labels as the in-memory network, computed the long way round
    ref = SCHPParser(net, input_size=65, device="cpu", batch_size=1).parse(images)
    for a, b in zip(labels, ref, strict=True):
        np.testing.assert_array_equal(a, b)
    assert parser.description == "schp:exp-schp-tiny-lip.pth"


@pytest.mark.parametrize(("num_classes", "winner", "lip"), [(20, 7, 7), (18, 5, 12), (18, 16, 0)])
def test_output_covers_the_image_and_maps_atr(num_classes, winner, lip):
    net = tiny_schp(num_classes=num_classes)
    with torch.no_grad():  # make one class win everywhere
        net.fushion[3].weight.zero_()
        net.fushion[3].bias.zero_()
        net.fushion[3].bias[winner] = 5.0
    labels = SCHPParser(net, input_size=33, device="cpu").parse(_images())
    assert all((lab == lip).all() for lab in labels)
    if num_classes == 18:
        assert ATR_TO_LIP[winner] == lip


class _Payload:  # an arbitrary pickled object: refused by the safe loader
    pass


def test_mismatched_checkpoints_raise(tmp_path):
    atr = save_schp_checkpoint(tiny_schp(num_classes=18), tmp_path / "atr.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatch.*fushion\.3\.(bias|weight) \(18"):
        SCHPParser.from_checkpoint(atr, num_classes=20, **TINY_SCHP_ARCH)
    # full-size model, tiny file: every shape differs, and the missing deeper blocks are listed
    with pytest.raises(CheckpointError, match=r"missing key\(s\): layer1\.1\."):
        SCHPParser.from_checkpoint(atr, num_classes=18)
    other = tmp_path / "other.pth"
    torch.save({"fc.weight": torch.zeros(2, 2), "backbone.conv1.weight": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="unexpected key"):
        SCHPParser.from_checkpoint(other, **TINY_SCHP_ARCH)
    with pytest.raises(CheckpointError, match="not found"):
        SCHPParser.from_checkpoint(tmp_path / "nope.pth")
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "obj": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="safely"):
        read_state_dict(evil)


def test_safetensors_and_torch_bn_checkpoints_load(tmp_path):
    from safetensors.torch import save_file

    net = tiny_schp(seed=5)
    st = tmp_path / "schp.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    parser = SCHPParser.from_checkpoint(st, input_size=33, **TINY_SCHP_ARCH)
    torch.testing.assert_close(parser.net.fushion[3].weight, net.fushion[3].weight)
    # a re-trained copy saved from nn.BatchNorm2d layers carries num_batches_tracked: ignored
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    sd["module.bn1.num_batches_tracked"] = torch.tensor(7)
    pth = tmp_path / "bn.pth"
    torch.save(sd, pth)
    SCHPParser.from_checkpoint(pth, input_size=33, **TINY_SCHP_ARCH)


@pytest.mark.slow
def test_full_resnet101_checkpoint_round_trip(tmp_path):
    """The real-size network, saved like the official file and loaded through create_parser."""
    torch.manual_seed(0)
    path = save_schp_checkpoint(SCHPNet(num_classes=20), tmp_path / "exp-schp-201908261155-lip.pth")
    parser = create_parser("schp", checkpoint=path, input_size=65, device="cpu")
    assert isinstance(parser, SCHPParser) and parser.input_size == 65
    labels = parser.parse(_images())
    assert [lab.shape for lab in labels] == [(37, 21), (18, 45)]
    assert all(lab.max() < 20 for lab in labels)


# --------------------------------------------------------------------------- released checkpoints
# (tests/public_formats/schp.py writes them in the official layout, walked from AugmentCE2P.py)


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """The three released models, tiny: LIP (zip format), ATR and Pascal (legacy torch.save format)."""
    root = tmp_path_factory.mktemp("schp-released")
    return {
        "lip": official.write_checkpoint(root, "lip", seed=1),
        "atr": official.write_checkpoint(root, "atr", seed=2, legacy=True),
        "pascal": official.write_checkpoint(root, "pascal", seed=3, legacy=True),
    }


TINY = {"layers": official.TINY_LAYERS, "width": official.TINY_WIDTH}


def test_released_checkpoints_infer_classes_and_input_size(released):
    for n in (20, 18, 7):  # the fixture's layout is the network's, at full size
        with torch.device("meta"):
            net = SCHPNet(num_classes=n)
        ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        assert ours == {k: shape for k, (shape, _) in official.key_shapes(n).items()}
    raw = torch.load(released["atr"], weights_only=True)
    assert set(raw) == {"state_dict", "cycle_n"} and all(k.startswith("module.") for k in raw["state_dict"])
    lip = SCHPParser.from_checkpoint(released["lip"], device="cpu", **TINY)
    atr = SCHPParser.from_checkpoint(released["atr"], device="cpu", **TINY)
    assert (lip.net.num_classes, lip.input_size) == (20, 473)
    assert (atr.net.num_classes, atr.input_size) == (18, 512)
    np.testing.assert_array_equal(lip.table, np.arange(20))
    np.testing.assert_array_equal(atr.table, ATR_TO_LIP)
    assert atr.mapping()["Belt"] == "Pants" and atr.mapping()["Upper-clothes"] == "Upper-clothes"
    # config still wins over the dataset's size
    assert SCHPParser.from_checkpoint(released["atr"], input_size=65, device="cpu", **TINY).input_size == 65
    labels = atr.parse(_images())
    assert [lab.shape for lab in labels] == [(37, 21), (18, 45)]
    assert all(set(np.unique(lab)) <= set(ATR_TO_LIP.tolist()) for lab in labels)


@pytest.mark.parametrize(("dataset", "winner", "lip"), [("atr", 5, 12), ("atr", 16, 0), ("lip", 7, 7)])
def test_released_class_ids_reach_lip(tmp_path, dataset, winner, lip):
    path = official.write_checkpoint(tmp_path, dataset, winner=winner, legacy=dataset == "atr")
    parser = SCHPParser.from_checkpoint(path, input_size=33, device="cpu", **TINY)
    assert all((lab == lip).all() for lab in parser.parse(_images()))


def test_pascal_has_no_clothes_classes(released, tmp_path):
    with pytest.raises(ConfigError, match=r"Pascal-Person-Part.*no clothes") as err:
        SCHPParser.from_checkpoint(released["pascal"], device="cpu", **TINY)
    assert "Torso" in str(err.value) and "Upper Arms" in str(err.value) and "parser_label_map" in str(err.value)
    # the escape hatch: name the classes to treat as clothes
    winner = official.write_checkpoint(tmp_path, "pascal", winner=2)  # Torso everywhere
    parser = SCHPParser.from_checkpoint(winner, label_map={"torso": 5}, input_size=33, device="cpu", **TINY)
    assert parser.input_size == 33 and parser.mapping()["Torso"] == "Upper-clothes"
    assert all((lab == 5).all() for lab in parser.parse(_images()))
    pascal = SCHPParser.from_checkpoint(released["pascal"], label_map={"Torso": 5}, device="cpu", **TINY)
    assert pascal.input_size == 512


# --------------------------------------------------------------------------- the official extractor


def _official_trans(w: int, h: int, size: int, inv: bool = False) -> np.ndarray:
    """simple_extractor_dataset._box2cs + utils/transforms.get_affine_transform, restated (rotation 0)."""
    import cv2

    center = np.array([(w - 1) * 0.5, (h - 1) * 0.5], np.float32)
    bw, bh = float(w - 1), float(h - 1)  # the box (0, 0, w-1, h-1), made square (aspect ratio 1)
    if bw > bh:
        bh = bw
    elif bw < bh:
        bw = bh
    scale = np.array([bw, bh], np.float32)

    def third(a, b):
        d = a - b
        return b + np.array([-d[1], d[0]], np.float32)

    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array([0, scale[0] * -0.5], np.float32)
    dst[0] = [(size - 1) * 0.5, (size - 1) * 0.5]
    dst[1] = dst[0] + np.array([0, (size - 1) * -0.5], np.float32)
    src[2] = third(src[0], src[1])
    dst[2] = third(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def _official_input(rgb: np.ndarray, size: int) -> torch.Tensor:
    """cv2.imread's BGR image, cv2.warpAffine (bilinear, black border) into uint8, ToTensor, Normalize."""
    import cv2

    bgr = np.ascontiguousarray(rgb[..., ::-1])
    h, w = bgr.shape[:2]
    warped = cv2.warpAffine(bgr, _official_trans(w, h, size), (size, size), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))  # fmt: skip
    x = torch.from_numpy(warped).permute(2, 0, 1).float() / 255.0
    return (x - torch.tensor(BGR_MEAN).view(3, 1, 1)) / torch.tensor(BGR_STD).view(3, 1, 1)


def _official_labels(net: SCHPNet, rgb: np.ndarray, size: int) -> np.ndarray:
    """The extractor's loop: fusion logits, upsampled (align_corners), transform_logits, argmax."""
    import cv2

    h, w = rgb.shape[:2]
    with torch.no_grad():
        fusion = net.forward_heads(_official_input(rgb, size)[None])[1]
        up = torch.nn.functional.interpolate(fusion, size=(size, size), mode="bilinear", align_corners=True)
    logits = up[0].permute(1, 2, 0).numpy()
    inv = _official_trans(w, h, size, inv=True)
    back = np.stack([cv2.warpAffine(logits[:, :, c], inv, (w, h), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                     for c in range(logits.shape[2])], axis=2)  # fmt: skip
    return back.argmax(2).astype(np.uint8)


def _photos() -> list[np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(7)
    images = [rng.integers(0, 256, (53, 31, 3), dtype=np.uint8), rng.integers(0, 256, (40, 97, 3), dtype=np.uint8)]
    try:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as fh:
            photo = Image.open(fh).convert("RGB")
        images.append(np.asarray(photo.resize((77, 101), Image.BILINEAR)))
    except (OSError, ValueError, ImportError):
        pass
    return images


@pytest.mark.parametrize("size", [473, 512, 65])
def test_input_is_the_official_extractors(size):
    pytest.importorskip("cv2")
    parser = SCHPParser(tiny_schp(), input_size=size, device="cpu")
    for img in _photos():
        ours = parser.preprocess(img)
        theirs = _official_input(img, size)
        diff = (ours - theirs).abs()
        # the same uint8 image: off by at most one grey level (a float tie rounded the other way)
        # on a handful of pixels; a float (unrounded) warp is off by up to half a level nearly everywhere
        assert float((diff > 1e-5).float().mean()) < 5e-4, float((diff > 1e-5).float().mean())
        assert float(diff.max()) < 1.01 / 255 / min(BGR_STD)


def test_labels_agree_with_the_official_extractor(released):
    pytest.importorskip("cv2")
    parser = SCHPParser.from_checkpoint(released["lip"], device="cpu", **TINY)
    agree = total = 0
    for img in _photos():
        ours = parser.parse([img])[0]
        theirs = _official_labels(parser.net, img, parser.input_size)
        agree += int((ours == theirs).sum())
        total += ours.size
    assert agree / total > 0.999, agree / total
