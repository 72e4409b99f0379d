"""Dataset-level PID: the decomposition of the joint distribution from pointwise results.

Over images drawn from the joint distribution of (image, sources, context), the pointwise
informations are averaged first and the minimum-MI rule is applied to the averages
(:func:`average_pid`); :func:`dataset_pid` runs the pointwise decompositions itself, for
images that each carry their own source values (for the oracle, the labels of the
component each image came from).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np
import torch

from ..engine.estimate import Curve
from ..errors import ParameterError
from ..information import Information
from ..models.base import Model
from ..settings import MAX_SEED, Settings
from .pid import PID, Decomposition, check_mode, decompose, pid


def _stack(results: Sequence[PID]) -> tuple[np.ndarray, np.ndarray, str]:
    """Per-image ``(n, 4)`` estimates, ``(n, 4, 4)`` covariances and the shared mode."""
    vals, covs = [], []
    for r in results:
        v = np.stack([np.atleast_1d(r.mi_1.value), np.atleast_1d(r.mi_2.value), np.atleast_1d(r.mi_12.value),
                      np.atleast_1d(r.per_snr_redundancy.value)], -1)
        vals.append(v)
        covs.append(r.covariance.reshape(-1, 4, 4))
    modes = {r.redundancy_mode for r in results}
    return np.concatenate(vals), np.concatenate(covs), modes.pop() if len(modes) == 1 else ""


@dataclass(frozen=True)
class DatasetPID(Decomposition):
    """PID of the joint distribution from pointwise results, in nats (no maps).

    Args:
        redundancy, unique_1, unique_2, synergy: atoms of the averaged informations.
        mi_1, mi_2, mi_12: the averaged informations ``I(x; y1 | c)`` etc.
        per_snr_redundancy: the averaged per-noise-level redundancy.
        redundancy_mode: ``"integrated"`` or ``"per_snr"``.
        images: number of pointwise results averaged.
        weighted: whether explicit weights were used (standard errors are then Monte Carlo
            errors for that fixed, weighted set of images).
        pointwise: the per-image results, in input order (empty when built from results).
    """

    redundancy_mode: str
    images: int
    weighted: bool
    pointwise: tuple[PID, ...] = ()


def average_pid(
    pointwise: PID | Sequence[PID], weights: Sequence[float] | np.ndarray | None = None, redundancy: str | None = None
) -> DatasetPID:
    """Dataset-level decomposition: average the pointwise informations, then take the minimum.

    The images are samples of the joint distribution of (image, sources, context); each may
    have its own source values. The informations ``m1, m2, m12`` (and the per-noise-level
    minimum) are averaged over images first, and the minimum-MI rule is applied to the
    averages: this is the PID of the joint distribution, of which the pointwise results are
    the local version.

    Args:
        pointwise: :class:`PID` results (single images or batches), in any number.
        weights: one weight per image (normalised here). Without weights the images are
            taken as i.i.d. draws from the joint and the standard errors come from the
            spread across images (sampling of images and Monte Carlo noise together; needs
            at least two images). With weights (e.g. one image per mixture component weighted
            by its probability) the standard errors are the Monte Carlo errors of that
            weighted set.
        redundancy: the mode; defaults to the mode of the pointwise results.
    """
    results = [pointwise] if isinstance(pointwise, PID) else list(pointwise)
    if not results:
        raise ParameterError("no pointwise results to average; pass at least one PID")
    vals, covs, mode = _stack(results)
    if redundancy is None and not mode:
        raise ParameterError("the pointwise results use different redundancy modes; pass redundancy='integrated' or 'per_snr'")
    mode = check_mode(redundancy or mode)
    n = len(vals)
    if weights is None:
        if n < 2:
            raise ParameterError("averaging needs at least two images (or explicit weights for a fixed set)")
        mean, cov = vals.mean(0), np.cov(vals.T, ddof=1) / n
    else:
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        if w.shape != (n,) or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
            raise ParameterError(f"weights must be {n} non-negative numbers (one per image) with a positive sum")
        w = w / w.sum()
        mean, cov = w @ vals, np.einsum("i,ijk->jk", w**2, covs)
    atoms, se = decompose(mean, cov, mode)
    sd = np.sqrt(np.clip(np.diag(cov), 0, None))
    info = [Information(float(mean[i]), float(sd[i])) for i in range(4)]
    return DatasetPID(*(Information(float(atoms[i]), float(se[i])) for i in range(4)), *info, mode, n, weights is not None)


def _per_image(values: Any, n: int, name: str) -> list:
    """A source given once for all images, or a list/tuple with one entry per image."""
    if isinstance(values, (list, tuple)):
        if len(values) != n:
            raise ParameterError(f"{name} has {len(values)} entries but there are {n} images; give one per image")
        return list(values)
    return [values] * n


def _key(spec: Any) -> Any:
    if isinstance(spec, dict):
        return ("labels", tuple(sorted(spec.items())))
    return ("value", spec)


def _image(result: PID, i: int) -> PID:
    """Image ``i`` of a batch result as a single-image :class:`PID`."""

    def atom(a: Information) -> Information:
        return Information(float(a.value[i]), float(a.stderr[i]), a.pixel_map[i], a.pixel_stderr[i])

    def info(m: Information) -> Information:
        c = Curve(m.curve.logsnr, m.curve.mean[i], m.curve.count)
        return Information(float(m.value[i]), float(m.stderr[i]), m.pixel_map[i], m.pixel_stderr[i],
                           float(m.standard_value[i]), float(m.standard_stderr[i]), m.standard_map[i], c, m.samples)

    return replace(
        result, redundancy=atom(result.redundancy), unique_1=atom(result.unique_1), unique_2=atom(result.unique_2),
        synergy=atom(result.synergy), mi_1=info(result.mi_1), mi_2=info(result.mi_2), mi_12=info(result.mi_12),
        per_snr_redundancy=atom(result.per_snr_redundancy), covariance=result.covariance[i],
    )


def dataset_pid(
    model: Model,
    x: torch.Tensor,
    y1: Any,
    y2: Any,
    context: Any = None,
    *,
    weights: Sequence[float] | np.ndarray | None = None,
    prompt: str | Sequence[str] | None = None,
    conditional: bool = False,
    full_prompt: bool = False,
    redundancy: str = "integrated",
    settings: Settings | None = None,
    **overrides: Any,
) -> DatasetPID:
    """PID of the joint distribution over a set of images, each with its own source values.

    Images that share their sources (and context, prompt) are decomposed in one engine run;
    the pointwise results are then averaged by :func:`average_pid`.

    Args:
        x: ``(n, *data_shape)`` images drawn from the joint distribution.
        y1, y2, context, prompt: one value for every image, or a list with one per image
            (e.g. ``[{"y1": 0}, {"y1": 1}, ...]``).
        weights: optional weight per image; see :func:`average_pid`.
        settings, keywords: as :func:`diffpid.pid`. The images of group ``k`` (in order of
            their first image) are drawn with seed ``settings.seed + k``.
    """
    settings = Settings.of(settings, **overrides)
    check_mode(redundancy)
    x = model.check_x(x)
    n = len(x)
    cols = [_per_image(v, n, name) for v, name in ((y1, "y1"), (y2, "y2"), (context, "context"), (prompt, "prompt"))]
    groups: dict[Any, list[int]] = {}
    for i in range(n):
        groups.setdefault(tuple(_key(c[i]) for c in cols), []).append(i)
    per_image: list[PID | None] = [None] * n
    for k, idx in enumerate(groups.values()):
        j = idx[0]
        r = pid(model, x[idx], cols[0][j], cols[1][j], cols[2][j], prompt=cols[3][j], conditional=conditional,
                full_prompt=full_prompt, redundancy=redundancy,
                settings=settings.replace(seed=(settings.seed + k) % (MAX_SEED + 1)))
        for k, i in enumerate(idx):
            per_image[i] = _image(r, k)
    result = average_pid(per_image, weights, redundancy)
    return replace(result, pointwise=tuple(per_image))
