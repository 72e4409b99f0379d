"""Correlations with bootstrap standard errors, and min-max normalisation over a set.

- :func:`pearson`: Pearson's r of two samples.
- :func:`ranks` / :func:`spearman`: Spearman's rho, the Pearson r of average ranks (ties
  share the mean of their positions), in numpy (scipy is only a test dependency).
- :func:`bootstrap`: a statistic of items with its bootstrap standard error (items
  resampled with replacement, a seeded ``numpy.random.Generator``).
- :func:`image_level_correlation` / :func:`pixel_level_correlation`: the two correlations of
  the prompt-intervention protocol (Kong et al., ICLR 2024): across items of per-image totals,
  and within each image across pixels, averaged over images.
- :func:`minmax`: min-max normalisation of values over a set (DiffusionPID's bias study).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import ParameterError, ShapeError

__all__ = [
    "Estimate", "bootstrap", "image_level_correlation", "minmax", "pearson", "pixel_level_correlation", "ranks",
    "spearman",
]


@dataclass(frozen=True)
class Estimate:
    """A statistic with its bootstrap standard error.

    Args:
        value: the statistic on all items (NaN when undefined, e.g. a constant sample).
        stderr: standard deviation of the statistic over bootstrap resamples (NaN for < 2 items).
        items: number of items.
        resamples: bootstrap resamples whose statistic was defined.
    """

    value: float
    stderr: float
    items: int
    resamples: int


def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ShapeError(f"the two samples differ in size: {a.size} and {b.size}")
    return a, b


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation of two equally long samples (NaN when one is constant or shorter than 2)."""
    a, b = _pair(x, y)
    if a.size < 2:
        return float("nan")
    a, b = a - a.mean(), b - b.mean()
    den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
    if den <= 1e-300:
        return float("nan")
    return float(np.clip((a * b).sum() / den, -1.0, 1.0))


def ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``x`` with ties given the mean of their positions (float64)."""
    a = np.asarray(x, dtype=np.float64).ravel()
    order = np.argsort(a, kind="mergesort")
    r = np.empty(a.size, dtype=np.float64)
    r[order] = np.arange(1, a.size + 1, dtype=np.float64)
    values, inverse = np.unique(a, return_inverse=True)
    if values.size < a.size:  # average the ranks of tied values
        sums = np.bincount(inverse, weights=r)
        counts = np.bincount(inverse)
        r = (sums / counts)[inverse]
    return r


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation: Pearson's r of the average ranks."""
    a, b = _pair(x, y)
    return pearson(ranks(a), ranks(b))


def bootstrap(statistic: Callable[[np.ndarray], float], items: int, *, resamples: int = 1000, seed: int = 0,
              ) -> Estimate:
    """A statistic of ``items`` items with its bootstrap standard error.

    Args:
        statistic: ``statistic(index)`` for an ``(m,)`` integer array of item indices (with
            repeats in resamples); ``np.arange(items)`` gives the value on all items.
        items: number of items.
        resamples: bootstrap resamples.
        seed: seed of the resampling.
    """
    if items < 1:
        raise ParameterError("no items to compute the statistic on; run at least one item")
    if resamples < 2:
        raise ParameterError(f"resamples must be at least 2, got {resamples}")
    value = float(statistic(np.arange(items)))
    if items < 2:
        return Estimate(value, float("nan"), items, 0)
    rng = np.random.default_rng(seed)
    stats = np.array([statistic(rng.integers(0, items, items)) for _ in range(resamples)], dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    se = float(stats.std(ddof=1)) if stats.size > 1 else float("nan")
    return Estimate(value, se, items, int(stats.size))


def image_level_correlation(change: Sequence[float], score: Sequence[float], *, resamples: int = 1000,
                            seed: int = 0, rank: bool = False) -> Estimate:
    """Correlation across items of per-image totals (e.g. total image change vs image CMI).

    Args:
        change, score: ``(n_items,)`` per-item values.
        resamples, seed: bootstrap over items.
        rank: Spearman instead of Pearson.
    """
    a, b = _pair(change, score)
    f = spearman if rank else pearson
    return bootstrap(lambda i: f(a[i], b[i]), a.size, resamples=resamples, seed=seed)


def pixel_level_correlation(change: Sequence[np.ndarray], score: Sequence[np.ndarray], *, resamples: int = 1000,
                            seed: int = 0) -> Estimate:
    """Pearson's r across the pixels of each image, averaged over images (undefined images left out).

    Args:
        change, score: per item a ``(h, w)`` map; the two maps of an item have the same shape.
        resamples, seed: bootstrap over items.
    """
    if len(change) != len(score):
        raise ShapeError(f"{len(change)} change maps but {len(score)} score maps")
    per = np.array([pearson(np.asarray(c).ravel(), np.asarray(s).ravel()) for c, s in zip(change, score)])

    def mean_defined(i: np.ndarray) -> float:
        v = per[i]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")

    return bootstrap(mean_defined, per.size, resamples=resamples, seed=seed)


def minmax(values: Sequence[float]) -> np.ndarray:
    """Min-max normalisation of values over a set to [0, 1] (all zeros when the values are equal)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v
    lo, hi = float(np.min(v)), float(np.max(v))
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)
