"""Clothes losses of CAL (Gu et al., "Clothes-Changing Person Re-identification with RGB Modality
Only", CVPR 2022).

Two losses share the cosine clothes classifier (:class:`dlcr.models.ClothesClassifier`):

* :class:`ClothesCrossEntropy` trains the clothes classifier on *detached* identity features.
* :class:`ClothesAdversarialLoss` (CAL) trains the backbone so that its features cannot tell a
  person's outfits apart, while still separating them from other people's clothes.

CAL's adversarial loss, for a sample with clothes id ``c`` and logits ``z = s·cos`` (s = 16), with
``P`` the clothes ids of the same person (``positive_mask = pid2clothes[pid]``, which contains c) and
``N`` all other clothes ids::

    log q_k  = z_k - log( exp(z_k) + Σ_{j∈N} exp(z_j) )           for every k
    target_k = (1-ε)·[k = c] + ε/|P|·[k ∈ P]
    loss     = - Σ_k target_k · log q_k                             (mean over samples)

i.e. for each positive outfit k, a softmax restricted to {k} ∪ N: every one of the person's outfits
must win against all other people's clothes, without competing with each other. Entries of k ∉ P
have zero target weight. We take the logits as produced by the classifier (already × scale); the
``scale`` argument only matters for :meth:`ClothesAdversarialLoss.from_cosine`.

Generated images carry clothes id −1 by default (docs/design.md §8): such samples are excluded from both
losses. If none is left, the losses return a zero that keeps the graph (so ``backward`` works).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _zero(like: torch.Tensor) -> torch.Tensor:
    return like.sum() * 0.0


class ClothesCrossEntropy(nn.Module):
    """Plain cross-entropy on clothes logits, ignoring samples whose clothes id is negative."""

    def forward(self, logits: torch.Tensor, clothes_ids: torch.Tensor) -> torch.Tensor:
        keep = clothes_ids >= 0
        if not bool(keep.any()):
            return _zero(logits)
        return F.cross_entropy(logits[keep].float(), clothes_ids[keep].long())


class ClothesAdversarialLoss(nn.Module):
    """CAL's clothes-based adversarial loss; see the module docstring for the formula."""

    def __init__(self, scale: float = 16.0, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.scale = float(scale)
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, clothes_ids: torch.Tensor, positive_mask: torch.Tensor) -> torch.Tensor:
        """``logits`` (B, num_clothes), already scaled; ``clothes_ids`` (B,), −1 = excluded;
        ``positive_mask`` (B, num_clothes), true for the clothes of the sample's own identity."""
        if logits.shape != positive_mask.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and positive_mask {tuple(positive_mask.shape)} differ")
        keep = clothes_ids >= 0
        if not bool(keep.any()):
            return _zero(logits)
        z = logits[keep].float()
        cid = clothes_ids[keep].long()
        pos = positive_mask[keep].to(torch.bool)
        pos = pos.scatter(1, cid[:, None], True)  # a sample's own clothes are always positive
        # log( exp(z_k) + Σ_{j∈N} exp(z_j) ), computed stably with logaddexp
        neg_lse = torch.logsumexp(z.masked_fill(pos, float("-inf")), dim=1, keepdim=True)
        log_q = z - torch.logaddexp(z, neg_lse)
        target = pos.float() * (self.epsilon / pos.sum(dim=1, keepdim=True))
        target = target + (1.0 - self.epsilon) * F.one_hot(cid, z.shape[1]).float()
        return -(target * log_q).sum(dim=1).mean()

    def from_cosine(self, cosines: torch.Tensor, clothes_ids: torch.Tensor,
                    positive_mask: torch.Tensor) -> torch.Tensor:
        """Same loss from raw cosine similarities (multiplied by ``scale`` here)."""
        return self.forward(self.scale * cosines, clothes_ids, positive_mask)


def positive_clothes_mask(pids: torch.Tensor, pid2clothes: torch.Tensor) -> torch.Tensor:
    """``pid2clothes[pids]``: (B, num_clothes) boolean mask of the clothes each sample's person wears
    in the training set. ``pid2clothes`` is (num_pids, num_clothes)."""
    return pid2clothes.to(torch.bool)[pids.long()]


def build_pid2clothes(pids: list[int] | torch.Tensor, clothes_ids: list[int] | torch.Tensor,
                      num_pids: int, num_clothes: int) -> torch.Tensor:
    """Boolean (num_pids, num_clothes) table from the real training samples (ids < 0 are skipped)."""
    table = torch.zeros(num_pids, num_clothes, dtype=torch.bool)
    p = torch.as_tensor(pids, dtype=torch.long)
    c = torch.as_tensor(clothes_ids, dtype=torch.long)
    ok = c >= 0
    table[p[ok], c[ok]] = True
    return table
