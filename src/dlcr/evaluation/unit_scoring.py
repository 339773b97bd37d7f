"""One unit of the evaluator's scoring: :data:`~dlcr.evaluation.features.SIM_BLOCK` query rows of a
query/gallery pair, every protocol, plain and refined (see :mod:`dlcr.evaluation.pair_scoring`).

A unit returns the rank material of its rows (per protocol, the same-person entries of its queries
with a good match, in ranking order, and how many gallery entries rank before each); the caller
adds units to the accumulators in query order, so units may be scored in any order or at once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from dlcr.evaluation.candidates import top_k
from dlcr.evaluation.features import SIM_BLOCK, Features, cosine_similarity
from dlcr.evaluation.histcount import HistRows, count_many
from dlcr.evaluation.ranking import _good_mask, _person_index
from dlcr.evaluation.refinement import combine_scores
from dlcr.evaluation.rowcount import TRANSFORMS, ties_before
from dlcr.evaluation.screening import VariantTops
from dlcr.types import EvalProtocol

__all__ = ["Labels", "Same", "UnitResult", "Units", "labels"]


@dataclass(frozen=True)
class Labels:
    """The pair's labels as the scoring uses them."""

    qp: np.ndarray
    qc: np.ndarray
    ql: np.ndarray
    gp: np.ndarray
    gc: np.ndarray
    gl: np.ndarray
    codes: np.ndarray  # (n_gallery,) person code of every gallery item
    qcode: np.ndarray  # (n_query,) the query's person code, -1 if the gallery lacks the person
    table: np.ndarray  # per person code, its gallery columns (increasing), -1 padded; one extra empty row
    qrow: np.ndarray  # (n_query,) each query's row of the table


def labels(q: Features, g: Features) -> Labels:
    qp, gp = np.asarray(q.pids).reshape(-1), np.asarray(g.pids).reshape(-1)
    uniq, codes = np.unique(gp, return_inverse=True)
    table, qrow = _person_index(gp, qp)
    qcode = np.where(qrow < len(uniq), qrow, -1)
    return Labels(qp, np.asarray(q.camids).reshape(-1), np.asarray(q.clothes_ids).reshape(-1), gp,
                  np.asarray(g.camids).reshape(-1), np.asarray(g.clothes_ids).reshape(-1),
                  codes.reshape(-1), qcode, table, qrow)


class Same:
    """Same-person entries of the query rows ``r0:r1``: ``cols`` (c, P) gallery columns (0 where
    ``valid`` is false), and their good matches under each mode."""

    def __init__(self, lab: Labels, r0: int, r1: int) -> None:
        cols = lab.table[lab.qrow[r0:r1]]
        self.valid = cols >= 0
        self.cols = np.where(self.valid, cols, 0)
        self.same_cam = lab.gc[self.cols] == lab.qc[r0:r1, None]
        self.same_cl = lab.gl[self.cols] == lab.ql[r0:r1, None]
        self._good: dict[str, np.ndarray] = {}

    def good(self, mode: str) -> np.ndarray:
        if mode not in self._good:
            same_cl = None if mode == "standard" else self.same_cl
            self._good[mode] = self.valid & _good_mask(self.same_cam, same_cl, mode)
        return self._good[mode]

    def junk_counts(self, mode: str) -> np.ndarray:
        return (self.valid & ~self.good(mode)).sum(1)


#: Per protocol name: the rows with a good match, ``(good, before)`` as RankAccumulator.add_ranks takes them.
Ranks = dict[str, tuple[np.ndarray, np.ndarray]]


@dataclass
class UnitResult:
    rows: int
    plain: Ranks
    refined: Ranks = field(default_factory=dict)
    hits: dict[str, tuple[int, int]] = field(default_factory=dict)  # refined predictions right, queries


@dataclass
class _Ranking:
    """One distance row per query of a unit at its same-person entries, in ranking order:
    ``order`` (into the unit's same-person slots), distances ``d``, columns ``cols``, ``valid``;
    the distance row is ``f(s0)``, except with ``top = (columns, old distances, new distances)``,
    each (c, m), where refinement changed it."""

    order: np.ndarray
    d: np.ndarray
    cols: np.ndarray
    valid: np.ndarray
    f: str
    top: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, d: np.ndarray, same: Same, f: str, top: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
           ) -> _Ranking:
        order = np.argsort(np.where(same.valid, d, np.inf), axis=1, kind="stable")
        return cls(order, np.take_along_axis(d, order, axis=1), np.take_along_axis(same.cols, order, axis=1),
                   np.take_along_axis(same.valid, order, axis=1), f, top)

    def before(self, lt: np.ndarray, le: np.ndarray, s0: np.ndarray) -> np.ndarray:
        """Entries of each distance row ranked before each same-person entry: smaller distances,
        and equal ones at lower columns, from the counts ``lt`` / ``le`` of entries of ``f(s0)``
        with smaller / not larger distances."""
        d = self.d
        if self.top is not None:
            _, old, new = self.top
            v = d[:, :, None]
            lt = lt - (old[:, None, :] < v).sum(-1) + (new[:, None, :] < v).sum(-1)
            le = le - (old[:, None, :] <= v).sum(-1) + (new[:, None, :] <= v).sum(-1)
        before = lt.astype(np.int64)
        tied = self.valid & (le - lt > 1)  # another entry has exactly this distance: count lower columns
        if tied.any():
            tr, tc = np.nonzero(tied)
            patch = None if self.top is None else (self.top[0], self.top[2])
            before[tr, tc] += ties_before(s0, tr, self.cols[tr, tc], d[tr, tc], self.f, patch)
        return before


def _with_good(good: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    has = good.any(1)
    return good[has], before[has]


@dataclass
class Units:
    """Everything a unit needs, shared by all units of a pair (read-only but for the kept matrices,
    whose rows each unit writes, and the per-thread buffers)."""

    q: Features
    g: Features
    lab: Labels
    protocols: list[EvalProtocol]
    modes: dict[str, str]
    variants: torch.Tensor | None = None
    screen: VariantTops | None = None
    variant: str = "paper"
    exclude_junk: bool = True
    m: dict[str, int] = field(default_factory=dict)
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    _local: Any = field(default_factory=threading.local)

    def _buffers(self) -> tuple[torch.Tensor, tuple[np.ndarray, np.ndarray]]:
        if not hasattr(self._local, "sims"):
            ng = len(self.g)
            self._local.sims = torch.empty(SIM_BLOCK, ng)
            self._local.scratch = (np.empty((SIM_BLOCK, ng), dtype=np.float32),
                                   np.empty((SIM_BLOCK, ng), dtype=np.int32))
        return self._local.sims, self._local.scratch

    def score(self, r0: int, r1: int) -> UnitResult:
        """Score the query rows ``r0:r1`` (at most :data:`SIM_BLOCK`, starting on a multiple of it)."""
        sims, scratch = self._buffers()
        c = r1 - r0
        s0 = cosine_similarity(self.q.feats[r0:r1], self.g.feats, out=sims[:c]).numpy()
        same = Same(self.lab, r0, r1)
        s_same = np.take_along_axis(s0, same.cols, axis=1)
        rankings = {"": _Ranking.of(TRANSFORMS["one_minus"](s_same), same, "one_minus")}
        out = UnitResult(c, {})
        if self.variants is not None and self.screen is not None:
            k_rows = self.k_rows(same)
            k = int(k_rows.max())
            tops = [top_k(sims[:c], k)] + [self.screen.top(v[r0:r1], k_rows, k) for v in self.variants]
            cand = (np.stack([t[0] for t in tops], axis=1), np.stack([t[1] for t in tops], axis=1))
            for p in self.protocols:
                rankings[p.name] = self._refined(out, same, s0, s_same, cand, p, r0)
        counter = HistRows(s0, (scratch[0][:c], scratch[1][:c]))
        counts = count_many(counter, [(r.d, r.f, strict) for r in rankings.values() for strict in (True, False)])
        before = {key: r.before(counts[2 * i], counts[2 * i + 1], s0) for i, (key, r) in enumerate(rankings.items())}
        for p in self.protocols:
            good = same.good(self.modes[p.name])
            out.plain[p.name] = _with_good(np.take_along_axis(good, rankings[""].order, axis=1), before[""])
            if p.name in rankings:
                out.refined[p.name] = _with_good(np.take_along_axis(good, rankings[p.name].order, axis=1),
                                                 before[p.name])
        return out

    def k_rows(self, same: Same) -> np.ndarray:
        """Per query row, the candidates its top-m needs in every matrix: the largest m plus the
        row's most junk entries under any protocol (when junk is excluded), at most the gallery
        (a protocol's m plus its own junk never exceeds it)."""
        extra = np.zeros(len(same.cols), dtype=np.int64)
        if self.exclude_junk:
            for p in self.protocols:
                extra = np.maximum(extra, same.junk_counts(self.modes[p.name]))
        return np.minimum(max(self.m.values()) + extra, len(self.g))

    def _top_m(self, r0: int, r1: int, vals: np.ndarray, cols: np.ndarray, m: int, mode: str
               ) -> tuple[np.ndarray, np.ndarray]:
        """Each matrix's top-m of the unit (``vals``/``cols``: (c, 1 + l, k) candidates in ranking
        order), without the entries that are junk under ``mode`` when junk is excluded."""
        if not self.exclude_junk:
            return vals[:, :, :m], cols[:, :, :m]
        lab = self.lab
        same = lab.codes[cols] == lab.qcode[r0:r1, None, None]
        same_cl = None if mode == "standard" else lab.gl[cols] == lab.ql[r0:r1, None, None]
        junk = same & ~_good_mask(lab.gc[cols] == lab.qc[r0:r1, None, None], same_cl, mode)
        keep = np.argsort(junk, axis=2, kind="stable")[:, :, :m]  # kept candidates first, in order
        return np.take_along_axis(vals, keep, axis=2), np.take_along_axis(cols, keep, axis=2)

    def _refined(self, out: UnitResult, same: Same, s0: np.ndarray, s_same: np.ndarray,
                 cand: tuple[np.ndarray, np.ndarray], p: EvalProtocol, r0: int) -> _Ranking:
        """Refine the unit's queries under protocol ``p``: count its predictions, keep its refined
        rows when asked, and return the ranking of its refined distances."""
        c, mode = len(s0), self.modes[p.name]
        vals, idx = self._top_m(r0, r0 + c, cand[0], cand[1], self.m[p.name], mode)
        score, raised = combine_scores(vals.astype(np.float64), idx, self.lab.codes, self.variant)
        topm, new = idx[:, 0, :], raised.astype(np.float32)
        f = "neg" if self.variant == "paper" else "neg_one_plus"
        fn = TRANSFORMS[f]
        neg_new = np.negative(new)
        hit = (same.cols[:, :, None] == topm[:, None, :]) & same.valid[:, :, None]
        d = np.where(hit.any(2), np.take_along_axis(neg_new, hit.argmax(2), axis=1), fn(s_same))
        has_good = same.good(mode).any(1)
        pred = self.lab.gp[idx[np.arange(c), 0, np.argmax(score, axis=1)]]  # first maximum: earliest in the ranking
        out.hits[p.name] = (int(np.count_nonzero(pred[has_good] == self.lab.qp[r0:r0 + c][has_good])),
                            int(np.count_nonzero(has_good)))
        if p.name in self.kept:
            rows = self.kept[p.name][r0:r0 + c]
            if self.variant == "paper":
                np.copyto(rows, s0)
            else:
                np.add(s0, np.float32(1.0), out=rows, dtype=np.float32)
            np.put_along_axis(rows, topm, new, axis=1)
        return _Ranking.of(d, same, f, (topm, fn(np.take_along_axis(s0, topm, axis=1)), neg_new))
