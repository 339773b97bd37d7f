"""MGN and HPM part models, and timm backbones under the re-id heads (tiny inputs, narrow backbones)."""

import sys
import warnings

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from dlcr.engine.checkpoint import load_checkpoint, save_checkpoint
from dlcr.errors import CheckpointError, ConfigError
from dlcr.losses import CrossEntropyLabelSmooth, TripletLoss
from dlcr.models import MODELS, HPMModel, MGNModel, ReIDModel, SmallResNet, create_model, model_options
from dlcr.models import timm_backbone as tb

PIDS = 5
D = 16  # part_dim of the narrow models
X = (4, 3, 128, 64)


def small_mgn() -> MGNModel:
    torch.manual_seed(0)
    # layer3 has 2 blocks, so the branches each get a copy of layer3[1:]; last stride 2 (global branch)
    return MGNModel(SmallResNet((16, 32, 48, 64), (1, 1, 2, 1), last_stride=2), PIDS, part_dim=D)


def small_hpm() -> HPMModel:
    torch.manual_seed(0)
    return HPMModel(SmallResNet((16, 32, 48, 64), (1, 1, 1, 1), last_stride=1), PIDS, part_dim=D)


def labels() -> torch.Tensor:
    return torch.tensor([0, 0, 1, 1])


def reduce_part(model, desc: torch.Tensor, part: int) -> torch.Tensor:
    """Part ``part``'s 1×1 reduction + eval-mode BN + ReLU, written out (the grouped convolution's slice)."""
    h = model.part_head
    w = h.reduce.weight[part * D:(part + 1) * D, :, 0]
    sl = slice(part * D, (part + 1) * D)
    z = desc @ w.t()
    z = (z - h.bn.running_mean[sl]) / torch.sqrt(h.bn.running_var[sl] + h.bn.eps) * h.bn.weight[sl] + h.bn.bias[sl]
    return F.relu(z)


def test_registry_names_and_full_size_dims():
    assert {"mgn_resnet50", "hpm_resnet50"} <= set(MODELS.names())
    x = torch.randn(2, 3, 64, 32)
    for name, dim, parts in (("mgn_resnet50", 2048, 8), ("hpm_resnet50", 3840, 15)):
        m = create_model(name, PIDS).eval()
        assert isinstance(m, ReIDModel) and m.arch == name and m.feat_dim == dim
        with torch.no_grad():
            f, logits = m(x, with_logits=True)
        assert f.shape == (2, dim) and logits.shape == (2, PIDS, parts)
        del m


def test_mgn_shapes_branch_strides_and_copied_weights():
    m = small_mgn()
    assert m.feat_dim == 8 * D
    shared = m.backbone(torch.randn(2, 3, 128, 64))
    g, p2 = m.branch_global(shared), m.branch_p2(shared)
    assert g.shape[2:] == (4, 2) and p2.shape[2:] == (8, 4)  # part branches keep stride 1
    # the three branches start from the same weights but own separate parameters
    a, b = m.branch_global[1][0].conv1.weight, m.branch_p3[1][0].conv1.weight
    assert torch.equal(a, b) and a.data_ptr() != b.data_ptr()
    m.train()
    f, logits = m(torch.randn(*X), with_logits=True)
    assert f.shape == (4, 8 * D) and logits.shape == (4, PIDS, 8)
    trip = m.triplet_features(f)
    assert len(trip) == 3 and all(t.shape == (4, D) for t in trip)
    torch.testing.assert_close(torch.cat(trip, 1), f[:, :3 * D])


def test_mgn_losses_reach_the_trunk_and_every_branch():
    m = small_mgn().train()
    f, logits = m(torch.randn(*X), with_logits=True)
    tri = TripletLoss(margin=0.3)
    loss = CrossEntropyLabelSmooth()(logits, labels()) + sum(tri(t, labels()) for t in m.triplet_features(f))
    assert torch.isfinite(loss)
    loss.backward()
    for mod in (m.backbone[0], m.branch_global[1][0].conv1, m.branch_p2[1][0].conv1, m.branch_p3[1][0].conv1):
        assert mod.weight.grad is not None and mod.weight.grad.abs().sum() > 0
    assert m.part_head.bias.grad is not None and m.part_head.weight.grad[7].abs().sum() > 0


def test_mgn_eval_feature_is_max_pooled_reduced_parts():
    m = small_mgn().eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        f = m(x)
        shared = m.backbone(x)
        g = m.branch_global(shared).amax(dim=(2, 3))
        p3 = m.branch_p3(shared)
        bottom = p3[:, :, 2 * p3.shape[2] // 3:].amax(dim=(2, 3))  # last of the 3 stripes
        torch.testing.assert_close(f[:, :D], reduce_part(m, g, 0))
        torch.testing.assert_close(f[:, 7 * D:], reduce_part(m, bottom, 7))
        logits = m.classify(f)
        expected = f[:, 7 * D:] @ m.part_head.weight[7].t() + m.part_head.bias[7]
        torch.testing.assert_close(logits[:, :, 7], expected)
        assert torch.equal(m(x), f)


def test_hpm_pyramid_pooling_and_eval_feature():
    m = small_hpm().eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        fmap = m.backbone(x)
        pooled = m.pooled(x)
        assert pooled.shape == (2, 64, 15)
        torch.testing.assert_close(pooled[:, :, 0], fmap.mean(dim=(2, 3)) + fmap.amax(dim=(2, 3)))
        top = fmap[:, :, : fmap.shape[2] // 2]  # first stripe of the 2-stripe level
        torch.testing.assert_close(pooled[:, :, 1], top.mean(dim=(2, 3)) + top.amax(dim=(2, 3)))
        last = fmap[:, :, -fmap.shape[2] // 8:]  # last stripe of the 8-stripe level
        torch.testing.assert_close(pooled[:, :, 14], last.mean(dim=(2, 3)) + last.amax(dim=(2, 3)))
        f = m(x)
        assert f.shape == (2, 15 * D) == (2, m.feat_dim)
        torch.testing.assert_close(f[:, 3 * D:4 * D], reduce_part(m, pooled[:, :, 3], 3))
        assert m.classify(f).shape == (2, PIDS, 15) and m.part_head.bias is None
        assert m.triplet_features(f) == (f,)  # HPM's trainer default: the whole feature


def test_hpm_trains():
    m = small_hpm().train()
    opt = torch.optim.SGD(m.parameters(), lr=0.05)
    ce = CrossEntropyLabelSmooth()
    x, y = torch.randn(*X), labels()
    first = None
    for _ in range(5):
        loss = ce(m.classify(m(x)), y)
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first


@pytest.mark.parametrize("build", [small_mgn, small_hpm])
def test_clips_and_checkpoint_round_trip(build, tmp_path):
    m = build().eval()
    with torch.no_grad():
        assert m(torch.randn(2, 3, 3, 128, 64)).shape == (2, m.feat_dim)
    m.train()
    m(torch.randn(*X))  # move BN statistics away from their initial values
    m.eval()
    path = save_checkpoint(tmp_path, model=m, epoch=1)
    fresh = build()
    state = load_checkpoint(path, model=fresh, restore_rng=False)
    assert state["feat_dim"] == m.feat_dim and state["arch"] == m.arch
    fresh.eval()
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), m(x))


def test_backbone_option_errors():
    assert model_options("cal_resnet50", backbone="timm:resnet18") == {"backbone": "timm:resnet18"}
    with pytest.raises(ConfigError, match="does not apply to mgn_resnet50"):
        create_model("mgn_resnet50", PIDS, backbone="timm:resnet18")
    with pytest.raises(ConfigError, match="does not apply to small_resnet"):
        create_model("small_resnet", PIDS, backbone="timm:resnet18")
    with pytest.raises(ConfigError, match="timm:<name>"):
        create_model("bot_resnet50", PIDS, backbone="resnet18")


def test_missing_timm_is_one_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'dlcr\[timm\]'"):
        create_model("bot_resnet50", PIDS, backbone="timm:resnet18")


# --- timm backbones --------------------------------------------------------------------------

@pytest.fixture()
def timm():
    return pytest.importorskip("timm")  # skips only the tests that take this fixture


TINY = "timm:test_resnet"  # a 0.4M-parameter ResNet of timm's test models (96-channel last stage)


@pytest.mark.parametrize("arch, dim", [("bot_resnet50", 96), ("cal_resnet50", 192), ("pcb_resnet50", 6 * 256),
                                       ("hpm_resnet50", 15 * 256)])
def test_timm_backbone_under_the_heads(timm, arch, dim):
    torch.manual_seed(0)
    m = create_model(arch, PIDS, backbone=TINY)
    assert isinstance(m.backbone, tb.TimmBackbone) and m.backbone.out_channels == 96 and m.feat_dim == dim
    m.train()
    f, logits = m(torch.randn(4, 3, 64, 32), with_logits=True)
    assert f.shape == (4, dim) and logits.shape[:2] == (4, PIDS)
    CrossEntropyLabelSmooth()(logits, labels()).backward()
    assert m.backbone.net.conv1[0].weight.grad is not None


def test_timm_transformer_gives_a_map(timm):
    m = create_model("bot_resnet50", PIDS, backbone="timm:test_vit").eval()
    with torch.no_grad():
        assert m.backbone(torch.randn(2, 3, 64, 32)).shape == (2, 64, 4, 2)
        assert m(torch.randn(2, 3, 64, 32)).shape == (2, 64)


def test_unknown_timm_name_has_a_hint(timm):
    with pytest.raises(ConfigError, match="unknown timm model 'test_resnett'.*did you mean 'test_resnet'"):
        create_model("cal_resnet50", PIDS, backbone="timm:test_resnett")


def test_timm_local_file_loads_strictly(timm, tmp_path):
    src = timm.create_model("test_resnet", pretrained=False)  # with its classifier (fc.*)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    m = create_model("bot_resnet50", PIDS, backbone=TINY, pretrained=path)
    torch.testing.assert_close(m.backbone.net.conv1[0].weight, src.conv1[0].weight)
    bad = {k: v for k, v in src.state_dict().items() if not k.startswith("layer4.")}
    save_file({k: v.contiguous() for k, v in bad.items()}, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="missing backbone key 'layer4"):
        create_model("bot_resnet50", PIDS, backbone=TINY, pretrained=tmp_path / "bad.safetensors")


def test_timm_imagenet_uses_the_local_cache_only(timm, tmp_path, monkeypatch):
    src = timm.create_model("test_resnet", pretrained=False)
    cached = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(cached))
    monkeypatch.setattr(tb, "cached_weights", lambda cfg: cached)
    m = create_model("cal_resnet50", PIDS, backbone=TINY, pretrained="imagenet")
    torch.testing.assert_close(m.backbone.net.layer4[0].conv1.weight, src.layer4[0].conv1.weight)
    # nothing cached: random weights and exactly one warning
    monkeypatch.setattr(tb, "cached_weights", lambda cfg: None)
    monkeypatch.setattr(tb, "_warn_once", lambda key, msg, stacklevel=5: warnings.warn(msg, UserWarning, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_model("cal_resnet50", PIDS, backbone=TINY, pretrained="imagenet")
    assert len(caught) == 1 and "not in the local cache" in str(caught[0].message)


def test_timm_checkpoint_round_trip(timm, tmp_path):
    torch.manual_seed(0)
    m = create_model("bot_resnet50", PIDS, backbone=TINY).eval()
    path = save_checkpoint(tmp_path, model=m, epoch=1)
    fresh = create_model("bot_resnet50", PIDS, backbone=TINY)
    load_checkpoint(path, model=fresh, restore_rng=False)
    fresh.eval()
    x = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), m(x))
