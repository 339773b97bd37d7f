"""Each row's k largest entries of a similarity block, exactly, without a full ``torch.topk`` of the row.

Order (the one refinement documents): larger first, equal values by lower column, i.e. the first k
of ``np.argsort(-row, kind="stable")``.

How. A row of n entries is cut into chunks of L consecutive columns and every chunk's maximum is
taken (one vectorised pass). If tau is the k-th largest chunk maximum, k distinct entries are
>= tau, so the row's k-th largest value is >= tau and every entry of the top k lies in a chunk whose
maximum is >= tau. The k + a few chunks with the largest maxima are gathered (a few thousand
entries instead of n), with the last n mod L columns, which belong to no chunk, and ``torch.topk``
runs on them. Two checks keep this exact:

* the chunks taken include every chunk with maximum >= tau: the k-th taken maximum is strictly
  larger than the last one taken (or every chunk was taken);
* the top k + 1 values found are strictly decreasing, so their order (and the k-th place) does not
  depend on how ``torch.topk`` breaks ties.

A row failing either check is redone with a stable sort (of its gathered candidates, which are in
column order, or of the whole row), which applies the tie rule literally. Small rows are sorted
directly. Rows must not contain NaN (the evaluator checks before calling).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["top_k"]

#: Chunks per wanted entry: more chunks make the gathered candidates fewer but the chunk maxima more.
_CHUNKS_PER_K = 32
#: Chunks taken beyond k, so that a tie among chunk maxima rarely sends a row to the slow path.
_EXTRA_CHUNKS = 8


def _stable_rows(rows: np.ndarray, k: int) -> np.ndarray:
    """Columns of the k largest entries of each row (larger first, ties by lower column)."""
    return np.argsort(np.negative(rows), axis=1, kind="stable")[:, :k]


def _columns(chunk: np.ndarray, pos: np.ndarray, width: int, tail_start: int) -> np.ndarray:
    """Gallery columns of positions ``pos`` among the gathered candidates: the chunks ``chunk``
    (c, taken), in order, ``width`` columns each, then the tail columns from ``tail_start``."""
    taken = chunk.shape[1]
    slot = np.minimum(pos // width, taken - 1)
    in_chunk = np.take_along_axis(chunk, slot, axis=1) * width + pos % width
    return np.where(pos < taken * width, in_chunk, tail_start + pos - taken * width).astype(np.int64)


def top_k(mat: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(values, columns)`` of the ``k`` largest entries of every row of the float32 CPU tensor ``mat``
    (shape (c, n)) in the documented order: float32 (c, k) and int64 (c, k). ``k`` is capped at n."""
    c, n = mat.shape
    k = min(int(k), n)
    width = max(1, n // (k * _CHUNKS_PER_K))
    n_chunks, tail = divmod(n, width)
    taken = min(k + _EXTRA_CHUNKS, n_chunks)
    if width < 4 or taken * width < k + 1:  # a small row: sort it
        cols = _stable_rows(mat.numpy(), k)
        return np.take_along_axis(mat.numpy(), cols, axis=1), cols.astype(np.int64)
    chunks = mat[:, :n_chunks * width].reshape(c, n_chunks, width)
    top_max, top_chunk = torch.topk(chunks.amax(2), taken, dim=1, sorted=True)
    complete = top_max[:, k - 1] > top_max[:, taken - 1] if taken < n_chunks else torch.ones(c, dtype=torch.bool)
    chunk = torch.sort(top_chunk, dim=1).values  # column order, for the stable redo
    vals = chunks[torch.arange(c)[:, None], chunk].reshape(c, taken * width)
    if tail:  # the last columns, short of a chunk, are candidates in every row
        vals = torch.cat([vals, mat[:, n_chunks * width:]], dim=1)
    tv, tp = torch.topk(vals, k + 1, dim=1, sorted=True)
    clean = (tv[:, :k] > tv[:, 1:]).all(1) & complete
    out_v = tv[:, :k].numpy().copy()
    out_c = _columns(chunk.numpy(), tp[:, :k].numpy(), width, n_chunks * width)
    redo = np.flatnonzero(~clean.numpy())
    if len(redo):
        cand = vals.numpy()[redo]
        sub = _stable_rows(cand, k)
        out_c[redo] = _columns(chunk.numpy()[redo], sub, width, n_chunks * width)
        out_v[redo] = np.take_along_axis(cand, sub, axis=1)
        whole = redo[~complete.numpy()[redo]]  # the chunks taken may miss some: sort the whole row
        if len(whole):
            full = mat.numpy()[whole]
            out_c[whole] = _stable_rows(full, k)
            out_v[whole] = np.take_along_axis(full, out_c[whole], axis=1)
    return out_v, out_c
