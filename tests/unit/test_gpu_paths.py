"""The GPU options of issue 18 on the CPU: config keys, their wiring, and that they leave the CPU
path as it was (the GPU behaviour itself is tested in tests/gpu, skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlcr.config import load_config
from dlcr.errors import ConfigError


def test_new_config_keys_default_to_todays_behaviour_and_validate():
    cfg = load_config(None)
    assert (cfg.train.amp_dtype, cfg.train.channels_last, cfg.train.sync_every) == ("float16", False, 0)
    assert (cfg.eval.half, cfg.generate.channels_last, cfg.generate.compile) == (False, False, False)
    cfg = load_config(None, ["train.amp_dtype=bfloat16", "train.channels_last=true", "eval.half=true",
                             "generate.compile=max-autotune", "generate.channels_last=true", "train.sync_every=50"])
    assert (cfg.train.amp_dtype, cfg.generate.compile, cfg.train.sync_every) == ("bfloat16", "max-autotune", 50)
    with pytest.raises(ConfigError, match="amp_dtype"):
        load_config(None, ["train.amp_dtype=float8"])
    with pytest.raises(ConfigError, match="sync_every"):
        load_config(None, ["train.sync_every=-1"])


def test_speed_ups_reach_the_inpainter_only_when_set():
    from dlcr.config_args import inpainter_options

    assert not {"channels_last", "compile"} & set(inpainter_options("diffusers", load_config(None).generate))
    gen = load_config(None, ["generate.compile=true", "generate.channels_last=true"]).generate
    opts = inpainter_options("diffusers", gen)
    assert opts["compile"] is True and opts["channels_last"] is True


def test_check_accel_defaults_and_errors():
    from dlcr.generation.inpainters.diffusers_backend import check_accel

    assert check_accel({}) == {"channels_last": False, "compile": False, "compile_backend": "inductor"}
    assert check_accel({"compile": "max-autotune"})["compile"] == "max-autotune"
    assert check_accel({"compile": "true"})["compile"] is True
    with pytest.raises(ConfigError, match="unknown diffusers inpainter option"):
        check_accel({"compile_mode": "x"})
    with pytest.raises(ConfigError, match="generate.compile must be"):
        check_accel({"compile": "fastest"})


def _items(n: int, h: int = 64, w: int = 32):
    from dlcr.generation.inpainting import InpaintItem
    from dlcr.generation.planning import Job

    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        mask = np.zeros((h, w), dtype=bool)
        mask[16:48, 4:28] = True
        job = Job(job_id=f"j{i}", kind="train", dataset="t", source=f"{i}.png", source_clothes_key="0_0", pid=0,
                  target_clothes_key="1_0", variant=0, partition=0, prompt="a red shirt", seed=i, generator="diffusers")
        out.append(InpaintItem(job=job, image=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), mask=mask))
    return out


@pytest.mark.usefixtures("one_torch_thread")
def test_compile_and_channels_last_wiring_on_the_cpu(tmp_path, monkeypatch):
    from tests.public_formats.sd import build_sd15_inpainting

    from dlcr.generation.inpainters.diffusers_backend import DiffusersInpainter

    path = build_sd15_inpainting(tmp_path / "sd15")
    kw = {"scheduler": "ddim", "steps": 1, "height": 64, "width": 32, "device": "cpu", "micro_batch": 2,
          "local_files_only": True}
    items = _items(3)
    base = DiffusersInpainter(path, **kw)
    assert "AttnProcessor2_0" in base.attention
    ref = np.stack(base(items)).astype(int)

    calls = []

    def fake_compile(fn, **options):
        calls.append(options)
        return fn

    monkeypatch.setattr(torch, "compile", fake_compile)
    comp = DiffusersInpainter(path, compile="max-autotune", compile_backend="eager", **kw)
    assert calls == [{"mode": "max-autotune", "dynamic": False, "backend": "eager"}]
    assert np.array_equal(np.stack(comp(items)).astype(int), ref)  # the compiled forward is the UNet's own

    cl = DiffusersInpainter(path, channels_last=True, **kw)
    conv = cl.pipe.unet.conv_in.weight
    assert conv.is_contiguous(memory_format=torch.channels_last)
    assert np.abs(np.stack(cl(items)).astype(int) - ref).max() <= 2  # NHWC kernels: rounding only


def test_half_feature_extraction_is_ignored_on_the_cpu():
    from dlcr.evaluation.features import _autocast_dtype, extract_features

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    batch = {"img": torch.randn(5, 3, 16, 8), "pid": torch.arange(5), "camid": torch.zeros(5)}
    a = extract_features(model, [batch])
    b = extract_features(model, [batch], half=True)
    assert torch.equal(a.feats, b.feats) and b.feats.dtype == torch.float32
    assert _autocast_dtype(True, torch.device("cpu")) is None
    assert _autocast_dtype("bfloat16", torch.device("cuda")) == torch.bfloat16
    assert _autocast_dtype(False, torch.device("cuda")) is None


def test_eval_settings_take_eval_half():
    from dlcr.config_args import eval_settings

    assert eval_settings(load_config(None)).half is False
    assert eval_settings(load_config(None, ["eval.half=true"])).half is True


def test_schp_stays_float32_on_the_cpu():
    from dlcr.generation.parsers.schp import SCHPNet, SCHPParser

    net = SCHPNet(num_classes=20, layers=(1, 1, 1, 1), width=8)
    p = SCHPParser(net, input_size=32, device="cpu", dtype="float16")
    assert p.dtype == torch.float32 and next(p.net.parameters()).dtype == torch.float32
    labels = p.parse([np.zeros((40, 20, 3), dtype=np.uint8)])
    assert labels[0].shape == (40, 20)
