"""Cross-dataset evaluation (the DLCR paper's Table 4): a model trained on one benchmark evaluated
zero-shot on another, whose identities (and their number) have nothing to do with the training ones."""

from __future__ import annotations

import json

import pytest

from dlcr.cli.main import main
from dlcr.data.datasets import create_dataset
from user_dataset import as_prcc

H, W = 64, 32


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small_resnet trained one epoch on a 16-identity synthcc world, and a PRCC-layout dataset made
    from another world (other seed, 10 identities)."""
    from dlcr.synth import render_world

    base = tmp_path_factory.mktemp("cross")
    render_world(base / "a", ids=16, seed=3, height=H, width=W)
    render_world(base / "b", ids=10, seed=11, height=H, width=W)
    prcc = as_prcc(create_dataset("synthcc", base / "b"), base / "b", base / "prcc")
    common = ["--set", f"data.height={H}", "--set", f"data.width={W}", "--set", "data.workers=0",
              "--set", "model.name=small_resnet", "--set", "model.pretrained=null"]
    main(["train", "-c", "synthcc", "--set", f"data.root={base / 'a'}", *common, "--set", "train.epochs=1",
          "--set", "train.eval_every=0", "--set", "sampler.batch_size=8", "--set", "sampler.num_instances=2",
          "--set", "sampler.mode=none", "--name", "src", "--out", str(base / "runs")])
    run = base / "runs" / "src"
    return {"run": run, "prcc": prcc, "common": common, "base": base}


def test_a_synthcc_model_evaluates_on_prcc_without_a_classifier_of_its_size(trained, capsys):
    run, prcc = trained["run"], trained["prcc"]
    meta = json.loads((run / "checkpoints" / "last.json").read_text())
    n_prcc = len({s.pid for s in create_dataset("prcc", prcc).train})
    n_src = len({s.pid for s in create_dataset("synthcc", trained["base"] / "a").train})
    assert meta["num_pids"] == n_src and n_prcc != n_src  # the classifiers differ in size
    main(["evaluate", "-c", "prcc", "--set", f"data.root={prcc}", *trained["common"],
          "--checkpoint", str(run / "checkpoints" / "last.json")])
    out = capsys.readouterr().out
    metrics_file = run / "eval_prcc" / "metrics.json"  # beside, not over, the run's own evaluation
    metrics = json.loads(metrics_file.read_text())
    assert set(metrics) == {"sc", "cc"}
    assert metrics["cc"]["num_queries"] > 0 and 0.0 <= metrics["cc"]["mAP"] <= 1.0
    assert "trained on synthcc" in out and "evaluated on prcc" in out
    assert not (run / "eval" / "metrics.json").exists()  # nothing of the in-domain folder was written


def test_in_domain_evaluation_keeps_its_folder(trained):
    run = trained["run"]
    main(["evaluate", "-c", "synthcc", "--set", f"data.root={trained['base'] / 'a'}", *trained["common"],
          "--checkpoint", str(run / "checkpoints")])
    assert json.loads((run / "eval" / "metrics.json").read_text())["standard"]["num_queries"] > 0


def test_an_explicit_out_folder_wins(trained):
    """``--out`` wins over the default ``<run>/eval_<dataset>``."""
    run = trained["run"]
    main(["evaluate", "-c", "prcc", "--set", f"data.root={trained['prcc']}", *trained["common"],
          "--checkpoint", str(run / "checkpoints"), "--out", str(trained["base"] / "explicit")])
    assert set(json.loads((trained["base"] / "explicit" / "metrics.json").read_text())) == {"sc", "cc"}
