"""Model fingerprints identify a model by its bytes: other weights of the same size differ, the same
model copied elsewhere matches, and large weight files are hashed once per version."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dlcr.generation import signature as sg
from dlcr.generation import signature_record


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DLCR_CACHE_DIR", str(tmp_path / "cache"))


def _model(folder: Path, seed: int, size: int = 1 << 12) -> Path:
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionInpaintPipeline"}')
    (folder / "unet" / "config.json").write_text('{"in_channels": 9}')
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(data)
    return folder


def test_weights_of_the_same_size_but_other_bytes_differ(tmp_path):
    a, b = _model(tmp_path / "a", 0), _model(tmp_path / "b", 1)
    fa, fb = sg.model_fingerprint(a), sg.model_fingerprint(b)
    assert fa["config_sha256"] == fb["config_sha256"]
    assert fa["weights_sha256"] != fb["weights_sha256"]
    assert "weights_sha256" in signature_record.signature_diff({"m": fa}, {"m": fb})


def test_a_copy_elsewhere_matches_and_an_edited_config_does_not(tmp_path):
    a = _model(tmp_path / "a", 0)
    copy = tmp_path / "moved" / "a"
    shutil.copytree(a, copy)
    assert sg.model_fingerprint(copy) == sg.model_fingerprint(a)
    (copy / "unet" / "config.json").write_text('{"in_channels": 4}')
    assert sg.model_fingerprint(copy)["config_sha256"] != sg.model_fingerprint(a)["config_sha256"]


def test_large_weight_files_are_hashed_once_per_version(tmp_path, monkeypatch):
    monkeypatch.setattr(sg, "_CACHE_MIN_BYTES", 1024)
    a = _model(tmp_path / "a", 0)
    first = sg.model_fingerprint(a)
    reads = []
    real_open = open

    def counting_open(path, *args, **kwargs):
        if str(path).endswith(".safetensors"):
            reads.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert sg.model_fingerprint(a) == first and reads == []  # from the cache
    w = a / "unet" / "diffusion_pytorch_model.safetensors"
    w.write_bytes(bytes(reversed(w.read_bytes())))  # new bytes, same size, new mtime
    assert sg.model_fingerprint(a)["weights_sha256"] != first["weights_sha256"] and len(reads) == 1


def test_a_single_checkpoint_file_is_hashed(tmp_path):
    p = tmp_path / "schp.pth"
    p.write_bytes(b"a" * 100)
    q = tmp_path / "other" / "schp.pth"
    q.parent.mkdir()
    q.write_bytes(b"b" * 100)
    assert sg.model_fingerprint(p) != sg.model_fingerprint(q)
    assert sg.model_fingerprint(p)["sha256"] == sg.file_sha256(p)[:16]


def test_a_hub_id_records_the_cached_commit(tmp_path, monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    ref = tmp_path / "hub" / "models--org--sd-inpaint" / "refs" / "main"
    ref.parent.mkdir(parents=True)
    ref.write_text("0123456789abcdef0123456789abcdef01234567")
    fp = sg.model_fingerprint("org/sd-inpaint")
    assert fp == {"model": "org/sd-inpaint", "revision": None, "commit": "0123456789abcdef0123456789abcdef01234567"}
    assert "commit" not in sg.model_fingerprint("org/not-cached")
