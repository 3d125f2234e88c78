"""Pareto helpers for multi-objective search (pure numpy; used by NSGA-II and the API).

Every function takes ``points``: an ``(n, m)`` array of objective values oriented so that
**higher is better** in every column (negate a minimised objective first; ``orient`` does
it). A point *dominates* another when it is at least as good in every objective and
strictly better in one; equal points therefore never dominate each other and share a front.
Values must be finite (drop trials with a missing objective before calling).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def orient(values: np.ndarray | Sequence[Sequence[float]], modes: Sequence[str]) -> np.ndarray:
    """Columns of raw objective values, each negated where its mode is ``"min"``."""
    points = np.asarray(values, dtype=float).reshape(-1, len(modes))
    signs = np.array([1.0 if mode == "max" else -1.0 for mode in modes])
    return points * signs


def _as_points(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    array = np.asarray(points, dtype=float)
    if array.ndim == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2:
        raise ValueError(f"points must be an (n, m) array, got shape {array.shape}")
    return array


def dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    a_, b_ = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return bool(np.all(a_ >= b_) and np.any(a_ > b_))


def pareto_mask(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Boolean mask of the non-dominated points (the first front).

    Two objectives: one sort and a sweep, O(n log n). More: points are visited in an order
    where a point can only be dominated by one before it, and each front member removes what
    it dominates from the rest, O(n · front size · m) at worst.
    Either way 100,000 points take well under a second, unless with three or more objectives
    nearly all of them are on the front.
    """
    pts = _as_points(points)
    n, m = pts.shape
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    if m == 1:
        return pts[:, 0] == pts[:, 0].max()
    lexicographic = tuple(-pts[:, j] for j in reversed(range(m)))  # for lexsort: first column major
    if m == 2:
        order = np.lexsort(lexicographic)  # descending
        a, b = pts[order, 0], pts[order, 1]
        # Points with equal first objective form a group (contiguous, second objective descending).
        starts = np.flatnonzero(np.r_[True, a[1:] != a[:-1]])
        group = np.cumsum(np.r_[True, a[1:] != a[:-1]]) - 1
        running = np.maximum.accumulate(b)
        before = np.r_[-np.inf, running[starts[1:] - 1]]  # best b among strictly larger a
        group_best = b[starts]
        dominated = (before[group] >= b) | (group_best[group] > b)
        mask[order[~dominated]] = True
        return mask
    # Visit by decreasing sum of range-normalised objectives, ties (rounding included) broken
    # lexicographically: a dominating point always comes first, and high-sum points dominate
    # many others, so the rest shrinks fast.
    span = pts.max(axis=0) - pts.min(axis=0)
    total = ((pts - pts.min(axis=0)) / np.where(span > 0, span, 1.0)).sum(axis=1)
    remaining = np.lexsort((*lexicographic, -total))
    rest_pts = pts[remaining]
    while remaining.size:
        head, p = remaining[0], rest_pts[0]
        mask[head] = True
        keep = ~(np.all(rest_pts <= p, axis=1) & np.any(rest_pts < p, axis=1))
        keep[0] = False
        remaining, rest_pts = remaining[keep], rest_pts[keep]
    return mask


def pareto_front(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Indices (ascending) of the non-dominated points."""
    return np.flatnonzero(pareto_mask(points))


def non_dominated_sort(points: np.ndarray | Sequence[Sequence[float]]) -> list[np.ndarray]:
    """Deb et al.'s fronts: indices of front 0 (non-dominated), then front 1 (non-dominated
    once front 0 is removed), and so on; each front's indices ascending."""
    pts = _as_points(points)
    remaining = np.arange(len(pts))
    fronts: list[np.ndarray] = []
    while remaining.size:
        mask = pareto_mask(pts[remaining])
        fronts.append(remaining[mask])
        remaining = remaining[~mask]
    return fronts


def crowding_distance(points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
    """Deb et al.'s crowding distance of each point within one front.

    Per objective the points are sorted (stably, so ties keep their order); the two extremes
    get infinity and each interior point the gap between its neighbours, normalised by that
    objective's range. An objective on which all points are equal contributes nothing (no
    infinities either), so identical points are not all treated as boundary points.
    """
    pts = _as_points(points)
    n, m = pts.shape
    distance = np.zeros(n)
    if n == 0:
        return distance
    for j in range(m):
        column = pts[:, j]
        span = column.max() - column.min()
        if span <= 0:
            continue
        order = np.argsort(column, kind="stable")
        distance[order[0]] = distance[order[-1]] = np.inf
        if n > 2:
            gaps = (column[order[2:]] - column[order[:-2]]) / span
            distance[order[1:-1]] += gaps
    return distance


def rank_and_crowding(points: np.ndarray | Sequence[Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """Each point's front number (0 = non-dominated) and crowding distance within its front."""
    pts = _as_points(points)
    rank = np.zeros(len(pts), dtype=int)
    crowding = np.zeros(len(pts))
    for r, front in enumerate(non_dominated_sort(pts)):
        rank[front] = r
        crowding[front] = crowding_distance(pts[front])
    return rank, crowding


def survivors(
    points: np.ndarray | Sequence[Sequence[float]], k: int, *, prefer_later: bool = False
) -> np.ndarray:
    """NSGA-II environmental selection: the indices (ascending) of the ``k`` best points by
    (front, crowding distance descending); among exact equals the earlier index survives, or
    the later one with ``prefer_later``."""
    pts = _as_points(points)
    if k >= len(pts):
        return np.arange(len(pts))
    rank, crowding = rank_and_crowding(pts)
    index = np.arange(len(pts))
    order = np.lexsort((-index if prefer_later else index, -crowding, rank))
    return np.sort(order[:k])


def hypervolume_2d(points: np.ndarray | Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Area dominated by ``points`` and dominating ``reference`` (two objectives, higher is
    better): the standard quality measure of a found front. Points not better than the
    reference in both objectives add nothing."""
    pts = _as_points(points)
    if pts.shape[1] != 2:
        raise ValueError("hypervolume_2d needs two objectives")
    ref = np.asarray(reference, dtype=float)
    pts = pts[np.all(pts > ref, axis=1)]
    if not len(pts):
        return 0.0
    front = pts[pareto_mask(pts)]
    front = front[np.argsort(-front[:, 0], kind="stable")]  # first objective descending, second ascending
    area, previous_b = 0.0, ref[1]
    for a, b in front:
        if b > previous_b:
            area += (a - ref[0]) * (b - previous_b)
            previous_b = b
    return float(area)
