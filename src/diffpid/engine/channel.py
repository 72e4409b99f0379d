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
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from . import streams
from ..errors import ParameterError

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


def real_dtype(device: torch.device | str) -> torch.dtype:
    """The widest float a device computes in: float64, except on Apple's MPS (float32)."""
    return torch.float32 if torch.device(device).type == "mps" else torch.float64


def seed_of(seed: int | torch.Generator) -> int:
    """An integer seed; a ``torch.Generator`` gives one draw of its stream."""
    if isinstance(seed, torch.Generator):
        return int(torch.randint(0, 2**62, (1,), generator=seed))
    return int(seed)


class Sampler:
    """Base of the log-SNR samplers: ``(a, w, eps)`` for any ``(image, sample index)`` pairs.

    Draw ``n`` of image ``i`` is a pure function of ``(seed, i, n)`` (counter-based streams,
    :mod:`diffpid.engine.streams`), so any batching, chunking or round of draws gives the same numbers.
    Subclasses define :meth:`levels` (noise levels from uniforms) and may override
    :meth:`uniforms` (how the uniform behind each level is made; i.i.d. here).
    """

    loc: float
    scale: float
    clip: float

    @property
    def range(self) -> tuple[float, float]:
        """The clipped interval of log-SNR that the weights integrate over."""
        return (self.loc - self.clip * self.scale, self.loc + self.clip * self.scale)

    def levels(self, u: torch.Tensor, image: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Map uniforms ``u`` in (0, 1), shape ``(n,)``, of images ``image`` to levels and weights (float32)."""
        raise NotImplementedError  # abstract

    def uniforms(self, seed: int, image: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """``(n,)`` uniforms behind the levels of pairs ``(image, sample)``: i.i.d. per pair."""
        return streams.uniform(seed, streams.LEVEL, image, sample, real_dtype(image.device))

    def draw(self, seed: int, image: torch.Tensor, sample: torch.Tensor, shape: tuple[int, ...]) -> Draw:
        """Levels, weights and noise of the pairs ``(image[p], sample[p])``, on their device."""
        a, w = self.levels(self.uniforms(seed, image, sample), image)
        eps = streams.normal(seed, image, sample, math.prod(shape)).reshape(len(image), *shape)
        return Draw(a, w, eps)

    def stream(self, n: int, shape: tuple[int, ...], seed: int | torch.Generator = 0, chunk: int = 64,
               image: int = 0) -> Iterator[Draw]:
        """Yield the first ``n`` draws of one image for data of ``shape`` in chunks of at most ``chunk``."""
        if n < 1:
            raise ParameterError(f"the number of samples must be at least 1, got {n}")
        seed = seed_of(seed)
        for lo in range(0, n, chunk):
            idx = torch.arange(lo, min(n, lo + chunk))
            yield self.draw(seed, torch.full_like(idx, image), idx, shape)


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

    def levels(self, u, image=None):
        lo, hi = 1 / (1 + math.exp(self.clip)), 1 / (1 + math.exp(-self.clip))
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

    def levels(self, u, image=None):
        lo, hi = self.range
        a = lo + (hi - lo) * u
        return a.float(), torch.full_like(a, hi - lo).float()


@dataclass(frozen=True)
class SobolSampler(LogisticSampler):
    """Stratified (quasi-random) logistic levels: the one-dimensional Sobol sequence per image.

    The uniform behind draw ``n`` of an image is the base-2 radical inverse of ``n`` (the first
    Sobol coordinate), shifted mod 1 by a random amount per image, so the first ``2**j`` levels
    of an image fall one in each ``2**-j`` quantile of the truncated logistic proposal; ``eps``
    is i.i.d. (quasi-random points in thousands of noise dimensions gained nothing measurable,
    docs/estimator.md). Estimates stay unbiased; the reported standard errors use the i.i.d.
    formula, which is conservative here.
    """

    def uniforms(self, seed, image, sample):
        return streams.van_der_corput(seed, 0, image, sample, real_dtype(image.device))


@dataclass(frozen=True)
class PiecewiseSampler(SobolSampler):
    """Stratified levels from a piecewise-constant density, one density per image.

    ``probs[i]`` (or ``probs[image, i]``) is the probability of the bin ``[edges[i], edges[i+1]]``,
    constant density inside it; the weight is ``1 / q(a)``. Draw ``n`` uses the radical inverse
    of ``n - start`` (its own stratified sequence). Built by :class:`AdaptiveSampler` from a pilot.
    """

    edges: tuple[float, ...] = ()
    probs: Any = field(default=(), compare=False)  # (bins,) or (images, bins)
    start: int = 0

    def uniforms(self, seed, image, sample):
        return streams.van_der_corput(seed, 1, image, sample - self.start, real_dtype(image.device))

    def levels(self, u, image=None):
        real = u.dtype
        edges = torch.as_tensor(self.edges, dtype=real, device=u.device)
        probs = torch.as_tensor(self.probs, dtype=real, device=u.device)
        probs = probs[None] if probs.dim() == 1 else probs[image]  # (n or 1, bins)
        cdf = torch.cat([torch.zeros_like(probs[:, :1]), probs.cumsum(1)], 1)
        cdf = (cdf / cdf[:, -1:]).expand(len(u), -1).contiguous()
        i = (torch.searchsorted(cdf, u[:, None].contiguous(), right=True)[:, 0] - 1).clamp(0, probs.shape[1] - 1)
        c0, c1 = cdf.gather(1, i[:, None])[:, 0], cdf.gather(1, i[:, None] + 1)[:, 0]
        frac = ((u - c0) / (c1 - c0).clamp_min(1e-300 if real == torch.float64 else 1e-30)).clamp(0, 1)
        width = edges[i + 1] - edges[i]
        return (edges[i] + frac * width).float(), (width / (c1 - c0)).float()


@dataclass(frozen=True)
class AdaptiveSampler(SobolSampler):
    """Two-stage adaptive importance sampling over log-SNR: the default sampler.

    A pilot stage (``pilot`` of the first round, at least ``min_pilot`` samples) draws from
    :class:`SobolSampler`; the engine records, per image, the second moment of every
    term's integrand in ``bins`` equal bins of log-SNR (each term normalised by its pilot
    value). The main stage (every later draw, including later rounds of a precision target)
    draws from the piecewise-constant density proportional to the square root of that moment
    (the variance-optimal density for a fixed bin shape), mixed with a uniform ``floor`` so
    no part of the range is starved (:class:`PiecewiseSampler`). Both stages are unbiased
    and are averaged together. The floor's share follows the logistic proposal binned.

    ``allocation="neyman"`` instead makes the bin masses proportional to the square root of
    each bin's *variance* (plus ``mean_share`` of its squared mean, so a bin the pilot saw
    once is not starved): the main stage is stratified over its levels, which removes the
    spread of the bin means, so the variance within the bins is what the masses should
    follow (Neyman allocation). It needs the pilot's first moments as well.
    """

    pilot: float = 0.25
    min_pilot: int = 16
    bins: int = 16
    floor: float = 0.3
    allocation: str = "moment"
    mean_share: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 < self.pilot < 1):
            raise ParameterError(f"pilot must be a fraction in (0, 1), got {self.pilot}")
        if not (0 < self.floor <= 1):
            raise ParameterError(f"floor must be in (0, 1], got {self.floor}")
        if self.allocation not in ("moment", "neyman"):
            raise ParameterError(f"allocation must be 'moment' or 'neyman', got {self.allocation!r}")
        if not (0 <= self.mean_share <= 1):
            raise ParameterError(f"mean_share must be in [0, 1], got {self.mean_share}")

    def pilot_size(self, n: int) -> int:
        """Samples of the pilot stage for a first round of ``n`` (all of them for tiny rounds)."""
        return min(n, max(self.min_pilot, int(round(self.pilot * n))))

    def edges(self) -> torch.Tensor:
        lo, hi = self.range
        return torch.linspace(lo, hi, self.bins + 1, dtype=torch.float64)

    def pilot_score(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """What :meth:`fit` takes, from the pilot's per-bin moments of each term ``(..., T, bins)``.

        Each term's integrand is normalised by its value (so terms of different sizes count
        alike). ``moment`` allocation: the sum over terms of the second moments; ``neyman``: of
        the variances plus ``mean_share`` of the squared means.
        """
        if self.allocation == "neyman":
            return (second - (1 - self.mean_share) * first ** 2).clamp_min(0).sum(-2)
        return second.sum(-2)

    def fit(self, second_moment: torch.Tensor, start: int = 0) -> PiecewiseSampler:
        """The main-stage sampler from per-bin second moments ``(bins,)`` or ``(images, bins)``.

        (With ``allocation="neyman"``, pass :meth:`pilot_score` instead of second moments.)

        The moments are smoothed over neighbouring bins (a pilot sees rare large values in
        few bins), the square root gives the bin masses, and a fraction ``floor`` of the
        mass follows the logistic proposal binned, so weights stay bounded where the pilot
        saw little. An image whose moments are all zero or not finite gets the binned proposal.
        ``start`` is the first sample index the main stage draws.
        """
        dev = second_moment.device
        real = real_dtype(dev)
        edges = self.edges()
        e = edges.to(dev, real)
        width = e[1:] - e[:-1]
        cdf = torch.sigmoid((e - self.loc) / self.scale)
        base = (cdf[1:] - cdf[:-1]) / (cdf[-1] - cdf[0])
        m = second_moment.detach().to(real)
        flat = m.dim() == 1
        m = m[None] if flat else m
        bad = ~torch.isfinite(m).all(1) | (m.clamp_min(0).sum(1) <= 0)
        m = torch.where(torch.isfinite(m), m, 0).clamp_min(0)
        padded = torch.cat([m[:, :1], m, m[:, -1:]], 1)
        m = 0.25 * padded[:, :-2] + 0.5 * padded[:, 1:-1] + 0.25 * padded[:, 2:]
        opt = m.sqrt() * width
        opt = opt / opt.sum(1, keepdim=True).clamp_min(1e-30)
        probs = torch.where(bad[:, None], base[None], (1 - self.floor) * opt + self.floor * base[None])
        probs = tuple(probs[0].tolist()) if flat else probs
        return PiecewiseSampler(self.loc, self.scale, self.clip, tuple(edges.tolist()), probs, start)


@dataclass(frozen=True)
class NeymanSampler(AdaptiveSampler):
    """:class:`AdaptiveSampler` with the Neyman allocation and a smaller pilot (10%, at least 24 draws).

    The main stage is stratified over its levels, so its bin masses should follow each bin's
    spread, not its second moment; and a pilot drawn from the fixed proposal is the least
    efficient part of the budget, so it is kept small once it has a couple of draws per bin.
    Measured on the embedded model in ``benchmarks/results/variance_sources.md`` and
    ``estimator_efficiency.md``.
    """

    pilot: float = 0.1
    min_pilot: int = 24
    allocation: str = "neyman"


SAMPLERS = {
    "adaptive": AdaptiveSampler,
    "neyman": NeymanSampler,
    "sobol": SobolSampler,
    "logistic": LogisticSampler,
    "published": LogisticSampler,
    "uniform": UniformSampler,
}


def make_sampler(name: str = "adaptive", loc: float = 1.0, scale: float = 2.0, clip: float = 3.0) -> Sampler:
    """Build a sampler by name: ``adaptive`` (default), ``neyman``, ``sobol``, ``logistic``/``published``, ``uniform``."""
    if isinstance(name, Sampler):
        return name
    if name not in SAMPLERS:
        raise ParameterError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name](loc=loc, scale=scale, clip=clip)
