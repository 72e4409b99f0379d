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

from .errors import ParameterError

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


def logsnr_from_flow_time(t: torch.Tensor) -> torch.Tensor:
    """Log-SNR of a flow-matching time (``x_t = (1-t) x + t eps``): ``2 log((1-t)/t)``."""
    return 2 * (torch.log1p(-t) - torch.log(t))


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
            u = torch.rand(m, generator=generator, dtype=torch.float64)
            a, w = self.levels(u)
            eps = torch.randn((m, *shape), generator=generator)
            yield Draw(a, w, eps)
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
    """Randomised quasi-Monte-Carlo over ``(a, eps)`` jointly: the default sampler.

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


SAMPLERS = {
    "sobol": SobolSampler,
    "logistic": LogisticSampler,
    "published": LogisticSampler,
    "uniform": UniformSampler,
}


def make_sampler(name: str = "sobol", loc: float = 1.0, scale: float = 2.0, clip: float = 3.0) -> Sampler:
    """Build a sampler by name: ``sobol`` (default), ``logistic``/``published``, ``uniform``."""
    if isinstance(name, Sampler):
        return name
    if name not in SAMPLERS:
        raise ParameterError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](loc=loc, scale=scale, clip=clip)
