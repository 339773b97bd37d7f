import math
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dlcr.errors import CheckpointError
from dlcr.models import MODELS, ClothesClassifier, PCBModel, ReIDModel, create_model, load_backbone_weights
from dlcr.models import backbones as bb
from dlcr.registry import UnknownNameError

torch.manual_seed(0)


@pytest.fixture(scope="module")
def cal50() -> ReIDModel:
    return create_model("cal_resnet50", 7)


@pytest.fixture()
def small() -> ReIDModel:
    torch.manual_seed(0)
    return create_model("small_resnet", 5)


def test_registry_names_and_unknown():
    assert {"cal_resnet50", "bot_resnet50", "pcb_resnet50", "small_resnet"} <= set(MODELS.names())
    with pytest.raises(UnknownNameError, match="did you mean 'small_resnet'"):
        create_model("smal_resnet", 3)


def test_small_resnet_shapes_train_and_eval(small):
    x = torch.randn(4, 3, 64, 32)
    small.train()
    f = small(x)
    assert f.shape == (4, small.feat_dim) == (4, 512)
    assert small.classify(f).shape == (4, 5)
    f2, logits = small(x, with_logits=True)
    assert logits.shape == (4, 5) and f2.shape == f.shape
    small.eval()
    with torch.no_grad():
        fe = small(x)
    assert fe.shape == f.shape
    # the feature is the neck output (max+avg pooled map through the BN neck), in eval mode too
    fmap = small.backbone(x)
    manual = small.neck(torch.cat([fmap.amax(dim=(2, 3)), fmap.mean(dim=(2, 3))], dim=1))
    torch.testing.assert_close(fe, manual)


def test_cal_head_trains_the_neck_shift_and_a_classifier_bias(small):
    """CAL's head (Simple-CCReID models/img_resnet.py, models/classifier.py): BatchNorm1d neck with a
    trainable zero-initialised shift, nn.Linear classifier with a zero bias."""
    assert small.neck.bias.requires_grad and torch.equal(small.neck.bias, torch.zeros_like(small.neck.bias))
    assert small.classifier.bias is not None and not small.classifier.bias.any()
    small.train()
    loss = small.classify(small(torch.randn(4, 3, 64, 32))).logsumexp(1).mean()
    loss.backward()
    assert small.neck.bias.grad is not None and small.classifier.bias.grad is not None
    assert small.neck.weight.grad is not None and small.backbone.conv1.weight.grad is not None


def test_bot_head_keeps_the_neck_shift_frozen_and_no_classifier_bias(small):
    bot = ReIDModel(small.backbone, 5, pooling="avg", arch="bot_resnet50")  # bot_resnet50's head
    assert not bot.neck.bias.requires_grad and bot.classifier.bias is None
    bot.train()
    bot.classify(bot(torch.randn(2, 3, 64, 32))).logsumexp(1).mean().backward()
    assert bot.neck.bias.grad is None


def test_clip_is_per_frame_then_temporal_average(small):
    small.eval()
    clip = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        f = small(clip)
        per_frame = small.pooled(clip.flatten(0, 1)).view(2, 3, -1).mean(1)
        expected = small.neck(per_frame)
        same = small(clip[:, :1].expand(2, 3, 3, 64, 32).contiguous())
        single = small(clip[:, 0])
    assert f.shape == (2, small.feat_dim)
    torch.testing.assert_close(f, expected)
    torch.testing.assert_close(same, single, rtol=1e-5, atol=1e-5)  # T copies of a frame = that frame
    with pytest.raises(ValueError):
        small(torch.randn(3, 64, 32))


def test_last_stride_one_map_size(cal50):
    x = torch.randn(1, 3, 64, 32)
    with torch.no_grad():
        assert cal50.backbone(x).shape == (1, 2048, 4, 2)  # 16x reduction, not 32x
        assert create_model("small_resnet", 2).backbone(torch.randn(1, 3, 128, 64)).shape == (1, 256, 8, 4)
        assert create_model("small_resnet", 2, last_stride=2).backbone(
            torch.randn(1, 3, 128, 64)).shape == (1, 256, 4, 2)


def test_cal_resnet50_head(cal50):
    assert cal50.feat_dim == 4096 and cal50.arch == "cal_resnet50"
    assert cal50.classifier.bias is not None and cal50.neck.bias.requires_grad  # CAL's head
    cal50.eval()
    with torch.no_grad():
        f = cal50(torch.randn(2, 3, 64, 32))
    assert f.shape == (2, 4096) and cal50.classify(f).shape == (2, 7)


def test_bot_and_pcb_heads(cal50):
    # reuse the already-built ResNet-50 trunk: the heads are what differs
    bot = ReIDModel(cal50.backbone, 7, pooling="avg", arch="bot_resnet50")
    pcb = PCBModel(cal50.backbone, 7)
    x = torch.randn(2, 3, 96, 32)
    for m in (bot, pcb):
        m.eval()
    with torch.no_grad():
        assert bot(x).shape == (2, 2048)
        f = pcb(x)
    assert f.shape == (2, 6 * 256) and pcb.feat_dim == 1536
    torch.testing.assert_close(f.view(2, 6, 256).norm(dim=-1), torch.ones(2, 6))  # L2 per part
    logits = pcb.classify(f)
    assert logits.shape == (2, 7, 6)
    # part p's logits come from part p's features and classifier only
    manual = 16.0 * f.view(2, 6, 256)[:, 2] @ pcb.part_classifier[2].t()
    torch.testing.assert_close(logits[:, :, 2], manual)


def test_clothes_classifier_is_scaled_cosine():
    cc = ClothesClassifier(8, 3, scale=16.0)
    x = torch.randn(5, 8)
    out = cc(x).detach()
    for i in range(5):
        for c in range(3):
            w = cc.weight[c].detach()
            cos = float(x[i] @ w) / (float(x[i].norm()) * float(w.norm()))
            assert math.isclose(float(out[i, c]), 16.0 * cos, rel_tol=1e-5, abs_tol=1e-5)
    assert out.abs().max() <= 16.0 + 1e-4
    torch.testing.assert_close(cc.cosine(3.0 * x), cc.cosine(x))  # scale-invariant in the features


def test_local_pretrained_file_loads_into_backbone(tmp_path: Path):
    torch.manual_seed(1)
    src = create_model("small_resnet", 3)
    sd = {f"module.backbone.{k}": v for k, v in src.backbone.state_dict().items()}
    sd["fc.weight"] = torch.zeros(10, 256)  # an ImageNet-style head is ignored
    save_file(sd, str(tmp_path / "w.safetensors"))
    torch.save(src.backbone.state_dict(), tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        torch.manual_seed(2)
        m = create_model("small_resnet", 3, pretrained=str(tmp_path / name))
        for k, v in src.backbone.state_dict().items():
            assert torch.equal(m.backbone.state_dict()[k], v), k


def test_local_pretrained_shape_mismatch_and_missing(tmp_path: Path):
    narrow = create_model("small_resnet", 3, widths=(16, 32, 64, 128))
    save_file(narrow.backbone.state_dict(), str(tmp_path / "narrow.safetensors"))
    with pytest.raises(CheckpointError, match="shape mismatch for 'conv1.weight'") as e:
        create_model("small_resnet", 3, pretrained=str(tmp_path / "narrow.safetensors"))
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="not found"):
        create_model("small_resnet", 3, pretrained=str(tmp_path / "nope.safetensors"))
    partial = {k: v for k, v in create_model("small_resnet", 3).backbone.state_dict().items() if "layer4" not in k}
    save_file(partial, str(tmp_path / "partial.safetensors"))
    with pytest.raises(CheckpointError, match="missing backbone key 'layer4"):
        create_model("small_resnet", 3, pretrained=str(tmp_path / "partial.safetensors"))


def test_torchvision_resnet50_state_dict_fits_backbone(cal50):
    import torchvision

    torch.manual_seed(3)
    tv = torchvision.models.resnet50(weights=None).state_dict()  # includes fc.* keys
    load_backbone_weights(cal50.backbone, tv, "torchvision")
    assert torch.equal(cal50.backbone.layer4[0].conv2.weight, tv["layer4.0.conv2.weight"])
    assert cal50.backbone.layer4[0].conv2.stride == (1, 1)  # loading keeps the last stride of 1


def test_imagenet_unavailable_falls_back_with_one_warning(tmp_path, monkeypatch):
    import torch.hub

    calls = []

    def fail(*a, **k):
        calls.append(1)
        raise OSError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fail)
    monkeypatch.setattr(bb, "_IMAGENET_FAILED", False)
    monkeypatch.setattr(bb, "_WARNED", set())
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        torch.manual_seed(0)
        a = bb.resnet50_backbone()
        bb.init_backbone(a, "imagenet", "cal_resnet50")
        bb.init_backbone(a, "imagenet", "cal_resnet50")
    msgs = [str(w.message) for w in rec if "ImageNet" in str(w.message)]
    assert len(msgs) == 1 and "random initialisation" in msgs[0]
    assert len(calls) == 1  # a failed download is not retried in the same process


def test_train_step_reduces_loss(small):
    # two identities, a handful of steps: the model must be able to fit them
    torch.manual_seed(0)
    x = torch.randn(8, 3, 64, 32)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    opt = torch.optim.Adam(small.parameters(), lr=1e-3)
    small.train()
    losses = []
    for _ in range(6):
        opt.zero_grad()
        loss = F.cross_entropy(small.classify(small(x)), y)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_c2d_head_is_per_frame_max_pooling_then_the_temporal_mean(small):
    """CAL's C2DResNet50 (Simple-CCReID models/vid_resnet.py): spatial max pooling of every frame
    (2048-d for ResNet-50), the mean over frames, then the BN neck."""
    c2d = ReIDModel(small.backbone, 4, pooling="max", arch="c2d_resnet50", train_neck_bias=True,
                    classifier_bias=True)
    assert c2d.feat_dim == small.backbone.out_channels
    c2d.eval()
    clip = torch.randn(2, 3, 3, 64, 32)
    with torch.no_grad():
        fmap = small.backbone(clip.flatten(0, 1))
        expected = c2d.neck(fmap.amax(dim=(2, 3)).view(2, 3, -1).mean(1))
        torch.testing.assert_close(c2d(clip), expected)
    assert "c2d_resnet50" in MODELS
