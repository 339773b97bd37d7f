"""Training end to end on a tiny synthetic world: arms, checkpoints, exact resume, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dlcr.config import load_config
from dlcr.config_args import trainer_from_config
from dlcr.data.datasets import create_dataset
from dlcr.engine.build import GeneratedData, TrainData
from dlcr.engine.trainer import Trainer
from dlcr.generation import stages
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.outputs import GENERATED_MANIFEST as MANIFEST
from dlcr.generation.parsers import create_parser
from dlcr.io.tables import read_table
from user_dataset import as_prcc

H, W = 64, 32


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from dlcr.synth import render_world

    root = tmp_path_factory.mktemp("world")
    render_world(root / "w", ids=12, seed=3, height=H, width=W)
    ds = create_dataset("synthcc", root / "w")
    work = root / "work"
    queries = list(ds.splits["query"])
    stages.run_masks(create_parser("synthcc"), list(ds.train) + queries, ds.root, work)
    stages.run_describe(ds.train, ds.root, work, captioner=create_captioner("rule"), summarizer=create_summarizer("vote"))
    stages.run_plan(ds.train, work, k=4, seed=0, allow_same_person=False, num_partitions=4, dataset="synthcc",
                    generator="recolor")
    stages.run_inpaint(work, ds.root, backend="recolor", backend_options={}, batch_size=64)
    stages.run_plan_queries(queries, work, l=2, seed=0, dataset="synthcc", generator="recolor")
    stages.run_inpaint(work, ds.root, backend="recolor", backend_options={}, batch_size=64, queries=True)
    return {"root": root / "w", "work": work, "ds": ds}


def _cfg(world: dict, mode: str, epochs: int = 2, **extra: object) -> object:
    sets = [f"data.root={world['root']}", f"data.height={H}", f"data.width={W}", "data.workers=0",
            f"train.epochs={epochs}", "train.eval_every=0", "loss.cal_start_epoch=1", "sampler.batch_size=8",
            "sampler.num_instances=2", f"sampler.mode={mode}", "sampler.progressive_every=1"]
    sets += [f"{k}={v}" for k, v in extra.items()]
    return load_config("synthcc", sets)


def _gen(world: dict) -> GeneratedData:
    d = world["work"] / stages.GENERATED
    return GeneratedData(rows=read_table(d / MANIFEST), root=d)


def test_paired_batches_hold_each_real_image_and_one_of_its_own_variants(world):
    tr = trainer_from_config(_cfg(world, "paired"), TrainData.from_dataset(world["ds"]),
                             world["root"].parent / "r0", generated=_gen(world))
    batch = next(iter(tr.sampler))
    real, gen = batch[:8], batch[8:]
    assert len(gen) == 8
    for r, g in zip(real, gen, strict=True):
        assert not tr.pool[r].generated
        assert tr.pool[g].generated and tr.pool[g].source == r
        assert tr.pool[g].pid == tr.pool[r].pid and tr.pool[g].clothes_id == -1
        assert tr.pool[g].partition == 0  # epoch 0: only the first progressive partition


def test_concat_matches_paired_compute(world):
    data = TrainData.from_dataset(world["ds"])
    paired = trainer_from_config(_cfg(world, "paired"), data, world["root"].parent / "r1", generated=_gen(world))
    concat = trainer_from_config(_cfg(world, "concat"), data, world["root"].parent / "r2", generated=_gen(world))
    assert concat.sampler.batch_size == 16
    assert concat.max_steps == len(paired.sampler)


def test_training_writes_checkpoints_and_resume_continues_exactly(world, tmp_path):
    data = TrainData.from_dataset(world["ds"])
    torch.manual_seed(0)
    full = trainer_from_config(_cfg(world, "paired", epochs=3), data, tmp_path / "full", generated=_gen(world))
    full.fit()
    ref = {k: v.clone() for k, v in full.model.state_dict().items()}
    hist = json.loads((tmp_path / "full" / "history.json").read_text())
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert hist[-1]["adv"] > 0  # the adversarial loss is on from cal_start_epoch
    assert (tmp_path / "full" / "checkpoints" / "last.json").is_file()
    assert (tmp_path / "full" / "log.jsonl").read_text().count("\n") == 3
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        pass
    else:  # TensorBoard scalars next to log.jsonl
        assert list((tmp_path / "full" / "tb").glob("events.out.tfevents.*"))

    torch.manual_seed(0)
    part = trainer_from_config(_cfg(world, "paired", epochs=2), data, tmp_path / "part", generated=_gen(world))
    part.fit()
    torch.manual_seed(123)  # the resumed run must not depend on the process's RNG state
    again = trainer_from_config(_cfg(world, "paired", epochs=3), data, tmp_path / "part", generated=_gen(world))
    assert again.resume() and again.start_epoch == 2
    again.sampler.set_epoch(2)
    full.sampler.set_epoch(2)
    assert list(again.sampler) == list(full.sampler)  # same sampler stream after the resume
    again.fit()
    for k, v in again.model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_cli_train_and_evaluate_with_refinement(world, tmp_path, capsys):
    from dlcr.cli.main import main

    common = ["--config", "synthcc", "--set", f"data.root={world['root']}", "--set", f"data.height={H}",
              "--set", f"data.width={W}", "--set", "data.workers=0", "--work", str(world["work"])]
    main(["train", *common, "--set", "train.epochs=1", "--set", "train.eval_every=1", "--set", "sampler.batch_size=8",
          "--set", "sampler.num_instances=2", "--name", "cli", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "trained 1 epoch" in out
    ck = tmp_path / "cli" / "checkpoints" / "last.json"
    from dlcr.cli.evaluate import load_model

    ref, _ = load_model(ck, "nope")
    assert ref.arch == "small_resnet"  # from the checkpoint, not the fallback
    for other in (ck.parent, ck.with_suffix(".safetensors")):  # a folder or the weights file name the same run
        m, _ = load_model(other, "nope")
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values(), strict=True))
    main(["evaluate", *common, "--checkpoint", str(ck), "--refine", "--l", "2", "--m", "3"])
    metrics = json.loads((tmp_path / "cli" / "eval" / "metrics.json").read_text())
    assert {"standard", "sc", "cc", "standard_refined", "cc_refined"} <= set(metrics)
    for v in metrics.values():
        assert 0.0 <= v["top1"] <= 1.0 and 0.0 <= v["mAP"] <= 1.0
    with pytest.raises(SystemExit) as e:  # an existing run is not overwritten silently
        main(["train", *common, "--set", "train.epochs=1", "--name", "cli", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "--resume" in capsys.readouterr().err


def test_missing_manifest_is_a_clear_error(world, tmp_path, capsys):
    from dlcr.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["train", "--set", f"data.root={world['root']}", "--work", str(tmp_path / "nowork"),
              "--out", str(tmp_path)])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest" in err[0] and "dlcr generate all" in err[0]


def test_generated_paths_stay_inside_the_work_folder(world):
    rows = read_table(world["work"] / stages.GENERATED / MANIFEST)
    assert rows and all(not Path(r["file"]).is_absolute() and ".." not in Path(r["file"]).parts for r in rows)


def test_resume_is_exact_with_loader_workers(world, tmp_path):
    """With data.workers=2 the augmentations come from workers seeded per epoch from the checkpointed
    state, so a run resumed after epoch 1 ends with the uninterrupted run's weights."""
    data = TrainData.from_dataset(world["ds"])
    kw = {"data.workers": 2, "data.random_erasing": 0.5}
    steps = 3  # a few batches per epoch keep the test short; the workers still prefetch past them

    def trainer(epochs: int, out: str) -> Trainer:
        tr = trainer_from_config(_cfg(world, "paired", epochs=epochs, **kw), data, tmp_path / out,
                                 generated=_gen(world))
        tr.max_steps = steps
        return tr

    torch.manual_seed(0)
    full = trainer(2, "full")
    full.fit()
    torch.manual_seed(0)
    trainer(1, "part").fit()
    torch.manual_seed(123)
    again = trainer(2, "part")
    assert again.loader.num_workers == 2
    assert again.resume() and again.start_epoch == 1
    again.fit()
    ref = full.model.state_dict()
    differ = [k for k, v in again.model.state_dict().items() if not torch.equal(v, ref[k])]
    assert not differ, f"{len(differ)}/{len(ref)} tensors differ from the uninterrupted run"
    ck = "checkpoints/last.safetensors"  # identical states, identical files
    assert (tmp_path / "full" / ck).read_bytes() == (tmp_path / "part" / ck).read_bytes()


def _cli_common(world: dict) -> list[str]:
    return ["--config", "synthcc", "--set", f"data.root={world['root']}", "--set", f"data.height={H}",
            "--set", f"data.width={W}", "--set", "data.workers=0", "--work", str(world["work"]),
            "--set", "train.eval_every=0", "--set", "sampler.batch_size=8", "--set", "sampler.num_instances=2"]


def test_damaged_last_checkpoint_stops_the_run_with_and_without_resume(world, tmp_path, capsys):
    from dlcr.cli.main import main

    common = [*_cli_common(world), "--name", "run", "--out", str(tmp_path)]
    main(["train", *common, "--set", "train.epochs=1"])
    run = tmp_path / "run"
    st = run / "checkpoints" / "last.safetensors"
    st.write_bytes(st.read_bytes()[:-100])  # truncated
    before = {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    for resume in (["--resume"], []):
        with pytest.raises(SystemExit) as e:
            main(["train", *common, "--set", "train.epochs=2", *resume])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: "), err
        if resume:
            assert "cannot resume" in err[0] and "truncated" in err[0] and "last.safetensors" in err[0]
        else:
            assert "already holds a run" in err[0] and "--resume" in err[0]
        assert {p.name: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing overwritten


def test_damaged_last_checkpoint_falls_back_to_an_intact_previous_one(world, tmp_path, monkeypatch, caplog):
    from dlcr.engine import checkpoint

    data = TrainData.from_dataset(world["ds"])
    out = tmp_path / "run"
    first = trainer_from_config(_cfg(world, "paired", epochs=1), data, out, generated=_gen(world))
    first.max_steps = 2  # two batches an epoch are enough here
    first.fit()
    # a run killed after writing checkpoint 2 but before removing the kept copy of checkpoint 1
    monkeypatch.setattr(checkpoint, "_drop_previous", lambda d, name: None)
    tr = trainer_from_config(_cfg(world, "paired", epochs=2), data, out, generated=_gen(world))
    tr.max_steps = 2
    assert tr.resume()
    tr.fit()
    monkeypatch.undo()
    ck = out / "checkpoints"
    assert json.loads((ck / "last.prev.json").read_text())["epoch"] == 0
    st = ck / "last.optim.safetensors"
    raw = bytearray(st.read_bytes())
    raw[-1] ^= 0xFF  # same size, different bytes
    st.write_bytes(bytes(raw))
    again = trainer_from_config(_cfg(world, "paired", epochs=2), data, out, generated=_gen(world))
    with caplog.at_level("WARNING", logger="dlcr"):
        assert again.resume() and again.start_epoch == 1
    notes = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("last.json is damaged" in m and "corrupt" in m and "last.prev" in m for m in notes), notes


def test_prcc_validation_split_selects_the_best_checkpoint(world, tmp_path):
    """PRCC's val folder (C -> A, like its clothes-changing test) is evaluated every eval_every epochs
    and keeps ``best``; the test protocols are logged but never select."""
    root = as_prcc(world["ds"], world["root"], tmp_path / "data")
    ds = create_dataset("prcc", root)
    data = TrainData.from_dataset(ds)
    assert [p.name for p in data.validation_protocols()] == ["val"]
    sets = [f"data.root={root}", f"data.height={H}", f"data.width={W}", "data.workers=0", "model.name=small_resnet",
            "model.pretrained=null", "train.epochs=3", "train.eval_every=1", "loss.cal_start_epoch=1",
            "sampler.batch_size=8", "sampler.num_instances=2", "sampler.mode=none"]
    tr = trainer_from_config(load_config("prcc", sets), data, tmp_path / "run")
    res = tr.fit()
    vals = [h["val_mAP"] for h in res.history]
    assert len(vals) == 3 and all(0.0 <= v <= 1.0 for v in vals)
    assert all("cc_mAP" in h and "sc_mAP" in h for h in res.history)  # test metrics are still logged
    best_epoch = 1 + int(np.argmax(vals))  # the first epoch with the highest validation mAP
    assert res.best_checkpoint is not None and res.best_checkpoint.is_file()
    meta = json.loads(res.best_checkpoint.read_text())
    assert tuple(tr.best) == (vals[best_epoch - 1], best_epoch)
    assert meta["epoch"] + 1 == best_epoch, meta["epoch"]


def test_model_widths_train_and_evaluate_from_the_checkpoint(world, tmp_path, capsys):
    """``model.widths`` (the demo's narrower small_resnet) is rebuilt by ``dlcr evaluate`` from the
    checkpoint's config, whatever the evaluation's own config says; other models refuse it."""
    from dlcr.cli.evaluate import load_model
    from dlcr.cli.main import main

    common = ["--config", "synthcc", "--set", f"data.root={world['root']}", "--set", f"data.height={H}",
              "--set", f"data.width={W}", "--set", "data.workers=0", "--work", str(world["work"])]
    main(["train", *common, "--set", "train.epochs=1", "--set", "train.eval_every=0", "--set", "sampler.batch_size=8",
          "--set", "sampler.num_instances=2", "--set", "model.widths=[8,16,24,32]", "--name", "narrow",
          "--out", str(tmp_path)])
    ck = tmp_path / "narrow" / "checkpoints" / "last.json"
    model, _ = load_model(ck, "nope")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert max(c.out_channels for c in convs) == 32 and model.feat_dim == 64  # [max ; avg] of the last stage
    main(["evaluate", *common, "--checkpoint", str(ck)])
    assert json.loads((tmp_path / "narrow" / "eval" / "metrics.json").read_text())["standard"]["num_queries"] > 0
    capsys.readouterr()
    for bad, needle in (("model.widths=[8,16]", "4 stage widths"), ("model.widths=[0,8,8,8]", "model.widths"),
                        ("model.name=bot_resnet50", "small_resnet only")):
        extra = ["--set", "model.widths=[8,16,24,32]"] if "name" in bad else []
        with pytest.raises(SystemExit) as e:
            main(["train", *common, *extra, "--set", bad, "--set", "model.pretrained=null", "--name", "x",
                  "--out", str(tmp_path)])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and needle in err[-1], (bad, err)


def test_mgn_triplet_loss_is_the_sum_over_its_three_global_features(world, tmp_path):
    """MGN's metric loss is applied to each of its three 256-d global features separately and summed
    (its paper's recipe); every other model's is applied to the whole feature (one call)."""
    tr = trainer_from_config(_cfg(world, "none", **{"model.name": "mgn_resnet50", "model.pretrained": "null"}),
                             TrainData.from_dataset(world["ds"]), tmp_path / "mgn")
    seen: list[tuple[int, ...]] = []
    plain = tr.triplet

    def spy(f, pids):
        seen.append(tuple(f.shape))
        return plain(f, pids)

    tr.triplet = spy
    batch = next(iter(tr.loader))
    _, _, _, terms = tr._train_step(batch, False, torch.zeros(()))
    assert seen == [(8, 256)] * 3 and torch.isfinite(terms[2])
    seen.clear()
    small = trainer_from_config(_cfg(world, "none"), TrainData.from_dataset(world["ds"]), tmp_path / "small")
    plain = small.triplet
    small.triplet = spy
    small._train_step(next(iter(small.loader)), False, torch.zeros(()))
    assert seen == [(8, small.model.feat_dim)]
