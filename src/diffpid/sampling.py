"""Deterministic DDIM (eta 0) on a :class:`~diffpid.models.base.Model`: inversion and regeneration.

Both run on the same grid of log-SNR levels, uniform from the top of the model's range
(clipped to 12) down to its bottom (clipped to -12, or to a chosen ``lowest`` level), by
the grid attention maps along DDIM inversion use. One step from level ``a`` to ``a'`` predicts the
clean data from the noise prediction at ``a`` and re-noises it deterministically::

    x0 = (x - sqrt(sig(-a)) e) / sqrt(sig(a)),    x' = sqrt(sig(a')) x0 + sqrt(sig(-a')) e

:func:`ddim_invert` walks the grid from clean data to noise, :func:`ddim_generate` walks it
back. The two use the noise prediction at opposite ends of each step, so a round trip is
exact only in the limit of many steps; :func:`round_trip_error` measures it.
"""

from __future__ import annotations

from typing import Any

import torch

from .errors import ParameterError
from .models.base import Model

__all__ = ["ddim_generate", "ddim_invert", "ddim_levels", "ddim_step", "round_trip_error"]


def ddim_levels(model: Model, steps: int, lowest: float | None = None) -> torch.Tensor:
    """``(steps + 1,)`` float64 log-SNR levels from high (clean end) to low (noise end).

    Args:
        model: the denoiser (its ``logsnr_range``, clipped to ``[-12, 12]``).
        steps: number of steps (model calls of one pass).
        lowest: stop at this log-SNR instead of the bottom of the range (when it is higher).
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise ParameterError(f"steps must be a positive integer, got {steps!r}")
    lo, hi = max(float(model.logsnr_range[0]), -12.0), min(float(model.logsnr_range[1]), 12.0)
    if lowest is not None:
        if not lowest < hi:
            raise ParameterError(f"lowest log-SNR {lowest} must be below the top of the model's range {hi:.3g}")
        lo = max(lo, float(lowest))
    return torch.linspace(hi, lo, steps + 1, dtype=torch.float64)


def ddim_step(x: torch.Tensor, e: torch.Tensor, a: float, a_next: float) -> torch.Tensor:
    """One deterministic DDIM step of ``x`` at log-SNR ``a`` to ``a_next`` with noise prediction ``e``.

    Args:
        x, e: ``(b, *data_shape)`` state and its noise prediction at ``a``.
        a, a_next: log-SNR of the state and of the result.
    """
    s, s2 = torch.sigmoid(torch.tensor(a, dtype=torch.float64)), torch.sigmoid(torch.tensor(a_next, dtype=torch.float64))
    x0 = (x - float((1 - s).sqrt()) * e) / float(s.sqrt())
    return float(s2.sqrt()) * x0 + float((1 - s2).sqrt()) * e


def _guided_eps(model: Model, x: torch.Tensor, a: float, condition: Any, unconditional: Any,
                guidance: float) -> torch.Tensor:
    logsnr = torch.full((len(x),), a, device=model.device)
    if guidance == 1.0:
        return model.eps(x, logsnr, [condition])[:, 0].float()
    e = model.eps(x, logsnr, [unconditional, condition]).float()
    return e[:, 0] + guidance * (e[:, 1] - e[:, 0])


def _check(model: Model, x: torch.Tensor, guidance: float) -> torch.Tensor:
    if not isinstance(guidance, (int, float)) or guidance < 0:
        raise ParameterError(f"guidance must be a number >= 0 (1 = no guidance), got {guidance!r}")
    return model.check_x(x).to(model.device, torch.float32)


@torch.no_grad()
def ddim_invert(model: Model, x: torch.Tensor, condition: Any, steps: int = 50, *, guidance: float = 1.0,
                unconditional: Any = None, lowest: float | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion of clean data ``x`` under ``condition`` to the noise end of the grid.

    Args:
        model: the denoiser.
        x: ``(*data_shape)`` or ``(b, *data_shape)`` clean data (latents or pixels).
        condition: a condition from ``model.encode_prompt``.
        steps: model calls (one per grid step).
        guidance: classifier-free guidance scale (1 = the conditional prediction only, as the
            published intervention; other values also evaluate ``unconditional``).
        unconditional: the unconditional condition for guidance (default ``model.unconditional()``).
        lowest: stop at this log-SNR (see :func:`ddim_levels`); the same value must be given
            to :func:`ddim_generate`.

    Returns:
        ``(b, *data_shape)`` the state at the lowest log-SNR of :func:`ddim_levels`.
    """
    x = _check(model, x, guidance)
    unc = unconditional if unconditional is not None or guidance == 1.0 else model.unconditional()
    levels = ddim_levels(model, steps, lowest)
    for i in range(steps):
        a, a2 = float(levels[i]), float(levels[i + 1])
        x = ddim_step(x, _guided_eps(model, x, a, condition, unc, guidance), a, a2)
    return x


@torch.no_grad()
def ddim_generate(model: Model, noise: torch.Tensor, condition: Any, steps: int = 50, *, guidance: float = 1.0,
                  unconditional: Any = None, lowest: float | None = None) -> torch.Tensor:
    """Deterministic DDIM sampling from the noise end of the grid back to clean data.

    Args:
        model: the denoiser.
        noise: ``(*data_shape)`` or ``(b, *data_shape)`` state at the lowest level of
            :func:`ddim_levels` (e.g. from :func:`ddim_invert`, or ``sqrt(sig(-a_min))`` times
            standard normal noise for a fresh sample).
        condition, steps, guidance, unconditional, lowest: as :func:`ddim_invert`.

    Returns:
        ``(b, *data_shape)`` data at the top of the grid (the clean end).
    """
    x = _check(model, noise, guidance)
    unc = unconditional if unconditional is not None or guidance == 1.0 else model.unconditional()
    levels = ddim_levels(model, steps, lowest).flip(0)
    for i in range(steps):
        a, a2 = float(levels[i]), float(levels[i + 1])
        x = ddim_step(x, _guided_eps(model, x, a, condition, unc, guidance), a, a2)
    return x


def round_trip_error(x: torch.Tensor, reconstruction: torch.Tensor) -> tuple[float, float]:
    """Mean squared error per coordinate and relative error ``||x - x_rec||^2 / ||x||^2`` of a round trip.

    Args:
        x, reconstruction: ``(b, *data_shape)`` the data and its inversion-regeneration.
    """
    d = (x.float() - reconstruction.float()).pow(2).sum()
    return float(d / x.numel()), float(d / x.float().pow(2).sum().clamp_min(1e-30))
