"""Training losses: identity cross-entropy with label smoothing, batch-hard triplet, CAL's clothes losses."""

from dlcr.losses.cal import (
    ClothesAdversarialLoss,
    ClothesCrossEntropy,
    build_pid2clothes,
    positive_clothes_mask,
)
from dlcr.losses.ce import CrossEntropyLabelSmooth
from dlcr.losses.triplet import TripletLoss, cross_distances, pairwise_distances

__all__ = [
    "ClothesAdversarialLoss", "ClothesCrossEntropy", "CrossEntropyLabelSmooth", "TripletLoss",
    "build_pid2clothes", "cross_distances", "pairwise_distances", "positive_clothes_mask",
]
