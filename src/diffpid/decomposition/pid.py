"""Partial information decomposition of two sources about an image (DiffusionPID).

For a target image ``x``, sources ``y1``, ``y2`` and an optional context ``c``, with
``m(S) = i_o(x; S | c)`` the orthogonal pointwise (conditional) information of
SCIENCE.md section 4, the minimum-mutual-information decomposition is::

    R  = min(m(y1), m(y2))          U1 = m(y1) - R      U2 = m(y2) - R
    S  = m(y1y2) - m(y1) - m(y2) + R

so that ``R + U1 = m(y1)``, ``R + U2 = m(y2)`` and ``R + U1 + U2 + S = m(y1y2)`` hold
exactly, per image and per pixel. PID is CPID with an empty context.

Two redundancy modes:

- ``"integrated"`` (default): the minimum of the integrated informations. Per image, the
  minimum of the image totals; per pixel, the minimum of the two pixel maps (so the
  redundancy map does not sum to the image redundancy: sum of minima <= minimum of sums).
- ``"per_snr"``: the minimum inside the integral, per noise draw ``(a, eps)`` and per
  pixel, ``R = 1/2 Int E_eps min(f1, f2) da`` with ``f_i = ||e(x_a|y_i,c) - e(x_a|c)||^2``
  at that pixel (the engine's :class:`~diffpid.engine.estimate.Minimum`); the image value is the
  sum of its pixel map. Because the minimum is concave, ``E min(f1, f2) <= min(E f1, E f2)``
  at every noise level, the integral of a minimum is at most the minimum of integrals, and
  a sum of pixel minima is at most the minimum of the sums: ``R_per_snr <= R_integrated``,
  for the exact quantities and, draw by draw, for the estimates of one run. It is not a
  noisier estimate of the same thing: with infinitely many samples it converges to
  ``E[min]``, which stays below ``min(E)`` whenever the two integrands cross from draw to
  draw (for instance two words with equal information carried by different noise
  realisations), so its redundancy is lower and its unique atoms and synergy are shifted
  (``U`` up, ``S`` down by the same amount). It is unbiased for its own definition and has
  a plain standard error. The integrated estimate ``min(m1_hat, m2_hat)`` is instead biased
  slightly downward when the two informations are tied, by ``sd(m1_hat - m2_hat) /
  sqrt(2 pi)`` (about 0.4 standard errors) at an exact tie, and is unbiased when they differ
  by several standard errors.

Standard errors come from the per-sample contributions (the engine's
:class:`~diffpid.engine.estimate.Combination`), so the correlations between the terms under common
random numbers are accounted for. In the integrated mode, after the run the branch of the
minimum is fixed (delta method): ``R`` has the error of the smaller information, ``S =
m(y1y2) - max(m1, m2)`` that of the difference, and both unique atoms that of ``m1 - m2``
(for the atom that is zero this is a conservative bound on the uncertainty of the branch).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..engine.estimate import Combination, Difference, Minimum
from ..errors import ParameterError
from ..information import Information, information_from, pick_image
from ..models.base import Model
from ..plan import Plan
from ..settings import Settings
from .sources import PIDSources

REDUNDANCY_MODES = ("integrated", "per_snr")

# order of the four estimates whose covariance is kept: m(y1), m(y2), m(y1y2), per-noise-level minimum
_M1, _M2, _M12, _MIN = range(4)
_PAIRS = ((_M1, _M2), (_M12, _M1), (_M12, _M2), (_M1, _MIN), (_M2, _MIN), (_M12, _MIN))


@dataclass(frozen=True)
class Decomposition:
    """The atoms and informations every decomposition has (pointwise :class:`PID` and dataset-level
    :class:`~diffpid.decomposition.dataset.DatasetPID`): ``redundancy, unique_1, unique_2, synergy`` and
    ``mi_1, mi_2, mi_12``, ``per_snr_redundancy``, each an :class:`~diffpid.information.Information`."""

    redundancy: Information
    unique_1: Information
    unique_2: Information
    synergy: Information
    mi_1: Information
    mi_2: Information
    mi_12: Information
    per_snr_redundancy: Information

    @property
    def atoms(self) -> tuple[Information, Information, Information, Information]:
        """``(redundancy, unique_1, unique_2, synergy)``."""
        return (self.redundancy, self.unique_1, self.unique_2, self.synergy)


@dataclass(frozen=True)
class PID(Decomposition):
    """Pointwise (conditional) partial information decomposition of an image, in nats.

    Args:
        redundancy, unique_1, unique_2, synergy: the four atoms (values, standard errors, maps).
        mi_1, mi_2, mi_12: ``i_o(x; y1 | c)``, ``i_o(x; y2 | c)``, ``i_o(x; y1 y2 | c)``.
        per_snr_redundancy: the per-noise-level redundancy, measured in both modes (no extra
            denoiser calls); equal to ``redundancy`` when ``redundancy_mode == "per_snr"``.
        source_1, source_2: the two sources (words, or label assignments for the oracle).
        context: the context ``c`` (``None`` for plain PID).
        target: what the information is about, e.g. ``"image"`` or ``"image given ..."``.
        conditions: the four conditions compared: ``(c, c+y1, c+y2, c+y1+y2)``.
        redundancy_mode: ``"integrated"`` or ``"per_snr"``.
        covariance: ``(4, 4)`` (``(b, 4, 4)`` for a batch) covariance of the image-level
            estimates of ``(mi_1, mi_2, mi_12, per_snr_redundancy)``.
        samples: ``(a, eps)`` draws per image.
    """

    source_1: Any
    source_2: Any
    context: Any
    target: str
    conditions: tuple[Any, Any, Any, Any]
    redundancy_mode: str
    covariance: np.ndarray
    samples: int

    def _repr_html_(self) -> str:
        from ..report.notebook import pid_html

        return pid_html(self)


def check_mode(redundancy: str) -> str:
    if redundancy not in REDUNDANCY_MODES:
        raise ParameterError(f"unknown redundancy mode {redundancy!r}; choose 'integrated' or 'per_snr'")
    return redundancy


def decompose(values: np.ndarray, covariance: np.ndarray, redundancy: str) -> tuple[np.ndarray, np.ndarray]:
    """Informations and their standard errors from the estimates of ``(m1, m2, m12, min)``.

    Args:
        values: ``(..., 4)`` estimates of ``m(y1), m(y2), m(y1y2)`` and the per-noise-level minimum.
        covariance: ``(..., 4, 4)`` their covariance.
        redundancy: ``"integrated"`` or ``"per_snr"``.

    Returns:
        ``(..., 4)`` values and ``(..., 4)`` standard errors of ``(R, U1, U2, S)``.
    """
    m1, m2, m12, mn = (values[..., i] for i in range(4))
    e = np.eye(4)
    if check_mode(redundancy) == "integrated":
        first = m1 <= m2
        r = np.minimum(m1, m2)
        c_r = np.where(first[..., None], e[_M1], e[_M2])
        c_u = np.broadcast_to(e[_M1] - e[_M2], c_r.shape)
        c_s = np.where(first[..., None], e[_M12] - e[_M2], e[_M12] - e[_M1])
        coef = np.stack([c_r, c_u, c_u, c_s], -2)  # (..., 4 atoms, 4)
    else:
        r = mn
        rows = [e[_MIN], e[_M1] - e[_MIN], e[_M2] - e[_MIN], e[_M12] - e[_M1] - e[_M2] + e[_MIN]]
        coef = np.broadcast_to(np.stack(rows), (*values.shape[:-1], 4, 4))
    atoms = np.stack([r, m1 - r, m2 - r, m12 - m1 - m2 + r], -1)
    var = np.einsum("...ai,...ij,...aj->...a", coef, covariance, coef)
    return atoms, np.sqrt(np.clip(var, 0, None))


def pid_terms(c: int = 0, c1: int = 1, c2: int = 2, c12: int = 3) -> list:
    """Engine terms over the condition indices of ``(c, c+y1, c+y2, c+y1+y2)``: four estimates
    and six pairwise differences."""
    base = [Difference(c1, c), Difference(c2, c), Difference(c12, c)]
    base.append(Minimum(base[0], base[1]))
    return base + [Combination((base[i], base[j]), (1.0, -1.0)) for i, j in _PAIRS]


def _covariance(se: list[np.ndarray]) -> np.ndarray:
    """``(..., 4, 4)`` covariance from the errors of the four estimates and their six differences."""
    var = [s**2 for s in se[:4]]
    cov = np.zeros((*se[0].shape, 4, 4))
    for i in range(4):
        cov[..., i, i] = var[i]
    for (i, j), s in zip(_PAIRS, se[4:]):
        cov[..., i, j] = cov[..., j, i] = 0.5 * (var[i] + var[j] - s**2)
    return cov


def pid_from_run(terms: Sequence[Any], samples: int, sources: PIDSources, redundancy: str, single: bool) -> PID:
    """Package the ten engine term estimates of :func:`pid_terms` as a :class:`PID`."""
    t = terms
    values = np.stack([t[i].value for i in range(4)], -1)  # (b, 4)
    maps = np.stack([t[i].pixel_map for i in range(4)], -1)  # (b, *mshape, 4)
    cov = _covariance([x.stderr for x in t])  # (b, 4, 4)
    cov_map = _covariance([x.pixel_stderr for x in t])  # (b, *mshape, 4, 4)
    # image level from the image totals (integrated: the minimum of sums, not a sum of pixel minima)
    val, se = decompose(values, cov, redundancy)
    pval, pse = decompose(maps, cov_map, redundancy)
    pick = pick_image(single)
    atoms = [Information(pick(val[..., i]), pick(se[..., i]), pick(np.moveaxis(pval, -1, 0)[i]),
                         pick(np.moveaxis(pse, -1, 0)[i]), samples=samples) for i in range(4)]
    mins = Information(pick(t[3].value), pick(t[3].stderr), pick(t[3].pixel_map), pick(t[3].pixel_stderr),
                       samples=samples)
    return PID(
        *atoms, *(information_from(t[i], samples, single) for i in range(3)),
        mins, sources.source_1, sources.source_2, sources.context, sources.target, sources.conditions,
        redundancy, cov[0] if single else cov, samples,
    )


def pid(
    model: Model,
    x: torch.Tensor,
    y1: Any,
    y2: Any,
    context: Any = None,
    *,
    prompt: str | None = None,
    conditional: bool = False,
    full_prompt: bool = False,
    redundancy: str = "integrated",
    settings: Settings | None = None,
    **overrides: Any,
) -> PID:
    """Pointwise PID (or CPID) of two sources about ``x``: one engine run over four conditions.

    Args:
        model: the denoiser.
        x: ``(*data_shape)`` or ``(b, *data_shape)`` images (latents or pixels); every image of
            a batch shares the sources.
        y1, y2: the sources: words of ``prompt`` (or two words, without a prompt), or label
            assignments such as ``{"shape": 1}`` for :class:`~diffpid.models.mixture.GaussianMixture`.
        context: for label sources, the context assignment (CPID); ``None`` for PID. For text,
            use ``prompt`` and ``conditional`` instead.
        prompt: the prompt the words come from. PID compares ``""``, ``y1``, ``y2`` and
            ``"y1 y2"`` (in prompt order; the full prompt if ``full_prompt``); CPID
            (``conditional=True``) compares the prompt without both words, without ``y2``,
            without ``y1``, and the full prompt.
        conditional: CPID given the rest of ``prompt``.
        full_prompt: for plain PID with a prompt, use the full prompt as the joint condition.
        redundancy: ``"integrated"`` (minimum of the integrated informations) or ``"per_snr"``
            (minimum per noise level and pixel inside the integral); see the module docstring.
        settings: a :class:`~diffpid.settings.Settings` (the ``(a, eps)`` draws are shared by the
            four conditions); its fields can also be given as keywords (``samples=128``).
    """
    settings = Settings.of(settings, **overrides)
    plan = Plan().pid(y1, y2, context, prompt=prompt, conditional=conditional, full_prompt=full_prompt,
                      redundancy=redundancy, name="pid")
    return plan_pid(plan.run(model, x, settings), "pid")


def plan_pid(result: Any, name: Any) -> PID:
    """The decomposition ``name`` of a plan's result, whether the plan added it as a PID or a CPID."""
    return result.cpid[name] if result.plan.has("cpid", name) else result.pid[name]
