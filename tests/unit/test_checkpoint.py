import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dlcr.data.samplers import IdentitySampler
from dlcr.engine.checkpoint import load_checkpoint, save_checkpoint
from dlcr.engine.checkpoint_files import latest_checkpoint
from dlcr.errors import CheckpointError
from dlcr.models import ClothesClassifier, create_model

PIDS = [p for p in range(6) for _ in range(4)]


def build(seed: int, num_pids: int = 4, **kw):
    torch.manual_seed(seed)
    model = create_model("small_resnet", num_pids, widths=(8, 16, 16, 32), **kw)
    clothes = ClothesClassifier(model.feat_dim, 6)
    opts = {"model": torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=5e-4),
            "clothes": torch.optim.Adam(clothes.parameters(), lr=1e-3)}
    scheds = {"model": torch.optim.lr_scheduler.MultiStepLR(opts["model"], milestones=[1, 3], gamma=0.1)}
    sampler = IdentitySampler(PIDS, 8, 4, seed=seed)
    return model, clothes, opts, scheds, sampler


def step(model, clothes, opts, x, y, c):
    model.train()
    for o in opts.values():
        o.zero_grad()
    f = model(x)
    loss = F.cross_entropy(model.classify(f), y) + F.cross_entropy(clothes(f.detach()), c)
    loss.backward()
    for o in opts.values():
        o.step()


def data(seed: int):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(8, 3, 32, 16, generator=g), torch.randint(0, 4, (8,), generator=g), torch.randint(0, 6, (8,), generator=g)


def save_trained(tmp_path: Path, name: str = "last", epoch: int = 2):
    model, clothes, opts, scheds, sampler = build(0)
    step(model, clothes, opts, *data(1))
    scheds["model"].step()
    sampler.set_epoch(epoch)
    torch.manual_seed(123)
    np.random.seed(5)
    random.seed(7)
    path = save_checkpoint(tmp_path, model=model, clothes_classifier=clothes, optimizers=opts, schedulers=scheds,
                           sampler=sampler, epoch=epoch, config={"model": {"name": "small_resnet"}, "m": [20, 40]},
                           extra={"best_map": 0.5}, name=name)
    return path, (model, clothes, opts, scheds, sampler)


def test_weights_only_loads_do_not_read_the_optimiser_state(tmp_path: Path):
    path, (model, *_rest) = save_trained(tmp_path)
    (tmp_path / "last.optim.safetensors").write_bytes(b"damaged")
    m2 = build(9)[0]
    load_checkpoint(path, model=m2, restore_rng=False)
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in model.state_dict().items())
    with pytest.raises(CheckpointError):  # anything that needs the state still checks it
        load_checkpoint(path, model=build(9)[0])
    with pytest.raises(CheckpointError):
        load_checkpoint(path, model=build(9)[0], optimizers=build(9)[2], restore_rng=False)


def test_round_trip_exact(tmp_path: Path):
    path, (model, clothes, opts, scheds, sampler) = save_trained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.json", "last.optim.safetensors", "last.safetensors"]
    after_save = (torch.rand(3), np.random.rand(3), random.random())

    m2, c2, o2, s2, smp2 = build(9)  # different initial weights, epoch and seed
    state = load_checkpoint(tmp_path, model=m2, clothes_classifier=c2, optimizers=o2, schedulers=s2, sampler=smp2)
    assert state["epoch"] == 2 and state["arch"] == "small_resnet" and state["num_pids"] == 4
    assert state["num_clothes"] == 6 and state["feat_dim"] == m2.feat_dim
    assert state["config"] == {"model": {"name": "small_resnet"}, "m": [20, 40]} and state["extra"] == {"best_map": 0.5}
    # RNG continues exactly where it was at save time
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(after_save[0], again[0]) and np.array_equal(after_save[1], again[1])
    assert after_save[2] == again[2]
    for a, b in ((model, m2), (clothes, c2)):
        for k, v in a.state_dict().items():
            assert torch.equal(v, b.state_dict()[k]), k
    for k in opts:
        sa, sb = opts[k].state_dict(), o2[k].state_dict()
        assert sa["param_groups"] == sb["param_groups"]
        for pid, st in sa["state"].items():
            for key, val in st.items():
                assert torch.equal(val, sb["state"][pid][key]), (k, pid, key)
    assert s2["model"].state_dict() == scheds["model"].state_dict()
    assert smp2.epoch == 2 and smp2.seed == 0 and list(smp2) == list(sampler)
    # training continues identically
    batch = data(2)
    step(model, clothes, opts, *batch)
    step(m2, c2, o2, *batch)
    for k, v in model.state_dict().items():
        assert torch.equal(v, m2.state_dict()[k]), k


def test_json_names_files_with_sha(tmp_path: Path):
    path, _ = save_trained(tmp_path)
    meta = json.loads(path.read_text())
    import hashlib

    for role in ("weights", "state"):
        f = tmp_path / meta["files"][role]["file"]
        assert hashlib.sha256(f.read_bytes()).hexdigest() == meta["files"][role]["sha256"]


@pytest.mark.parametrize("target", ["last.safetensors", "last.optim.safetensors"])
def test_truncated_or_corrupt_file_is_an_error(tmp_path: Path, target):
    save_trained(tmp_path)
    f = tmp_path / target
    data_ = f.read_bytes()
    f.write_bytes(data_[: len(data_) // 2])
    m, *_ = build(0)
    with pytest.raises(CheckpointError, match="truncated") as e:
        load_checkpoint(tmp_path / "last.json", model=m)
    assert "\n" not in str(e.value)
    assert latest_checkpoint(tmp_path) is None  # incomplete checkpoints are skipped
    flipped = bytearray(data_)
    flipped[-1] ^= 0xFF
    f.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(tmp_path / "last.json", model=m)


def test_mismatched_arch_or_shapes(tmp_path: Path):
    save_trained(tmp_path)
    other_pids, *_ = build(0, num_pids=5)
    with pytest.raises(CheckpointError, match="shape mismatch at 'model.classifier.weight'"):
        load_checkpoint(tmp_path, model=other_pids)
    wider = create_model("small_resnet", 4)
    with pytest.raises(CheckpointError, match="'model.backbone.conv1.weight'"):
        load_checkpoint(tmp_path, model=wider)
    deeper = create_model("small_resnet", 4, widths=(8, 16, 16, 32), layers=(1, 1, 1, 2))
    with pytest.raises(CheckpointError, match="has no key 'model.backbone.layer4.1"):
        load_checkpoint(tmp_path, model=deeper)
    renamed, *_ = build(0)
    renamed.arch = "bot_resnet50"
    with pytest.raises(CheckpointError, match="architecture 'small_resnet'"):
        load_checkpoint(tmp_path, model=renamed)
    m, c, o, s, _ = build(0)
    with pytest.raises(CheckpointError, match="optimizer 'backbone'"):
        load_checkpoint(tmp_path, model=m, optimizers={"backbone": o["model"]})


def test_latest_checkpoint_and_incomplete(tmp_path: Path):
    assert latest_checkpoint(tmp_path) is None
    save_trained(tmp_path, name="epoch_3", epoch=3)
    save_trained(tmp_path, name="epoch_5", epoch=5)
    (tmp_path / "notes.json").write_text('{"hello": 1}')
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch_5.json"
    (tmp_path / "epoch_5.json").unlink()  # as after a crash before the JSON was written
    assert latest_checkpoint(tmp_path) == tmp_path / "epoch_3.json"
    with pytest.raises(CheckpointError, match="incomplete"):
        load_checkpoint(tmp_path / "epoch_5.safetensors")
    m, *_ = build(1)
    assert load_checkpoint(tmp_path / "epoch_3.safetensors", model=m, restore_rng=False)["epoch"] == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no complete checkpoint"):
        load_checkpoint(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing")


def test_pickle_refused_unless_allowed(tmp_path: Path):
    m, *_ = build(0)
    torch.save({"state_dict": m.state_dict(), "epoch": 4}, tmp_path / "old.pth")
    m2, *_ = build(1)
    with pytest.raises(CheckpointError, match="allow_pickle"):
        load_checkpoint(tmp_path / "old.pth", model=m2)
    state = load_checkpoint(tmp_path / "old.pth", model=m2, allow_pickle=True)
    assert state["epoch"] == 4
    assert all(torch.equal(v, m2.state_dict()[k]) for k, v in m.state_dict().items())

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"model": Evil()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt", model=m2, allow_pickle=True)


def test_resave_same_name_replaces_atomically(tmp_path: Path):
    save_trained(tmp_path, epoch=1)
    path, _ = save_trained(tmp_path, epoch=2)
    assert json.loads(path.read_text())["epoch"] == 2
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    m, *_ = build(0)
    assert load_checkpoint(tmp_path, model=m)["epoch"] == 2


def test_identical_states_give_identical_files(tmp_path: Path):
    files = set()
    for i in range(6):  # the metadata order used to change from one save to the next
        path, _ = save_trained(tmp_path / str(i))
        meta = json.loads(path.read_text())
        files.add(tuple((path.parent / f).read_bytes() for f in ("last.safetensors", "last.optim.safetensors")))
        files.add(tuple(e["sha256"] for e in meta["files"].values()))
    assert len(files) == 2
    model, clothes, *_ = build(9)
    load_checkpoint(tmp_path / "0", model=model, clothes_classifier=clothes)  # still a valid file


def test_resume_checkpoint_refuses_a_damaged_last_without_an_intact_previous_one(tmp_path: Path):
    from dlcr.engine.checkpoint import resume_checkpoint

    path, _ = save_trained(tmp_path)
    assert resume_checkpoint(tmp_path) == (path, None)
    st = tmp_path / "last.safetensors"
    st.write_bytes(st.read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="cannot resume: .*last.safetensors is truncated"):
        resume_checkpoint(tmp_path)
    (tmp_path / "last.json").write_text("{")
    with pytest.raises(CheckpointError, match="cannot resume: cannot read checkpoint"):
        resume_checkpoint(tmp_path)
