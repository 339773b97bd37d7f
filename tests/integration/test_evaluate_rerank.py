"""``dlcr evaluate --rerank`` (alone and with ``--refine``, both orders) on a tiny synthetic world, with
an untrained checkpoint: the extra rows of metrics.json and of the printed table, the plain and
refined rows unchanged by it, the config keys as defaults, and bad values as one error line."""

from __future__ import annotations

import json

import pytest

from dlcr.config import load_config, to_dict
from dlcr.data.datasets import create_dataset
from dlcr.generation import stages
from dlcr.generation.describers import create_captioner, create_summarizer
from dlcr.generation.parsers import create_parser

H, W = 64, 32


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import torch

    from dlcr.engine.checkpoint import save_checkpoint
    from dlcr.models import create_model
    from dlcr.synth import render_world

    root = tmp_path_factory.mktemp("rerank_cli")
    render_world(root / "w", ids=8, seed=5, height=H, width=W)
    ds = create_dataset("synthcc", root / "w")
    work = root / "work"
    queries = list(ds.splits["query"])
    stages.run_masks(create_parser("synthcc"), list(ds.train) + queries, ds.root, work)
    stages.run_describe(ds.train, ds.root, work, captioner=create_captioner("rule"), summarizer=create_summarizer("vote"))
    stages.run_plan_queries(queries, work, l=2, seed=0, dataset="synthcc", generator="recolor")
    stages.run_inpaint(work, ds.root, backend="recolor", backend_options={}, batch_size=64, queries=True)
    common = ["--config", "synthcc", "--set", f"data.root={root / 'w'}", "--set", f"data.height={H}",
              "--set", f"data.width={W}", "--set", "data.workers=0", "--work", str(work)]
    cfg = load_config("synthcc", [f"data.root={root / 'w'}", f"data.height={H}", f"data.width={W}"])
    torch.manual_seed(0)
    model = create_model(cfg.model.name, len({s.pid for s in ds.train}), pretrained=None)
    ck = save_checkpoint(root / "run" / "checkpoints", model=model, epoch=0, config=to_dict(cfg))
    return {"common": common, "ck": ck, "root": root}


def _evaluate(setup: dict, name: str, *args: str) -> tuple[dict, str]:
    from dlcr.cli.main import main

    out = setup["root"] / name
    main(["evaluate", *setup["common"], "--checkpoint", str(setup["ck"]), "--out", str(out), *args])
    return json.loads((out / "metrics.json").read_text()), str(out)


def test_cli_evaluate_rerank_adds_rows(setup, capsys):
    plain, _ = _evaluate(setup, "plain", "--refine", "--l", "2", "--m", "3")
    capsys.readouterr()
    alone, _ = _evaluate(setup, "alone", "--rerank", "--k1", "6", "--k2", "3", "--lambda", "0.3")
    printed = capsys.readouterr().out
    assert list(alone) == [f"{p}{s}" for p in ("standard", "sc", "cc") for s in ("", "_reranked")]
    for name, r in alone.items():
        assert 0.0 <= r["top1"] <= 1.0 and 0.0 <= r["mAP"] <= 1.0, name
        assert any(line.startswith(name + " ") for line in printed.splitlines()), name
    for p in ("standard", "sc", "cc"):
        assert alone[p] == plain[p]

    both, _ = _evaluate(setup, "both", "--refine", "--l", "2", "--m", "3", "--rerank", "--k1", "6", "--k2", "3")
    printed = capsys.readouterr().out
    suffixes = ("", "_refined", "_reranked", "_reranked_refined", "_refined_reranked")
    assert list(both) == [f"{p}{s}" for p in ("standard", "sc", "cc") for s in suffixes]
    assert "cc_refined_reranked" in printed and "cc_reranked_refined" in printed
    for p in ("standard", "sc", "cc"):
        assert both[p] == plain[p] and both[f"{p}_refined"] == plain[f"{p}_refined"]
        assert both[f"{p}_reranked"] == alone[f"{p}_reranked"]
        assert 0.0 <= both[f"{p}_reranked_refined"]["pred_top1"] <= 1.0

    one, _ = _evaluate(setup, "one", "--refine", "--l", "2", "--m", "3", "--rerank", "--k1", "6", "--k2", "3",
                       "--order", "refine-rerank")
    assert [k for k in one if k.startswith("cc")] == ["cc", "cc_refined", "cc_reranked", "cc_refined_reranked"]
    assert one["cc_refined_reranked"] == both["cc_refined_reranked"]

    # the config keys are the defaults of the options
    keys, _ = _evaluate(setup, "keys", "--set", "eval.rerank=true", "--set", "eval.rerank_k1=6",
                        "--set", "eval.rerank_k2=3")
    assert keys == alone


@pytest.mark.parametrize("args,needle", [
    (["--rerank", "--lambda", "1.5"], "lambda"),
    (["--rerank", "--k1", "0"], "--k1"),
    (["--rerank", "--set", "eval.rerank_k2=0"], "eval.rerank_k2"),
    (["--rerank", "--order", "sideways"], "order"),
])
def test_cli_evaluate_rerank_bad_values_are_one_error_line(setup, capsys, args, needle):
    from dlcr.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["evaluate", *setup["common"], "--checkpoint", str(setup["ck"]), "--out", str(setup["root"] / "bad"),
              *args])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], err
