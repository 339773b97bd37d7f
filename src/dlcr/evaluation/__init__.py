"""Evaluation: feature extraction, ranking metrics, prediction refinement, protocol runner.

Contracts (docs/design.md §7): :func:`evaluate` returns :class:`Metrics` (``.cmc``, ``.mAP``, ``.mINP``);
:func:`refine` returns :class:`Refinement` (``.pred_pids``, ``.sims``).
"""

from dlcr.evaluation.evaluator import (
    evaluate_features,
    evaluate_protocols,
    evaluate_protocols_reference,
    evaluate_refined,
)
from dlcr.evaluation.features import Features, cosine_distance, cosine_similarity, extract_features
from dlcr.evaluation.metrics import MODES, Metrics, evaluate, evaluate_reference, match_masks
from dlcr.evaluation.refinement import VARIANTS, Refinement, refine, refine_reference

__all__ = [
    "MODES",
    "VARIANTS",
    "Features",
    "Metrics",
    "Refinement",
    "cosine_distance",
    "cosine_similarity",
    "evaluate",
    "evaluate_features",
    "evaluate_protocols",
    "evaluate_protocols_reference",
    "evaluate_reference",
    "evaluate_refined",
    "extract_features",
    "match_masks",
    "refine",
    "refine_reference",
]
