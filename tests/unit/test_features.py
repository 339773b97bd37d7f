"""Feature extraction (flip, clips, tracklets, eval mode), cosine helpers and the protocol runner."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from dlcr.errors import InputError
from dlcr.evaluation import (
    Features,
    cosine_distance,
    cosine_similarity,
    evaluate,
    evaluate_protocols,
    extract_features,
)
from dlcr.types import EvalProtocol

H, W, D = 4, 6, 5


class Linear(torch.nn.Module):
    """A linear embedding (plus batch norm) whose output we can predict by hand."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(3 * H * W, D, bias=False)
        self.bn = torch.nn.BatchNorm1d(D)
        self.bn.running_mean.normal_()
        self.bn.running_var.uniform_(0.5, 2.0)

    def forward(self, x):
        return self.bn(self.fc(x.flatten(1)))


class Items(Dataset):
    def __init__(self, imgs, pids, index=None):
        self.imgs, self.pids, self.index = imgs, pids, index

    def __len__(self):
        return len(self.imgs)

    def __getitem__(self, i):
        item = {"img": self.imgs[i], "pid": self.pids[i], "camid": i % 2, "clothes_id": 10 + i}
        if self.index is not None:
            item["index"] = self.index[i]
        return item


def expected(model, x, flip=True):
    """What extract_features should return, computed directly with the model in eval mode."""
    model.eval()
    with torch.no_grad():
        f = model(x) + (model(x.flip(-1)) if flip else 0)
    return torch.nn.functional.normalize(f, dim=1)


def test_images_with_flip_in_eval_mode_and_training_flag_restored():
    model = Linear().train()
    imgs = torch.randn(7, 3, H, W)
    feats = extract_features(model, DataLoader(Items(imgs, list(range(7))), batch_size=3))
    assert model.training  # restored
    torch.testing.assert_close(feats.feats, expected(model, imgs), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(feats.feats.norm(dim=1), torch.ones(7))
    assert list(feats.pids) == list(range(7)) and list(feats.camids) == [0, 1, 0, 1, 0, 1, 0]
    assert list(feats.clothes_ids) == list(range(10, 17)) and len(feats) == 7
    no_flip = extract_features(model, DataLoader(Items(imgs, list(range(7))), batch_size=4), flip=False)
    torch.testing.assert_close(no_flip.feats, expected(model, imgs, flip=False), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(no_flip.feats, feats.feats)  # the flip really changes the features


def test_clips_average_frames_and_tracklets_average_clips():
    model = Linear()
    clips = torch.randn(5, 3, 3, H, W)  # 5 clips of 3 frames
    index = [2, 0, 2, 1, 0]  # tracklet 0: clips 1 and 4; tracklet 1: clip 3; tracklet 2: clips 0 and 2
    loader = DataLoader(Items(clips, [7, 5, 7, 6, 5], index=index), batch_size=2)
    feats = extract_features(model, loader)
    per_clip = []
    for c in clips:
        model.eval()
        with torch.no_grad():
            f = (model(c) + model(c.flip(-1))).mean(0)
        per_clip.append(f)
    per_clip = torch.stack(per_clip)
    want = torch.stack([(per_clip[1] + per_clip[4]) / 2, per_clip[3], (per_clip[0] + per_clip[2]) / 2])
    torch.testing.assert_close(feats.feats, torch.nn.functional.normalize(want, dim=1), rtol=1e-5, atol=1e-6)
    assert list(feats.index) == [0, 1, 2] and list(feats.pids) == [5, 6, 7]


def test_model_output_containers_and_errors():
    imgs = torch.randn(2, 3, H, W)
    batches = [{"img": imgs, "pid": torch.tensor([1, 2]), "camid": torch.tensor([0, 1])}]

    class Tup(Linear):
        def forward(self, x):
            return super().forward(x), "logits"

    class Dict(Linear):
        def forward(self, x):
            return {"features": super().forward(x)}

    for cls in (Tup, Dict):
        f = extract_features(cls(), batches)
        torch.testing.assert_close(f.feats, expected(Linear(), imgs), rtol=1e-5, atol=1e-6)
        assert list(f.clothes_ids) == [-1, -1]  # no clothes ids in the batch

    class Nan(Linear):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(InputError, match="NaN"):
        extract_features(Nan(), batches)
    with pytest.raises(InputError, match="no batch"):
        extract_features(Linear(), [])
    with pytest.raises(InputError, match="img"):
        extract_features(Linear(), [{"image": imgs}])
    with pytest.raises(InputError, match="shape"):
        extract_features(Linear(), [{"img": torch.randn(3, H, W), "pid": [1], "camid": [0]}])


def test_cosine_helpers_are_chunked_dot_products():
    q, g = torch.randn(9, 4), torch.randn(13, 4)
    torch.testing.assert_close(cosine_similarity(q, g, chunk=4), q @ g.T)
    torch.testing.assert_close(cosine_distance(q, g, chunk=2), 1 - q @ g.T)
    with pytest.raises(InputError):
        cosine_similarity(q, torch.randn(3, 5))


def _feats(rng, n, ids):
    f = torch.nn.functional.normalize(torch.randn(n, 8, generator=torch.Generator().manual_seed(n)), dim=1)
    return Features(f, rng.integers(0, ids, n), rng.integers(0, 3, n), rng.integers(0, 3, n))


def test_protocols_match_direct_evaluation():
    rng = np.random.default_rng(0)
    split = {"query_same": _feats(rng, 20, 5), "query_diff": _feats(rng, 25, 5), "gallery": _feats(rng, 60, 5)}
    protocols = [EvalProtocol("sc", "query_same", "gallery", "standard"),
                 EvalProtocol("cc", "query_diff", "gallery", "CC")]
    out = evaluate_protocols(split, protocols)
    assert set(out) == {"sc", "cc"}
    for p in protocols:
        q, g = split[p.query], split[p.gallery]
        m = evaluate(1 - q.feats @ g.feats.T, q.pids, g.pids, q.camids, g.camids, q.clothes_ids,
                     g.clothes_ids, mode=p.mode)
        r = out[p.name]
        assert set(r) == {"top1", "top5", "top10", "top20", "mAP", "mINP", "num_queries", "num_skipped"}
        assert r["top1"] == pytest.approx(m.top(1)) and r["mAP"] == pytest.approx(m.mAP)
        assert r["num_queries"] == m.num_valid and all(0 <= r[k] <= 1 for k in ("top1", "mAP", "mINP"))
    variants = {"query_diff": torch.nn.functional.normalize(
        split["query_diff"].feats[None] + 0.1 * torch.randn(2, 25, 8), dim=-1)}
    out = evaluate_protocols(split, protocols, refine_variants=variants, m=3, variant="official")
    assert set(out) == {"sc", "cc", "cc_refined"} and 0 <= out["cc_refined"]["pred_top1"] <= 1
    with pytest.raises(InputError, match="no features for split 'query'"):
        evaluate_protocols(split, [EvalProtocol("standard", "query", "gallery", "standard")])


def test_protocols_sharing_a_pair_give_what_separate_evaluations_give():
    from dlcr.evaluation import evaluate_features, evaluate_refined

    rng = np.random.default_rng(1)
    split = {"query": _feats(rng, 30, 6), "gallery": _feats(rng, 70, 6), "query2": _feats(rng, 12, 6)}
    protocols = [EvalProtocol("standard", "query", "gallery", "standard"),
                 EvalProtocol("sc", "query", "gallery", "SC"),
                 EvalProtocol("cc", "query", "gallery", "CC"),
                 EvalProtocol("other", "query2", "gallery", "CC")]
    variants = {k: torch.nn.functional.normalize(split[k].feats[None] + 0.2 * torch.randn(3, len(split[k]), 8),
                                                 dim=-1) for k in ("query", "query2")}
    kept: dict = {}
    out = evaluate_protocols(split, protocols, refine_variants=variants, m=3, refined_out=kept)
    assert set(kept) == {f"{p.name}_refined_sims" for p in protocols}
    for p in protocols:
        q, g = split[p.query], split[p.gallery]
        assert out[p.name] == evaluate_features(q, g, p.mode)
        alone, sims = evaluate_refined(q, variants[p.query], g, p, m=3)
        assert out[f"{p.name}_refined"] == alone
        np.testing.assert_array_equal(kept[f"{p.name}_refined_sims"], sims)
