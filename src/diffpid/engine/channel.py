"""The Gaussian noise channel and the samplers over log-SNR (SCIENCE.md sections 1 and 3).

The channel is variance preserving and indexed by the log signal-to-noise ratio ``a``::

    x_a = sqrt(sigmoid(a)) * x + sqrt(sigmoid(-a)) * eps

Every estimator of the package is an integral over ``a`` of an expectation over ``eps``.
A sampler draws both: noise levels ``a`` with importance weights ``w`` such that
``mean(w * f(a))`` estimates ``Int f(a) da`` over the clipped range, and the standard
normal noise ``eps`` that goes with each level. All samplers are exact for constants:
``mean(w)`` is the length of the range for any draw.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch

from ..errors import ParameterError

SOBOL_MAX_DIM = 21201  # torch.quasirandom.SobolEngine.MAXDIM


def noisy(x: torch.Tensor, a: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Variance-preserving channel: ``x_a = sqrt(sigmoid(a)) x + sqrt(sigmoid(-a)) eps``.

    ``x`` and ``eps`` share a shape ``(n, *shape)``; ``a`` is ``(n,)``.
    """
    a = a.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return torch.sigmoid(a).sqrt() * x + torch.sigmoid(-a).sqrt() * eps


def logsnr_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Log-SNR of DDPM timesteps: ``a = logit(alphas_cumprod[t])``."""
    ac = alphas_cumprod.double()
    return torch.log(ac) - torch.log1p(-ac)


def logistic_weight(a: torch.Tensor, loc: float, scale: float, clip: float) -> torch.Tensor:
    """Importance weight of the truncated logistic proposal: ``s tanh(k/2) / (sig(r) sig(-r))``."""
    r = (a - loc) / scale
    return scale * math.tanh(clip / 2) / (torch.sigmoid(r) * torch.sigmoid(-r))


@dataclass(frozen=True)
class Draw:
    """One chunk of samples: noise levels, their weights and the noise.

    Args:
        logsnr: ``(n,)`` noise levels ``a``.
        weight: ``(n,)`` importance weights, ``mean(weight * f(a))`` estimates ``Int f da``.
        eps: ``(n, *shape)`` standard normal noise, one per level.
    """

    logsnr: torch.Tensor
    weight: torch.Tensor
    eps: torch.Tensor


def _check_range(loc: float, scale: float, clip: float) -> None:
    if not (clip > 0 and math.isfinite(clip)):
        raise ParameterError(f"clip must be a positive finite number, got {clip}; the paper default is 3")
    if not (scale > 0 and math.isfinite(scale)):
        raise ParameterError(f"scale must be a positive finite number, got {scale}; the paper default is 2")
    if not math.isfinite(loc):
        raise ParameterError(f"loc must be finite, got {loc}; the paper default is 1")


def _seed(generator: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=generator))


class Sampler:
    """Base of the log-SNR samplers: draws ``(a, w, eps)`` in chunks that stream.

    Subclasses define :meth:`levels` (noise levels from uniforms) and may override
    :meth:`uniforms` (how the uniforms over ``(a, eps)`` are made).
    """

    loc: float
    scale: float
    clip: float

    @property
    def range(self) -> tuple[float, float]:
        """The clipped interval of log-SNR that the weights integrate over."""
        return (self.loc - self.clip * self.scale, self.loc + self.clip * self.scale)

    def levels(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map uniforms ``u`` in (0, 1), shape ``(n,)``, to levels and weights."""
        raise NotImplementedError  # abstract

    def stream(
        self, n: int, shape: tuple[int, ...], generator: torch.Generator, chunk: int
    ) -> Iterator[Draw]:
        """Yield ``n`` samples for data of ``shape`` in chunks of at most ``chunk``."""
        if n < 1:
            raise ParameterError(f"the number of samples must be at least 1, got {n}")
        done = 0
        while done < n:
            m = min(chunk, n - done)
            # one (u, eps) pair after the other, so that the draws do not depend on the chunk size
            pairs = [(torch.rand(1, generator=generator, dtype=torch.float64), torch.randn((1, *shape), generator=generator))
                     for _ in range(m)]
            a, w = self.levels(torch.cat([p[0] for p in pairs]))
            yield Draw(a, w, torch.cat([p[1] for p in pairs]))
            done += m


@dataclass(frozen=True)
class LogisticSampler(Sampler):
    """I.i.d. truncated logistic importance sampling (Kong et al. 2023, 2024).

    ``u ~ U(sigmoid(-k), sigmoid(k))``, ``a = loc + scale * logit(u)``, with the weight of
    :func:`logistic_weight`. One independent ``eps`` per level. With the defaults this is
    the scheme of the published code (``published`` sampler).
    """

    loc: float = 1.0
    scale: float = 2.0
    clip: float = 3.0

    def __post_init__(self) -> None:
        _check_range(self.loc, self.scale, self.clip)

    def levels(self, u):
        lo, hi = torch.sigmoid(torch.tensor(-self.clip, dtype=torch.float64)), torch.sigmoid(
            torch.tensor(self.clip, dtype=torch.float64)
        )
        u = lo + (hi - lo) * u
        a = self.loc + self.scale * torch.logit(u)
        return a.float(), logistic_weight(a, self.loc, self.scale, self.clip).float()


@dataclass(frozen=True)
class UniformSampler(Sampler):
    """I.i.d. uniform levels on ``[loc - clip*scale, loc + clip*scale]``, weight ``2*clip*scale``."""

    loc: float = 1.0
    scale: float = 2.0
    clip: float = 3.0

    def __post_init__(self) -> None:
        _check_range(self.loc, self.scale, self.clip)

    def levels(self, u):
        lo, hi = self.range
        a = lo + (hi - lo) * u
        return a.float(), torch.full_like(a, hi - lo).float()


@dataclass(frozen=True)
class SobolSampler(LogisticSampler):
    """Randomised quasi-Monte-Carlo over ``(a, eps)`` jointly, logistic levels.

    One Owen-scrambled Sobol sequence in ``1 + d`` dimensions: the first coordinate
    becomes the noise level through the truncated logistic quantile (as
    :class:`LogisticSampler`), the others become ``eps`` through the normal quantile.
    Successive chunks continue one sequence, so any chunking gives the same points.
    Coordinates beyond Sobol's 21,201 dimensions are drawn i.i.d. Estimates stay unbiased;
    the reported standard errors use the i.i.d. formula, which is conservative here.
    """

    def stream(self, n, shape, generator, chunk):
        if n < 1:
            raise ParameterError(f"the number of samples must be at least 1, got {n}")
        d = math.prod(shape)
        dq = min(d, SOBOL_MAX_DIM - 1)
        engine = torch.quasirandom.SobolEngine(1 + dq, scramble=True, seed=_seed(generator))
        done = 0
        while done < n:
            m = min(chunk, n - done)
            u = engine.draw(m, dtype=torch.float64)
            a, w = self.levels(u[:, 0])
            z = u[:, 1:].clamp(1e-12, 1 - 1e-12)
            flat = torch.special.ndtri(z).float()
            if dq < d:
                rest = torch.randn((m, d - dq), generator=generator)
                flat = torch.cat([flat, rest], dim=1)
            yield Draw(a, w, flat.reshape(m, *shape))
            done += m


@dataclass(frozen=True)
class PiecewiseSampler(SobolSampler):
    """Quasi-Monte-Carlo over ``(a, eps)`` with a piecewise-constant density of levels.

    ``probs[i]`` is the probability of the bin ``[edges[i], edges[i+1]]``, constant density
    inside it; the weight is ``1 / q(a)``. Built by :class:`AdaptiveSampler` from a pilot run.
    """

    edges: tuple[float, ...] = ()
    probs: tuple[float, ...] = ()

    def levels(self, u):
        edges = torch.tensor(self.edges, dtype=torch.float64)
        probs = torch.tensor(self.probs, dtype=torch.float64)
        cdf = torch.cat([torch.zeros(1, dtype=torch.float64), probs.cumsum(0)])
        cdf = cdf / cdf[-1]
        i = (torch.searchsorted(cdf, u.contiguous(), right=True) - 1).clamp(0, len(probs) - 1)
        frac = ((u - cdf[i]) / (cdf[i + 1] - cdf[i]).clamp_min(1e-300)).clamp(0, 1)
        width = edges[i + 1] - edges[i]
        a = edges[i] + frac * width
        w = width / (cdf[i + 1] - cdf[i])
        return a.float(), w.float()


@dataclass(frozen=True)
class AdaptiveSampler(SobolSampler):
    """Two-stage adaptive importance sampling over log-SNR: the default sampler.

    A pilot stage (``pilot`` of the budget, at least ``min_pilot`` samples) draws from
    :class:`SobolSampler`; the engine records, per image, the second moment of every
    term's integrand in ``bins`` equal bins of log-SNR (each term normalised by its pilot
    value). The main stage draws from the piecewise-constant density proportional to the
    square root of that moment (the variance-optimal density for a fixed bin shape),
    mixed with a uniform ``floor`` so no part of the range is starved
    (:class:`PiecewiseSampler`). Both stages are unbiased and are averaged together.
    The floor's share follows the logistic proposal binned.
    """

    pilot: float = 0.25
    min_pilot: int = 16
    bins: int = 16
    floor: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.pilot < 1):
            raise ParameterError(f"pilot must be a fraction in (0, 1), got {self.pilot}")
        if not (0 < self.floor <= 1):
            raise ParameterError(f"floor must be in (0, 1], got {self.floor}")

    def pilot_size(self, n: int) -> int:
        """Samples of the pilot stage for a budget of ``n`` (all of them for tiny budgets)."""
        return min(n, max(self.min_pilot, int(round(self.pilot * n))))

    def edges(self) -> torch.Tensor:
        lo, hi = self.range
        return torch.linspace(lo, hi, self.bins + 1, dtype=torch.float64)

    def fit(self, second_moment: torch.Tensor) -> Sampler:
        """The main-stage sampler from per-bin second moments ``(bins,)`` of the integrand.

        The moments are smoothed over neighbouring bins (a pilot sees rare large values in
        few bins), the square root gives the bin masses, and a fraction ``floor`` of the
        mass follows the logistic proposal binned, so weights stay bounded where the pilot
        saw little.
        """
        e = self.edges()
        width = e[1:] - e[:-1]
        r = (e - self.loc) / self.scale
        cdf = torch.sigmoid(r)
        base = (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])
        m = second_moment.double().clamp_min(0)
        if not torch.isfinite(m).all() or m.sum() <= 0:
            return PiecewiseSampler(self.loc, self.scale, self.clip, tuple(e.tolist()), tuple(base.tolist()))
        padded = torch.cat([m[:1], m, m[-1:]])
        m = 0.25 * padded[:-2] + 0.5 * padded[1:-1] + 0.25 * padded[2:]
        opt = m.sqrt() * width
        opt = opt / opt.sum()
        probs = (1 - self.floor) * opt + self.floor * base
        return PiecewiseSampler(self.loc, self.scale, self.clip, tuple(e.tolist()), tuple(probs.tolist()))


SAMPLERS = {
    "adaptive": AdaptiveSampler,
    "sobol": SobolSampler,
    "logistic": LogisticSampler,
    "published": LogisticSampler,
    "uniform": UniformSampler,
}


def make_sampler(name: str = "adaptive", loc: float = 1.0, scale: float = 2.0, clip: float = 3.0) -> Sampler:
    """Build a sampler by name: ``adaptive`` (default), ``sobol``, ``logistic``/``published``, ``uniform``."""
    if isinstance(name, Sampler):
        return name
    if name not in SAMPLERS:
        raise ParameterError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](loc=loc, scale=scale, clip=clip)
