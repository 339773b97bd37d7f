import math

import pytest
import torch
import torch.nn.functional as F

from dlcr.losses import (
    ClothesAdversarialLoss,
    ClothesCrossEntropy,
    CrossEntropyLabelSmooth,
    TripletLoss,
    build_pid2clothes,
    positive_clothes_mask,
)


def test_label_smooth_ce_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 0.0]])
    targets = torch.tensor([0, 2])
    eps = 0.1
    total = 0.0
    for row, t in zip(logits.tolist(), targets.tolist(), strict=True):
        z = math.log(sum(math.exp(v) for v in row))
        logp = [v - z for v in row]
        q = [eps / 3 + (1 - eps) * (c == t) for c in range(3)]
        total += -sum(qc * lp for qc, lp in zip(q, logp, strict=True))
    got = CrossEntropyLabelSmooth(eps)(logits, targets)
    assert math.isclose(float(got), total / 2, rel_tol=1e-6)
    # eps = 0 is the plain cross-entropy
    torch.testing.assert_close(CrossEntropyLabelSmooth(0.0)(logits, targets), F.cross_entropy(logits, targets))


def test_label_smooth_ce_sums_over_parts():
    logits = torch.randn(4, 5, 3)
    t = torch.tensor([0, 1, 4, 2])
    ce = CrossEntropyLabelSmooth(0.1)
    torch.testing.assert_close(ce(logits, t), sum(ce(logits[:, :, p], t) for p in range(3)))


def brute_force_triplet(x: torch.Tensor, y: list[int], margin: float) -> float | None:
    n = len(y)
    d = [[math.sqrt(sum((a - b) ** 2 for a, b in zip(x[i].tolist(), x[j].tolist(), strict=True)))
          for j in range(n)] for i in range(n)]
    losses = []
    for a in range(n):
        pos = [d[a][p] for p in range(n) if p != a and y[p] == y[a]]
        neg = [d[a][q] for q in range(n) if y[q] != y[a]]
        if pos and neg:
            losses.append(max(0.0, max(pos) - min(neg) + margin))
    return sum(losses) / len(losses) if losses else None


@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2], [0, 0, 0, 1, 2, 3], [5, 5, 7, 9, 7, 5, 1, 1]])
def test_triplet_matches_brute_force(labels):
    torch.manual_seed(len(labels))
    x = torch.randn(len(labels), 4)
    got = TripletLoss(0.3, metric="euclidean", anchors="valid")(x, torch.tensor(labels))
    assert math.isclose(float(got), brute_force_triplet(x, labels, 0.3), rel_tol=1e-5, abs_tol=1e-6)


def test_triplet_hand_case_and_no_valid_anchor():
    x = torch.tensor([[0.0], [2.0], [1.0], [3.0]])
    # every anchor: hardest positive 2, hardest negative 1 → 2 - 1 + 0.3
    euclid = TripletLoss(0.3, metric="euclidean", anchors="valid")
    assert math.isclose(float(euclid(x, torch.tensor([0, 0, 1, 1]))), 1.3, rel_tol=1e-6)
    xs = torch.randn(3, 4, requires_grad=True)
    for labels in ([0, 1, 2], [4, 4, 4]):  # no positives / no negatives
        loss = euclid(xs, torch.tensor(labels))
        assert float(loss.detach()) == 0.0
        loss.backward()
        assert torch.equal(xs.grad, torch.zeros_like(xs))


def test_triplet_gradient_finite_with_duplicates():
    x = torch.ones(4, 3, requires_grad=True)  # zero distances everywhere
    TripletLoss(0.3)(x, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(x.grad).all()


def cal_hand(z: list[float], c: int, pos: set[int], eps: float) -> float:
    neg = [j for j in range(len(z)) if j not in pos]
    total = 0.0
    for k in pos:
        log_q = z[k] - math.log(math.exp(z[k]) + sum(math.exp(z[j]) for j in neg))
        w = eps / len(pos) + (1 - eps) * (k == c)
        total -= w * log_q
    return total


def test_cal_loss_by_hand():
    z = [1.0, 0.5, -0.2, 0.3]
    # sample 0 wears clothes 0; its person owns clothes {0, 1}
    mask = torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)
    got = ClothesAdversarialLoss(scale=16, epsilon=0.1)(torch.tensor([z]), torch.tensor([0]), mask)
    # spelled out: 0.95·(-log q0) + 0.05·(-log q1), each q over {k} ∪ {2, 3}
    expected = -(0.95 * (1.0 - math.log(math.exp(1.0) + math.exp(-0.2) + math.exp(0.3)))
                 + 0.05 * (0.5 - math.log(math.exp(0.5) + math.exp(-0.2) + math.exp(0.3))))
    assert math.isclose(float(got), expected, rel_tol=1e-6)
    assert math.isclose(expected, cal_hand(z, 0, {0, 1}, 0.1), rel_tol=1e-12)


def test_cal_loss_random_batch_and_exclusion_of_generated():
    torch.manual_seed(0)
    pid2clothes = build_pid2clothes([0, 0, 1, 1, 2], [0, 1, 2, 3, 4], num_pids=3, num_clothes=5)
    assert pid2clothes.tolist() == [[1, 1, 0, 0, 0], [0, 0, 1, 1, 0], [0, 0, 0, 0, 1]]
    pids = torch.tensor([0, 1, 2, 0, 1, 2])
    cids = torch.tensor([1, 2, 4, -1, 3, -1])  # two generated images (clothes id -1)
    logits = 16 * torch.randn(6, 5).tanh()
    mask = positive_clothes_mask(pids, pid2clothes)
    loss_fn = ClothesAdversarialLoss(epsilon=0.1)
    got = loss_fn(logits, cids, mask)
    keep = [i for i in range(6) if cids[i] >= 0]
    ref = sum(cal_hand(logits[i].tolist(), int(cids[i]), set(torch.nonzero(mask[i]).flatten().tolist()), 0.1)
              for i in keep) / len(keep)
    assert math.isclose(float(got), ref, rel_tol=1e-5)
    # generated samples change nothing, whatever their logits
    logits2 = logits.clone()
    logits2[3] += 100.0
    torch.testing.assert_close(loss_fn(logits2, cids, mask), got)


def test_cal_loss_all_excluded_is_zero_with_grad():
    logits = torch.randn(3, 4, requires_grad=True)
    mask = torch.ones(3, 4, dtype=torch.bool)
    for fn in (lambda: ClothesAdversarialLoss()(logits, torch.full((3,), -1), mask),
               lambda: ClothesCrossEntropy()(logits, torch.full((3,), -1))):
        loss = fn()
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.equal(logits.grad, torch.zeros_like(logits))
        logits.grad = None


def test_cal_from_cosine_applies_scale():
    cos = torch.rand(4, 3) * 2 - 1
    cids = torch.tensor([0, 1, 2, 0])
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    fn = ClothesAdversarialLoss(scale=16.0)
    torch.testing.assert_close(fn.from_cosine(cos, cids, mask), fn(16.0 * cos, cids, mask))


def test_cal_pushes_own_outfits_together():
    # the gradient raises the logits of all the person's outfits and lowers other people's clothes
    logits = torch.tensor([[2.0, -1.0, 1.0, 0.0]], requires_grad=True)
    ClothesAdversarialLoss(epsilon=0.5)(logits, torch.tensor([0]), torch.tensor([[1, 1, 0, 0]], dtype=torch.bool)).backward()
    g = logits.grad[0]
    assert g[0] < 0 and g[1] < 0 and g[2] > 0 and g[3] > 0


def test_clothes_ce_ignores_generated():
    logits = torch.randn(4, 3)
    cids = torch.tensor([0, -1, 2, -1])
    torch.testing.assert_close(ClothesCrossEntropy()(logits, cids), F.cross_entropy(logits[[0, 2]], cids[[0, 2]]))
