"""The demo's validation split: training identities held out, never the test set."""

from __future__ import annotations

from typing import Any

VAL_PROTOCOLS_SPEC = (("val", "standard"), ("val_cc", "CC"))


def holdout_validation(ds: Any, *, fraction: float, min_ids: int, seed: int) -> tuple[Any, dict[str, Any]]:
    """``ds`` with ``max(min_ids, round(fraction * ids))`` training identities moved out of ``train``
    into ``val_query`` / ``val_gallery`` (every third image of a held-out person, in path order, is a
    query; the rest is its gallery, so each query has the person's other outfits and cameras to be
    found in: a clothes-changing validation). The remaining training split is relabelled 0..N-1; the
    test splits are untouched. Returns the new dataset and a summary."""
    import numpy as np

    from dlcr.data.datasets.base import CCReIDDataset, Record, relabel_test, relabel_train
    from dlcr.errors import ConfigError

    pids = sorted({s.pid for s in ds.train})
    n = max(int(min_ids), int(round(float(fraction) * len(pids))))
    if n >= len(pids):
        raise ConfigError(f"cannot hold out {n} of {len(pids)} training identities for validation")
    held = {int(p) for p in np.random.default_rng([int(seed), 7411]).choice(pids, size=n, replace=False)}

    def rec(s: Any) -> Any:
        return Record(path=s.path, pid=int(s.pid), camid=s.camid, clothes_key=s.clothes_key, tracklet=s.tracklet,
                      frames=s.frames)

    keep = [rec(s) for s in ds.train if s.pid not in held]
    val_q, val_g = [], []
    for pid in sorted(held):
        mine = sorted((s for s in ds.train if s.pid == pid), key=lambda s: s.path)
        for i, s in enumerate(mine):
            (val_q if i % 3 == 0 else val_g).append(rec(s))
    splits = {k: v for k, v in ds.splits.items() if k != "train"}
    splits["train"] = relabel_train(keep)
    splits.update(relabel_test({"val_query": val_q, "val_gallery": val_g}))
    out = CCReIDDataset(name=ds.name, root=ds.root, splits=splits, video=ds.video, protocols=ds.protocols,
                        skipped=ds.skipped)
    info = {"ids": n, "pids": sorted(held), "query": len(val_q), "gallery": len(val_g),
            "train_ids": len(pids) - n, "train_images": len(keep)}
    return out, info


def validation_data(ds: Any) -> Any:
    """:class:`~dlcr.engine.build.TrainData` whose only evaluation splits and protocols are the
    validation ones: the trainer's periodic evaluation never sees the test set."""
    from dlcr.engine.build import TrainData
    from dlcr.types import EvalProtocol

    data = TrainData.from_dataset(ds)
    data.eval_splits = {k: v for k, v in data.eval_splits.items() if k in ("val_query", "val_gallery")}
    data.protocols = tuple(EvalProtocol(name, "val_query", "val_gallery", mode) for name, mode in VAL_PROTOCOLS_SPEC)
    return data
