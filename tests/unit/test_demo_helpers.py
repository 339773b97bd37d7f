"""The demo's pieces that need no training: the validation hold-out, the curves, the Table A1 layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from dlcr.ablation import (
    ARMS,
    CORE_ARMS,
    METRIC_KEYS,
    TABLE_A1,
    aggregate,
    aggregate_curves,
    curves_of,
    results_table,
)
from dlcr.data.datasets.base import CCReIDDataset, Record, relabel_test, relabel_train
from dlcr.demo import DemoSettings, holdout_validation, table_a1, validation_data
from dlcr.demo.tasks import _run_tasks


def _ds(n_ids: int = 20) -> CCReIDDataset:
    train = [Record(path=f"synthcc/train/{p:03d}_{c}_c{cam}_{i}.png", pid=p, camid=cam, clothes_key=f"{p:03d}_{c}")
             for p in range(n_ids) for c in range(2) for cam in range(2) for i in range(2)]
    test = [Record(path=f"synthcc/query/{p:03d}_0_c0.png", pid=p, camid=0, clothes_key=f"{p:03d}_0")
            for p in range(100, 104)]
    gallery = [Record(path=f"synthcc/test/{p:03d}_1_c1.png", pid=p, camid=1, clothes_key=f"{p:03d}_1")
               for p in range(100, 104)]
    splits = {"train": relabel_train(train), **relabel_test({"query": test, "gallery": gallery})}
    return CCReIDDataset(name="synthcc", root=Path("."), splits=splits)


def test_holdout_moves_whole_identities_out_of_train_and_keeps_the_test_splits():
    ds = _ds()
    out, info = holdout_validation(ds, fraction=0.1, min_ids=2, seed=0)
    assert info["ids"] == 2 and len(info["pids"]) == 2
    train_paths = {s.path for s in out.train}
    val = out.splits["val_query"] + out.splits["val_gallery"]
    assert not train_paths & {s.path for s in val}  # disjoint
    assert len(train_paths) + len(val) == len(ds.train)
    assert {s.pid for s in out.train} == set(range(18))  # relabelled 0..N-1
    assert out.num_train_clothes == 36 and out.pid2clothes.shape == (18, 36)
    assert out.splits["query"] == ds.splits["query"] and out.splits["gallery"] == ds.splits["gallery"]
    assert info["query"] == len(out.splits["val_query"]) > 0 and info["gallery"] > info["query"]
    again, info2 = holdout_validation(ds, fraction=0.1, min_ids=2, seed=0)
    assert info2 == info  # seeded
    assert holdout_validation(ds, fraction=0.5, min_ids=2, seed=0)[1]["ids"] == 10
    data = validation_data(out)  # the trainer sees the validation splits only, never the test set
    assert set(data.eval_splits) == {"val_query", "val_gallery"}
    assert [(p.name, p.mode) for p in data.protocols] == [("val", "standard"), ("val_cc", "CC")]
    assert data.validation_protocols()


def test_curves_and_table_a1():
    hist = [{"epoch": 1, "loss": 3.0}, {"epoch": 2, "loss": 2.0, "val_top1": 0.5, "val_mAP": 0.4,
                                         "val_cc_top1": 0.2, "val_cc_mAP": 0.1}]
    pts = curves_of(hist)
    assert pts == [{"epoch": 2, "val_top1": 0.5, "val_map": 0.4, "val_cc_top1": 0.2, "val_cc_map": 0.1, "loss": 2.0}]
    other = [{**pts[0], "val_cc_top1": 0.4}]
    c = aggregate_curves({0: pts, 1: other})
    assert c["epochs"] == [2] and c["val_cc_top1"] == [pytest.approx(0.3)] and c["val_cc_top1_std"][0] > 0
    assert set(c["per_seed"]) == {"0", "1"}

    st = DemoSettings(seeds=(0, 1))
    row = {k: 0.5 for k in METRIC_KEYS}
    results = {a: aggregate([{**row, "seed": 0}, {**row, "seed": 1}]) for a in (*ARMS, "dlcr_progressive_refined")}
    tbl = table_a1(results, st)
    assert [r["arm"] for r in tbl["rows"]] == [a for _, a, _ in TABLE_A1]
    assert tbl["rows"][0]["mask_region"] is None and tbl["rows"][1]["mask_region"] == "person"
    assert tbl["concat"]["sampler"] == "concat/progressive"
    text = results_table({**results, "table_a1": tbl, "meta": {"seeds": [0, 1]}})
    assert "50.0 ± 0.0" in text and text.count("\n") == 7
    assert DemoSettings(ablation=False).arms == CORE_ARMS


def _task(x: int, log: list) -> int:
    log.append(x)
    return x * 10


def test_tasks_run_after_their_dependencies_in_process():
    log: list[int] = []
    done = _run_tasks([("a", (), _task, {"x": 1, "log": log}), ("b", ("a",), _task, {"x": 2, "log": log})], 1, 1)
    assert done == {"a": 10, "b": 20} and log == [1, 2]


def _sleep_task(seconds: float) -> float:  # module level: the pool's spawned processes import it
    import time

    time.sleep(seconds)
    return seconds


def _fail_task(after: float) -> None:
    import time

    time.sleep(after)
    raise ValueError("task failed")


def test_a_failing_task_stops_the_pool_at_once():
    """A failure (like Ctrl-C) does not wait for the other running tasks: their processes are ended."""
    import time

    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="task failed"):
        _run_tasks([("long", (), _sleep_task, {"seconds": 120.0}), ("bad", (), _fail_task, {"after": 1.0})], 2, 1)
    assert time.perf_counter() - t0 < 60
