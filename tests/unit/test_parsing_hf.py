"""The transformers segmentation backend with tiny random SegFormers built offline."""

from __future__ import annotations

import inspect
import logging

import numpy as np
import pytest

pytest.importorskip("transformers")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

from dlcr.errors import CheckpointError, ConfigError  # noqa: E402
from dlcr.generation.parsers import create_parser  # noqa: E402
from dlcr.generation.parsers.hf_segmentation import HFSegmentationParser  # noqa: E402
from dlcr.lip import ATR_TO_LIP, LIP_LABELS
from dlcr.testing.tiny import tiny_segformer  # noqa: E402


@pytest.fixture(scope="module")
def lip_model(tmp_path_factory):
    return tiny_segformer(tmp_path_factory.mktemp("seg"), labels="lip")


@pytest.fixture(scope="module")
def atr_model(tmp_path_factory):
    return tiny_segformer(tmp_path_factory.mktemp("seg"), labels="atr", seed=1)


def _images():
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, (23, 11, 3), dtype=np.uint8),
        rng.integers(0, 256, (9, 40, 3), dtype=np.uint8),
    ]


def _force_class(folder, tmp_path, cls: int):
    """A copy of a saved model whose classifier predicts ``cls`` everywhere."""
    import shutil

    dst = tmp_path / f"forced-{cls}"
    shutil.copytree(folder, dst)
    weights = load_file(str(dst / "model.safetensors"))
    w_key = next(k for k in weights if k.endswith("classifier.weight"))
    b_key = next(k for k in weights if k.endswith("classifier.bias"))
    weights[w_key] = torch.zeros_like(weights[w_key])
    weights[b_key] = torch.zeros_like(weights[b_key])
    weights[b_key][cls] = 3.0
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_lip_model_parses_by_path(lip_model):
    parser = create_parser("hf", model=str(lip_model), device="cpu", batch_size=1)
    assert isinstance(parser, HFSegmentationParser)
    np.testing.assert_array_equal(parser.table, np.arange(20))
    assert parser.unmapped == ()
    assert parser.mapping()["Upper-clothes"] == "Upper-clothes"
    images = _images()
    labels = parser.parse(images)
    assert [lab.shape for lab in labels] == [(23, 11), (9, 40)]
    assert all(lab.dtype == np.uint8 and lab.max() < len(LIP_LABELS) for lab in labels)

    # the same as running the model by hand: processor, logits, bilinear upsampling, argmax
    from PIL import Image

    inputs = parser.processor(images=[Image.fromarray(images[1])], return_tensors="pt")
    with torch.no_grad():
        logits = parser.net(**inputs).logits
    up = torch.nn.functional.interpolate(logits, size=(9, 40), mode="bilinear", align_corners=False)
    np.testing.assert_array_equal(labels[1], up[0].argmax(0).numpy().astype(np.uint8))
    # batching does not change the answer
    batched = HFSegmentationParser(lip_model, device="cpu", batch_size=2).parse(images)
    for a, b in zip(labels, batched, strict=True):
        np.testing.assert_array_equal(a, b)


def test_atr_model_is_mapped_to_lip(atr_model, tmp_path):
    parser = HFSegmentationParser(atr_model, device="cpu")
    np.testing.assert_array_equal(parser.table, ATR_TO_LIP)
    assert parser.mapping()["Belt"] == "Pants" and parser.mapping()["Bag"] == "Background"
    labels = parser.parse(_images())
    assert all(set(np.unique(lab)) <= set(ATR_TO_LIP.tolist()) for lab in labels)
    # a model that always says "Skirt" (ATR 5) yields LIP 12 on every pixel
    forced = HFSegmentationParser(_force_class(atr_model, tmp_path, 5), device="cpu")
    assert all((lab == 12).all() for lab in forced.parse(_images()))


def test_unmapped_names_warn_and_overrides_apply(tmp_path, caplog):
    names = ["background", "Torso-skin", "Upper_Clothes", "Shoes"]
    folder = tiny_segformer(tmp_path, labels=names)
    with caplog.at_level(logging.WARNING, logger="dlcr"):
        parser = HFSegmentationParser(folder, device="cpu")
    assert parser.table.tolist() == [0, 0, 5, 18] and parser.unmapped == ("Torso-skin",)
    assert "Torso-skin" in caplog.text
    parser = HFSegmentationParser(folder, label_map={"torso skin": 14}, device="cpu")
    assert parser.table.tolist() == [0, 14, 5, 18] and parser.unmapped == ()
    forced = HFSegmentationParser(
        _force_class(folder, tmp_path, 1), label_map={"torso skin": 14}, device="cpu"
    )
    assert all((lab == 14).all() for lab in forced.parse(_images()))
    with pytest.raises(ConfigError, match="not a class of the model"):
        HFSegmentationParser(folder, label_map={"hat": 1}, device="cpu")


def test_load_errors_and_safe_defaults(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        HFSegmentationParser(tmp_path / "missing", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="cannot load segmentation model"):
        HFSegmentationParser(tmp_path / "empty", device="cpu")
    assert inspect.signature(HFSegmentationParser).parameters["trust_remote_code"].default is False
    from dlcr.generation.parsers import PARSERS

    assert inspect.signature(PARSERS.get("hf")).parameters["trust_remote_code"].default is False
