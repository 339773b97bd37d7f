"""dlcr's CAL losses and clothes classifier against re-statements of the reference code.

References (read from the repositories themselves):

* guxinqian/Simple-CCReID ``losses/clothes_based_adversarial_loss.py`` (``ClothesBasedAdversarialLoss``),
  ``losses/cross_entropy_loss_with_label_smooth.py`` (``CrossEntropyWithLabelSmooth``),
  ``losses/triplet_loss.py`` (``TripletLoss``), ``losses/cosface_loss.py`` (``CosFaceLoss``, the clothes
  classification loss with margin 0), ``models/classifier.py`` (``NormalizedClassifier``),
  ``losses/__init__.py`` + ``configs/default_img.py`` (defaults: scale 16, epsilon 0.1, margin 0.3),
  ``data/datasets/ltcc.py`` (``pid2clothes``);
* CroitoruAlin/dlcr ``Simple-CCReID/train.py`` (``train_cal_generated_data``: the clothes losses see
  only the real first half of a paired batch, ``features[:bs]`` and ``pid2clothes[pids][:bs]``).

Each reference is re-stated below in plain torch (CPU instead of ``.cuda()``, no ``GatherLayer``:
the gathered gallery is passed explicitly). The same fixed tensors go to both sides. Where dlcr uses
an algebraically equal but differently ordered computation (``logsumexp`` instead of
``log(sum(exp))``, ``(1-ε)·nll + ε·mean`` instead of a smoothed target matrix) the comparison is
float32 round-off tight (rtol 1e-5); where the operations are the same, equality is bitwise.
"""

from __future__ import annotations

import numpy as np
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
from dlcr.models import ClothesClassifier

TIGHT = dict(rtol=1e-5, atol=1e-6)

# ---- re-statements of the reference code ------------------------------------------------------


def ref_cal_adversarial(cos: torch.Tensor, targets: torch.Tensor, positive_mask: torch.Tensor,
                        scale: float = 16.0, epsilon: float = 0.1) -> torch.Tensor:
    """Simple-CCReID ClothesBasedAdversarialLoss.forward: it takes the *cosines* of the normalised
    classifier and scales them itself; for every class k, log q_k = z_k - log(exp z_k + Σ_neg exp z_j);
    weights (1-ε)·onehot(target) + ε/|pos|·pos."""
    z = scale * cos
    negative_mask = 1 - positive_mask
    identity_mask = torch.zeros(z.size()).scatter_(1, targets.unsqueeze(1), 1)
    exp_z = torch.exp(z)
    log_prob = z - torch.log((exp_z * negative_mask).sum(1, keepdim=True) + exp_z)
    weights = (1 - epsilon) * identity_mask + epsilon / positive_mask.sum(1, keepdim=True) * positive_mask
    return (-weights * log_prob).sum(1).mean()


def ref_label_smooth_ce(logits: torch.Tensor, targets: torch.Tensor, epsilon: float = 0.1) -> torch.Tensor:
    """Simple-CCReID CrossEntropyWithLabelSmooth.forward: q = (1-ε)·onehot + ε/C, mean over the
    batch of -Σ q·log p."""
    num_classes = logits.size(1)
    log_probs = torch.log_softmax(logits, dim=1)
    q = torch.zeros(log_probs.size()).scatter_(1, targets.unsqueeze(1), 1)
    q = (1 - epsilon) * q + epsilon / num_classes
    return (-q * log_probs).mean(0).sum()


def ref_cosface(cos: torch.Tensor, targets: torch.Tensor, scale: float = 16.0, margin: float = 0.0) -> torch.Tensor:
    """Simple-CCReID CosFaceLoss.forward, used for the clothes classifier with margin 0."""
    one_hot = torch.zeros_like(cos)
    one_hot.scatter_(1, targets.view(-1, 1), 1.0)
    return F.cross_entropy(scale * (cos - one_hot * margin), targets)


def ref_normalized_classifier(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Simple-CCReID NormalizedClassifier.forward: cosines of normalised features and weights."""
    return F.linear(F.normalize(x, p=2, dim=1), F.normalize(weight, p=2, dim=1))


def ref_triplet(inputs: torch.Tensor, targets: torch.Tensor, gallery_inputs: torch.Tensor | None = None,
                gallery_targets: torch.Tensor | None = None, margin: float = 0.3) -> torch.Tensor:
    """Simple-CCReID TripletLoss.forward. The gallery is what GatherLayer returns: the L2-normalised
    features of every rank (this batch included). d = 1 - cos; hardest positive = max over the same
    label (the anchor itself included), hardest negative = min over other labels, with the masks
    applied as ∓99999999 offsets; MarginRankingLoss(d_an, d_ap, y=1) = mean relu(d_ap - d_an + m)."""
    inputs = F.normalize(inputs, p=2, dim=1)
    if gallery_inputs is None:
        gallery_inputs, gallery_targets = inputs, targets
    else:
        gallery_inputs = F.normalize(gallery_inputs, p=2, dim=1)
    dist = 1 - torch.matmul(inputs, gallery_inputs.t())
    mask_pos = torch.eq(targets.view(-1, 1), gallery_targets.view(-1, 1).T).float()
    mask_neg = 1 - mask_pos
    dist_ap, _ = torch.max(dist - mask_neg * 99999999.0, dim=1)
    dist_an, _ = torch.min(dist + mask_pos * 99999999.0, dim=1)
    return torch.nn.MarginRankingLoss(margin=margin)(dist_an, dist_ap, torch.ones_like(dist_an))


def ref_pid2clothes(pids: list[int], clothes: list[int], num_pids: int, num_clothes: int) -> np.ndarray:
    """Simple-CCReID data/datasets/ltcc.py: pid2clothes[pid, clothes_id] = 1 over the training set."""
    table = np.zeros((num_pids, num_clothes))
    for pid, c in zip(pids, clothes, strict=True):
        table[pid, c] = 1
    return table


# ---- fixed inputs ------------------------------------------------------------------------------

# 5 people, 11 outfits (person p owns the outfits listed), 16 training samples
OUTFITS = {0: [0, 1], 1: [2, 3, 4], 2: [5], 3: [6, 7], 4: [8, 9, 10]}
TRAIN_PIDS = [0, 0, 1, 1, 1, 2, 3, 3, 4, 4, 4, 0, 1, 2, 3, 4]
TRAIN_CLOTHES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 4, 5, 7, 9]
NUM_PIDS, NUM_CLOTHES = 5, 11


def fixed(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g) * 2 - 1


def test_pid2clothes_table_equals_the_reference():
    ours = build_pid2clothes(TRAIN_PIDS, TRAIN_CLOTHES, NUM_PIDS, NUM_CLOTHES)
    ref = ref_pid2clothes(TRAIN_PIDS, TRAIN_CLOTHES, NUM_PIDS, NUM_CLOTHES)
    assert np.array_equal(ours.numpy().astype(np.float64), ref)
    for pid, outfits in OUTFITS.items():
        assert np.flatnonzero(ref[pid]).tolist() == outfits


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.5, 1.0])
def test_cal_adversarial_loss_and_gradient_equal_the_reference(epsilon):
    table = build_pid2clothes(TRAIN_PIDS, TRAIN_CLOTHES, NUM_PIDS, NUM_CLOTHES)
    pids = torch.tensor(TRAIN_PIDS)
    cids = torch.tensor(TRAIN_CLOTHES)
    mask = positive_clothes_mask(pids, table)
    cos_ref = fixed(len(pids), NUM_CLOTHES).requires_grad_()
    cos_ours = cos_ref.detach().clone().requires_grad_()
    ref = ref_cal_adversarial(cos_ref, cids, mask.float(), scale=16.0, epsilon=epsilon)
    loss = ClothesAdversarialLoss(scale=16.0, epsilon=epsilon)
    ours = loss.from_cosine(cos_ours, cids, mask)
    torch.testing.assert_close(ours, ref, **TIGHT)
    # forward() takes the classifier's already-scaled logits (dlcr's ClothesClassifier scales by 16)
    torch.testing.assert_close(loss(16.0 * cos_ours.detach(), cids, mask), ref.detach(), **TIGHT)
    ref.backward()
    ours.backward()
    torch.testing.assert_close(cos_ours.grad, cos_ref.grad, **TIGHT)


def test_cal_adversarial_defaults_are_the_references():
    # Simple-CCReID configs/default_img.py: LOSS.CLA_S = 16, LOSS.EPSILON = 0.1
    loss = ClothesAdversarialLoss()
    assert (loss.scale, loss.epsilon) == (16.0, 0.1)
    assert CrossEntropyLabelSmooth().epsilon == 0.1  # CrossEntropyWithLabelSmooth(epsilon=0.1)
    assert TripletLoss().margin == 0.3  # LOSS.PAIR_M
    assert ClothesClassifier(8, 3).scale == 16.0


def test_generated_half_of_a_paired_batch_is_left_out_like_the_reference():
    # CroitoruAlin/dlcr train.py: adv_loss = criterion_adv(clothes_classifier(features[:bs]), clothes_ids,
    # pid2clothes[pids][:bs]) — only the bs real images. dlcr marks the generated half with clothes id -1.
    table = build_pid2clothes(TRAIN_PIDS, TRAIN_CLOTHES, NUM_PIDS, NUM_CLOTHES)
    bs = 8
    pids_real = torch.tensor(TRAIN_PIDS[:bs])
    cids_real = torch.tensor(TRAIN_CLOTHES[:bs])
    cos = fixed(2 * bs, NUM_CLOTHES, seed=3)  # real half, then generated half
    pids = torch.cat([pids_real, pids_real])
    cids = torch.cat([cids_real, torch.full((bs,), -1)])
    ref = ref_cal_adversarial(cos[:bs], cids_real, table.float()[pids_real])
    ours = ClothesAdversarialLoss().from_cosine(cos, cids, positive_clothes_mask(pids, table))
    torch.testing.assert_close(ours, ref, **TIGHT)
    # the clothes classification loss likewise (reference: criterion_clothes(pred_clothes[:bs], clothes_ids))
    ref_c = ref_cosface(cos[:bs], cids_real)
    torch.testing.assert_close(ClothesCrossEntropy()(16.0 * cos, cids), ref_c, **TIGHT)


def test_clothes_classifier_and_its_loss_equal_the_reference_exactly():
    clf = ClothesClassifier(6, NUM_CLOTHES)
    # NormalizedClassifier's init: uniform(-1, 1) rows renormalised to unit norm
    norms = clf.weight.detach().norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    x = fixed(len(TRAIN_PIDS), 6, seed=1)
    cos_ref = ref_normalized_classifier(x, clf.weight.detach())
    assert torch.equal(clf.cosine(x).detach(), cos_ref)
    cids = torch.tensor(TRAIN_CLOTHES)
    # CAL's clothes loss: CosFaceLoss(scale=16, margin=0) on the cosines; dlcr: cross-entropy on clf(x)
    assert torch.equal(ClothesCrossEntropy()(clf(x).detach(), cids), ref_cosface(cos_ref, cids))
    assert torch.equal(F.cross_entropy(clf(x).detach(), cids), ref_cosface(cos_ref, cids))


@pytest.mark.parametrize("epsilon", [0.0, 0.1, 0.3])
def test_label_smoothed_cross_entropy_equals_the_reference(epsilon):
    logits = 5 * fixed(len(TRAIN_PIDS), NUM_PIDS, seed=2)
    targets = torch.tensor(TRAIN_PIDS)
    ref_in = logits.clone().requires_grad_()
    ours_in = logits.clone().requires_grad_()
    ref = ref_label_smooth_ce(ref_in, targets, epsilon)
    ours = CrossEntropyLabelSmooth(epsilon)(ours_in, targets)
    torch.testing.assert_close(ours, ref, **TIGHT)
    ref.backward()
    ours.backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, **TIGHT)


TRIPLET_LABELS = {
    "pk": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],  # P=3, K=4
    "paired": [3, 3, 5, 5, 8, 8] * 2,  # DLCR: pids = cat(pids, pids) of a P=3, K=2 real half
    "two_chunks_same_id": [1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4],  # a CAL batch may repeat an identity
    "singletons": [0, 1, 2, 3, 4, 5],  # no other positive: the anchor itself is its positive
    "one_label": [7, 7, 7, 7],  # no negative: every anchor contributes 0
    "mixed": [0, 0, 1, 2, 2, 2, 3],
}


@pytest.mark.parametrize("case", sorted(TRIPLET_LABELS))
def test_triplet_loss_and_gradient_equal_the_reference(case):
    labels = torch.tensor(TRIPLET_LABELS[case])
    x = fixed(len(labels), 4, seed=4) + 0.6  # a shared direction: cosine distances around the margin
    ref_in = x.clone().requires_grad_()
    ours_in = x.clone().requires_grad_()
    ref = ref_triplet(ref_in, labels)
    ours = TripletLoss()(ours_in, labels)  # defaults: margin 0.3, cosine distance, every anchor counted
    torch.testing.assert_close(ours, ref, **TIGHT)
    assert case == "one_label" or float(ref.detach()) > 0.0  # the case is not vacuous
    ref.backward()
    ours.backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, **TIGHT)


def test_triplet_against_a_gathered_gallery_equals_the_reference():
    # two ranks of a P×K batch each; CAL mines rank 0's anchors against both ranks' features
    l0 = torch.tensor([0, 0, 1, 1, 2, 2])
    l1 = torch.tensor([1, 1, 3, 3, 0, 0])
    f0, f1 = fixed(6, 8, seed=5), fixed(6, 8, seed=6)
    gallery, gallery_labels = torch.cat([f0, f1]), torch.cat([l0, l1])
    ref = ref_triplet(f0, l0, gallery, gallery_labels)
    ours = TripletLoss()(f0, l0, gallery=gallery, gallery_labels=gallery_labels)
    torch.testing.assert_close(ours, ref, **TIGHT)
    # without a gallery it is the batch itself, as on one GPU
    torch.testing.assert_close(TripletLoss()(f0, l0), ref_triplet(f0, l0), **TIGHT)


def test_triplet_options_keep_the_previous_behaviour_available():
    # 'valid' (skip anchors without another positive or a negative) and 'euclidean' are named options;
    # on a P×K batch 'valid' and the reference's 'all' coincide
    labels = torch.tensor(TRIPLET_LABELS["pk"])
    x = fixed(len(labels), 16, seed=7)
    torch.testing.assert_close(TripletLoss(anchors="valid")(x, labels), ref_triplet(x, labels), **TIGHT)
    singles = torch.tensor(TRIPLET_LABELS["singletons"])
    xs = fixed(len(singles), 4, seed=8) + 0.6
    assert float(TripletLoss(anchors="valid")(xs, singles)) == 0.0
    assert float(ref_triplet(xs, singles)) > 0.0
    assert TripletLoss(metric="euclidean").metric == "euclidean"
