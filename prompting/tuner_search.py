"""The tuner's exact search over the minimum blob area, for one threshold.

A blob rule's verdicts change only where the minimum area passes some image's
largest blob, so a sweep over those points gives every outcome the area can
give: :func:`best_min_area` (fewest escapes, then overkills) for the proposal,
:func:`tradeoffs` for the operating points that trade escapes for overkills.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class AreaBest:
    """One outcome of the area sweep: its escapes and overkills, the run of
    minimum areas ``[lo, hi]`` that gives it, and the area proposed in it."""

    escapes: int
    overkills: int
    lo: int
    hi: float  # inclusive; math.inf when unbounded
    min_area: int

    @property
    def margin(self) -> float:
        """Width of the optimal area range, as a log ratio (scale-free)."""
        return math.inf if math.isinf(self.hi) else math.log((self.hi + 1) / self.lo)


def best_min_area(
    tuned_max: np.ndarray, other_ng: np.ndarray, is_ng: np.ndarray, base_min_area: int | None
) -> AreaBest:
    """Optimal minimum area for one threshold, exactly.

    Escapes grow and overkills shrink as the minimum area grows, and both only
    change at (some image's largest area) + 1, so evaluating those points finds
    the whole optimal range [lo, hi]; the proposal is its geometric middle
    (areas are compared by ratio), or, when the range is unbounded above, the
    base value if it is in range, else lo.
    """
    change, escapes, overkills = _sweep(tuned_max, other_ng, is_ng)
    best = np.lexsort((overkills, escapes))[0]
    return _range_best(change, escapes, overkills, best, base_min_area)


def _sweep(
    tuned_max: np.ndarray, other_ng: np.ndarray, is_ng: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(minimum areas where a verdict changes, escapes and overkills at each)."""
    change = np.unique(np.concatenate([[1], tuned_max[tuned_max > 0] + 1]))
    pred = other_ng[None, :] | (tuned_max[None, :] >= change[:, None])
    escapes = (is_ng[None, :] & ~pred).sum(axis=1)
    overkills = (~is_ng[None, :] & pred).sum(axis=1)
    return change, escapes, overkills


def _range_best(
    change: np.ndarray,
    escapes: np.ndarray,
    overkills: np.ndarray,
    at: int,
    base_min_area: int | None,
) -> AreaBest:
    """The run of minimum areas with the outcome of ``change[at]`` (escapes grow and
    overkills shrink with the area, so it is contiguous) and the area proposed in it."""
    same = (escapes == escapes[at]) & (overkills == overkills[at])
    idx = np.flatnonzero(same)
    lo = int(change[idx[0]])
    last = idx[-1]
    hi = math.inf if last == len(change) - 1 else int(change[last + 1]) - 1
    if math.isinf(hi):
        a = base_min_area if base_min_area is not None and base_min_area >= lo else lo
    else:
        a = int(round(math.sqrt(lo * hi)))
        a = min(max(a, lo), int(hi))
    return AreaBest(
        escapes=int(escapes[at]), overkills=int(overkills[at]), lo=lo, hi=hi, min_area=a
    )


def tradeoffs(
    tuned_max: np.ndarray, other_ng: np.ndarray, is_ng: np.ndarray, base_min_area: int | None
) -> list[AreaBest]:
    """For one threshold, the fewest overkills at each number of escapes the
    minimum area can give (only where they are fewer than with fewer escapes)."""
    change, escapes, overkills = _sweep(tuned_max, other_ng, is_ng)
    out: list[AreaBest] = []
    for at in np.lexsort((overkills, escapes)):
        if out and (escapes[at] == out[-1].escapes or overkills[at] >= out[-1].overkills):
            continue
        out.append(_range_best(change, escapes, overkills, int(at), base_min_area))
    return out


def threshold_pick(
    group: Sequence[tuple[float, AreaBest]], *, near: float | None = None
) -> tuple[float, AreaBest]:
    """Among (threshold, its area run) pairs with the same outcome, in threshold
    order: the widest range of minimum areas, then the threshold nearest
    ``near``, by default the middle one of those (the lower one on a tie)."""
    widest = max(round(b.margin, 2) for _, b in group)
    kept = [(t, b) for t, b in group if round(b.margin, 2) == widest]
    target = (kept[0][0] + kept[-1][0]) / 2 if near is None else near
    return min(kept, key=lambda tb: (round(abs(tb[0] - target), 9), tb[0]))
