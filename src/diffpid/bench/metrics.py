"""Metrics of the papers' evaluations: map normalisation, IoU threshold sweeps, accuracies.

Localization (Kong et al., ICLR 2024, section 5; SCIENCE.md section 5): a map is
upsampled bilinearly to the mask's size, min-max normalised per image, binarised at
every threshold of ``linspace(0.1, 0.5, 50)`` (a pixel is in when its value is strictly
above the threshold, as the published code does), and compared with the mask by IoU; the
reported mIoU is the mean IoU at the single threshold that maximises it over the dataset.

Compositional understanding (ARO): micro accuracy over items, and macro accuracy, the
mean of per-group accuracies (relations for VG-Relation, attribute pairs for
VG-Attribution), with ARO's filters (groups left out by name or below a count).

Everything here is numpy, so benches of any model can use it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import ParameterError, ShapeError

THRESHOLDS = np.linspace(0.1, 0.5, 50)
"""The papers' threshold sweep for binarising normalised maps."""

__all__ = [
    "THRESHOLDS", "Accuracy", "GroupAccuracy", "MacroAccuracy", "ThresholdSweep", "accuracy", "best_threshold",
    "iou", "iou_sweep", "macro_accuracy", "normalize_map", "resize_map",
]


def resize_map(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` map to ``size = (H, W)`` (``align_corners=False``, as torch).

    Args:
        m: ``(h, w)`` map (any real dtype).
        size: output ``(H, W)``.

    Returns:
        ``(H, W)`` float64 map; the input unchanged (as float64) when the sizes agree.
    """
    import torch
    import torch.nn.functional as F

    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2:
        raise ShapeError(f"a map must be (h, w), got shape {m.shape}")
    size = (int(size[0]), int(size[1]))
    if m.shape == size:
        return m.copy()
    t = torch.from_numpy(m)[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def normalize_map(m: np.ndarray) -> np.ndarray:
    """Min-max normalisation of one map to [0, 1].

    A constant map (no pixel ranked above another) becomes all ones: it predicts the
    whole image at every threshold, which is the papers' whole-image baseline.

    Args:
        m: ``(h, w)`` map.

    Returns:
        ``(h, w)`` float64 map in [0, 1].
    """
    m = np.asarray(m, dtype=np.float64)
    if not np.isfinite(m).all():
        raise ShapeError("the map contains NaN or Inf values; check the estimate that produced it")
    lo, hi = m.min(), m.max()
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.ones_like(m)
    return (m - lo) / (hi - lo)


def iou(prediction: np.ndarray, mask: np.ndarray) -> float:
    """Intersection over union of two boolean masks of the same shape (1.0 when both are empty)."""
    p, g = np.asarray(prediction, dtype=bool), np.asarray(mask, dtype=bool)
    if p.shape != g.shape:
        raise ShapeError(f"prediction {p.shape} and mask {g.shape} differ in shape")
    union = np.logical_or(p, g).sum()
    return 1.0 if union == 0 else float(np.logical_and(p, g).sum() / union)


def iou_sweep(m: np.ndarray, mask: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """IoU of a map against a mask at every threshold (the papers' protocol for one item).

    The map is resized bilinearly to the mask's size, min-max normalised, and binarised
    as ``normalised > threshold``.

    Args:
        m: ``(h, w)`` map (information, attention, ...), any scale.
        mask: ``(H, W)`` boolean ground truth.
        thresholds: ``(n_thr,)`` thresholds in [0, 1].

    Returns:
        ``(n_thr,)`` IoU per threshold.
    """
    g = np.asarray(mask, dtype=bool)
    if g.ndim != 2:
        raise ShapeError(f"a mask must be (H, W), got shape {g.shape}")
    n = normalize_map(resize_map(m, g.shape))
    t = np.asarray(thresholds, dtype=np.float64)
    pred = n[None] > t[:, None, None]  # (n_thr, H, W)
    inter = np.logical_and(pred, g[None]).sum((1, 2))
    union = np.logical_or(pred, g[None]).sum((1, 2))
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1))


@dataclass(frozen=True)
class ThresholdSweep:
    """mIoU of one method over a dataset at its best single threshold.

    Args:
        miou: mean IoU at the best threshold (fraction in [0, 1]).
        stderr: its standard error over items (``std / sqrt(n)``; the threshold choice is not accounted for).
        threshold: the best threshold.
        index: its index in ``thresholds``.
        per_threshold: ``(n_thr,)`` mIoU at every threshold.
        thresholds: ``(n_thr,)`` the thresholds swept.
        items: number of items averaged.
    """

    miou: float
    stderr: float
    threshold: float
    index: int
    per_threshold: np.ndarray
    thresholds: np.ndarray
    items: int


def best_threshold(ious: np.ndarray, thresholds: Sequence[float] = THRESHOLDS) -> ThresholdSweep:
    """The single threshold with the highest mean IoU over items (first one on ties).

    Args:
        ious: ``(n_items, n_thr)`` IoU of every item at every threshold (:func:`iou_sweep`).
        thresholds: ``(n_thr,)`` the thresholds of the columns.
    """
    a = np.asarray(ious, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if a.ndim != 2 or a.shape[1] != len(t):
        raise ShapeError(f"ious must be (n_items, {len(t)}), got shape {a.shape}")
    if a.shape[0] == 0:
        raise ParameterError("no items to average; run at least one item")
    mean = a.mean(0)
    k = int(np.argmax(mean))
    n = a.shape[0]
    se = float(a[:, k].std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return ThresholdSweep(float(mean[k]), se, float(t[k]), k, mean, t, n)


@dataclass(frozen=True)
class Accuracy:
    """A fraction of correct items with its binomial standard error ``sqrt(p (1 - p) / n)``."""

    value: float
    stderr: float
    correct: int
    items: int


def accuracy(correct: Iterable[bool]) -> Accuracy:
    """Micro accuracy of a sequence of per-item outcomes (NaN for no items)."""
    c = np.asarray(list(correct), dtype=bool)
    n = int(c.size)
    if n == 0:
        return Accuracy(float("nan"), float("nan"), 0, 0)
    p = float(c.mean())
    return Accuracy(p, math.sqrt(p * (1 - p) / n), int(c.sum()), n)


@dataclass(frozen=True)
class GroupAccuracy:
    """Accuracy of one group (a relation, an attribute pair) and whether the macro mean used it."""

    group: str
    accuracy: Accuracy
    included: bool


@dataclass(frozen=True)
class MacroAccuracy:
    """Mean of per-group accuracies over the included groups.

    Args:
        value: the macro accuracy (NaN when no group is included).
        stderr: its standard error, ``sqrt(sum_g se_g^2) / G`` over the included groups.
        groups: every group, sorted by name, with its accuracy and inclusion.
        included: number of groups averaged.
    """

    value: float
    stderr: float
    groups: tuple[GroupAccuracy, ...]
    included: int


def macro_accuracy(correct: Sequence[bool], groups: Sequence[str], *, min_count: int = 1,
                   exclude: Iterable[str] = ()) -> MacroAccuracy:
    """ARO's macro accuracy: the mean over groups of each group's accuracy.

    Args:
        correct: ``(n,)`` per-item outcomes.
        groups: ``(n,)`` each item's group label.
        min_count: groups with fewer items are left out (ARO: 25 for VG-Attribution).
        exclude: group names left out (ARO: the symmetric relations of VG-Relation).
    """
    c = np.asarray(list(correct), dtype=bool)
    g = list(groups)
    if len(g) != c.size:
        raise ShapeError(f"{c.size} outcomes but {len(g)} group labels")
    skip = set(exclude)
    out = []
    for name in sorted(set(g)):
        sel = np.array([x == name for x in g], dtype=bool)
        acc = accuracy(c[sel])
        out.append(GroupAccuracy(name, acc, acc.items >= min_count and name not in skip))
    used = [x.accuracy for x in out if x.included]
    if not used:
        return MacroAccuracy(float("nan"), float("nan"), tuple(out), 0)
    value = float(np.mean([a.value for a in used]))
    se = math.sqrt(sum(a.stderr ** 2 for a in used)) / len(used)
    return MacroAccuracy(value, se, tuple(out), len(used))
