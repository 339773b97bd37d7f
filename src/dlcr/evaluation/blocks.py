"""How many query rows of a query/gallery pair are scored at once (``eval.max_memory_gb``).

Shared by the evaluator's scoring (:mod:`dlcr.evaluation.pair_scoring`) and its plain reference
(:mod:`dlcr.evaluation.pair_reference`); each says what one query row of a block costs it.
"""

from __future__ import annotations

from collections.abc import Callable

from dlcr.errors import InputError
from dlcr.evaluation.features import SIM_BLOCK

__all__ = ["DEFAULT_MAX_MEMORY_GB", "RANKS", "bytes_per_query_row", "query_rows_per_block"]

#: Ranks reported in every result dict.
RANKS = (1, 5, 10, 20)

#: Default budget (GiB) of the per-block arrays of one query/gallery pair (``eval.max_memory_gb``).
DEFAULT_MAX_MEMORY_GB = 4.0


def bytes_per_query_row(n_gallery: int, n_variants: int) -> int:
    """Bytes one query row costs the scoring, per gallery item: its float32 similarities (4), the
    float32 bucket values and int32 buckets of the rank counts (8), and, for the variants, which
    are taken one matrix at a time, a float32 (4) and a bfloat16 (2) product row. A block of
    :data:`SIM_BLOCK` rows is scored per thread, in buffers each thread allocates once and reuses;
    so ``n_variants`` does not change the cost of a row."""
    return int(n_gallery) * 18


def query_rows_per_block(n_query: int, n_gallery: int, n_variants: int = 0,
                         max_memory_gb: float | None = DEFAULT_MAX_MEMORY_GB, *,
                         per_row: Callable[[int, int], int] = bytes_per_query_row) -> int:
    """Query rows scored at once within ``max_memory_gb`` (None: all of them); ``per_row(n_gallery,
    n_variants)`` is what one row costs (default: :func:`bytes_per_query_row`).

    A whole multiple of :data:`~dlcr.evaluation.features.SIM_BLOCK` (which keeps the similarities
    bit-identical to the whole matrix's), and at least one such block.
    """
    if max_memory_gb is None:
        return max(1, int(n_query))
    if not float(max_memory_gb) > 0:
        raise InputError(f"max_memory_gb must be > 0, got {max_memory_gb}")
    rows = int(float(max_memory_gb) * 2**30 // per_row(n_gallery, n_variants))
    rows = max(SIM_BLOCK, rows // SIM_BLOCK * SIM_BLOCK)
    return max(1, min(rows, int(n_query)))
