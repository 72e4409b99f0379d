"""The estimator engine: batched common-random-number evaluation and streaming accumulators.

For inputs ``x`` ``(b, *data_shape)``, conditions ``C_0 .. C_{k-1}`` and *terms* (pairs of
conditions to compare), the engine draws ``(a, w, eps)`` from a sampler, forms
``x_a`` once per sample, evaluates every condition on that same ``x_a`` in batched
model calls, and accumulates (SCIENCE.md section 2, I-MMSE):

- orthogonal pointwise information ``1/2 Int E ||e(x_a|C_i) - e(x_a|C_j)||^2 da``,
- standard pointwise information ``1/2 Int E [||eps - e(x_a|C_j)||^2 - ||eps - e(x_a|C_i)||^2] da``,
- their pixel maps (summed over channels) and standard errors,
- fixed linear combinations of terms, with standard errors from the per-sample
  contributions of the combination (the terms are correlated under common random numbers),
- the per-noise-level curves of every term and every condition's MMSE,
- ``-log p(x | C)`` in nats for every condition, as ``-log N(x; 0, I)`` plus the integral of
  the MMSE gap to the exact denoiser of ``N(0, I)`` (a control variate with the same
  expectation as the formula of SCIENCE.md section 2 and far lower variance).

Memory does not grow with the number of samples. Every image of the batch has its own
sample stream seeded from the generator, so its numbers do not depend on the batch
composition, the batch size or the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ModelOutputError, ParameterError
from ..models.base import Model
from .channel import AdaptiveSampler, Sampler, make_sampler, noisy

CURVE_BINS = 24


@dataclass(frozen=True)
class Difference:
    """Information of condition ``condition`` over condition ``reference`` (indices)."""

    condition: int
    reference: int


@dataclass(frozen=True)
class Minimum:
    """Per noise level and per pixel minimum of two differences' integrands.

    The ``per_snr`` redundancy of DiffusionPID. It has no standard-estimator form.
    """

    first: Difference
    second: Difference


@dataclass(frozen=True)
class Combination:
    """A fixed linear combination ``sum_i coefficients[i] * terms[i]``, accumulated sample by sample.

    Under common random numbers the terms are correlated, so the standard error of a
    sum of terms is not the root-sum-square of theirs; this term's standard error (and
    pixel standard-error map) comes from the per-sample contributions of the combination
    itself. Parts are :class:`Difference` or :class:`Minimum`. The standard estimator
    is defined when every part is a :class:`Difference`.
    """

    terms: tuple[Difference | Minimum, ...]
    coefficients: tuple[float, ...]


Term = Difference | Minimum | Combination


@dataclass(frozen=True)
class Curve:
    """A quantity as a function of log-SNR, averaged in bins over the drawn samples.

    Args:
        logsnr: ``(bins,)`` bin centres.
        mean: ``(b, bins)`` mean of the integrand in each bin (NaN where no sample fell).
        count: ``(b, bins)`` samples per bin.
    """

    logsnr: np.ndarray
    mean: np.ndarray
    count: np.ndarray


@dataclass(frozen=True)
class TermEstimate:
    """Engine output for one term, per image of the batch (nats).

    Args:
        value, stderr: ``(b,)`` orthogonal estimate and its standard error.
        pixel_map, pixel_stderr: ``(b, *map_shape)`` per-pixel decomposition (sums to ``value``).
        standard_value, standard_stderr: ``(b,)`` standard estimator (NaN for terms with a :class:`Minimum`).
        standard_map: ``(b, *map_shape)`` per-pixel standard estimator (NaN for terms with a :class:`Minimum`).
        curve: the orthogonal integrand ``E||e_i - e_j||^2`` per noise level (combined for a
            :class:`Combination`).
    """

    term: Term
    value: np.ndarray
    stderr: np.ndarray
    pixel_map: np.ndarray
    pixel_stderr: np.ndarray
    standard_value: np.ndarray
    standard_stderr: np.ndarray
    standard_map: np.ndarray
    curve: Curve


@dataclass(frozen=True)
class EngineResult:
    """Everything one engine run measured.

    Args:
        terms: one :class:`TermEstimate` per requested term, in order.
        mmse: per condition, ``E||eps - e(x_a|C)||^2`` per noise level.
        nll, nll_stderr: ``(k, b)`` ``-log p(x | C)`` in nats over the sampler's range of log-SNR.
        samples: number of ``(a, eps)`` draws per image.
        logsnr_range: the range integrated over.
    """

    terms: tuple[TermEstimate, ...]
    mmse: tuple[Curve, ...]
    nll: np.ndarray
    nll_stderr: np.ndarray
    samples: int
    logsnr_range: tuple[float, float]
    sampler: str = field(default="")


class _Moments:
    """Streaming sum and sum of squares (float64) of per-sample contributions."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.s = torch.zeros(shape, dtype=torch.float64)
        self.s2 = torch.zeros(shape, dtype=torch.float64)

    def add(self, g: torch.Tensor) -> None:  # g: (m, *shape), summed over samples here
        g = g.double()
        self.s += g.sum(0).cpu()
        self.s2 += (g * g).sum(0).cpu()

    def result(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        mean = self.s / n
        if n < 2:
            return mean.numpy(), np.full(tuple(mean.shape), np.nan)
        var = (self.s2 / n - mean**2).clamp_min(0) * n / (n - 1)
        return mean.numpy(), (var / n).sqrt().numpy()


class _Binned:
    """Streaming per-bin means of a per-sample quantity ``(m, b)`` over log-SNR, per image."""

    def __init__(self, edges: torch.Tensor, b: int) -> None:
        self.edges = edges
        self.sum = torch.zeros(b, len(edges) - 1, dtype=torch.float64)
        self.count = torch.zeros(b, len(edges) - 1, dtype=torch.float64)

    def add(self, a: torch.Tensor, f: torch.Tensor) -> None:  # a: (m, b), f: (m, b)
        idx = (torch.bucketize(a.double().cpu(), self.edges) - 1).clamp(0, self.sum.shape[1] - 1).T
        self.sum.scatter_add_(1, idx, f.double().cpu().T)
        self.count.scatter_add_(1, idx, torch.ones(idx.shape, dtype=torch.float64))

    def means(self) -> torch.Tensor:
        """``(b, bins)`` per-bin means, 0 where a bin is empty."""
        return self.sum / self.count.clamp_min(1)

    def result(self) -> Curve:
        centers = 0.5 * (self.edges[1:] + self.edges[:-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = (self.sum / self.count).numpy()
        return Curve(centers.numpy(), mean, self.count.numpy())


def _map_shape(data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Pixel maps sum over channels for ``(C, H, W)`` data; other data keep every coordinate."""
    return tuple(data_shape[1:]) if len(data_shape) == 3 else tuple(data_shape)


def _to_map(sq: torch.Tensor, data_shape: tuple[int, ...]) -> torch.Tensor:
    """``(..., *data_shape)`` squared terms to ``(..., *map_shape)`` by summing channels."""
    return sq.sum(-3) if len(data_shape) == 3 else sq


def predict(model: Model, x_a: torch.Tensor, a: torch.Tensor, conditions: Sequence[Any], batch_size: int) -> torch.Tensor:
    """All conditions on every noisy input in calls of at most ``batch_size`` rows: ``(n, k, *shape)``."""
    n, k = len(x_a), len(conditions)
    if k <= batch_size:
        per = max(1, batch_size // k)
        parts = [model.eps(x_a[i : i + per], a[i : i + per], conditions) for i in range(0, n, per)]
        out = torch.cat(parts, 0)
    else:
        rows = []
        for i in range(n):
            cols = [model.eps(x_a[i : i + 1], a[i : i + 1], conditions[j : j + batch_size]) for j in range(0, k, batch_size)]
            rows.append(torch.cat(cols, 1))
        out = torch.cat(rows, 0)
    if tuple(out.shape) != (n, k, *model.data_shape):
        raise ModelOutputError(f"{model.name}.eps returned shape {tuple(out.shape)}, expected {(n, k, *model.data_shape)}")
    if not torch.isfinite(out).all():
        raise ModelOutputError(
            f"{model.name} returned NaN or Inf predictions; try dtype float32 or a narrower log-SNR range (clip)"
        )
    return out.float()


def _has_standard(t: Term) -> bool:
    """Whether the standard estimator is defined: a Difference or a Combination of Differences."""
    if isinstance(t, Combination):
        return all(isinstance(p, Difference) for p in t.terms)
    return isinstance(t, Difference)


def _check_terms(terms: Sequence[Term], k: int) -> None:
    if not terms:
        raise ParameterError("no terms to estimate; pass at least one Difference(condition, reference)")
    for t in terms:
        if isinstance(t, Combination):
            if not t.terms or len(t.terms) != len(t.coefficients):
                raise ParameterError("a Combination needs one coefficient per term and at least one term")
            if not all(isinstance(p, (Difference, Minimum)) for p in t.terms):
                raise ParameterError("the parts of a Combination must be Difference or Minimum terms")
            if not all(math.isfinite(float(c)) for c in t.coefficients):
                raise ParameterError(f"Combination coefficients must be finite numbers, got {t.coefficients}")
            _check_terms(t.terms, k)
            continue
        parts = (t.first, t.second) if isinstance(t, Minimum) else (t,)
        for d in parts:
            if not isinstance(d, Difference):
                raise ParameterError(f"terms must be Difference, Minimum or Combination, got {type(d).__name__}")
            if not (0 <= d.condition < k and 0 <= d.reference < k):
                raise ParameterError(f"term {d} names a condition outside 0..{k - 1}")


def estimate(
    model: Model,
    x: torch.Tensor,
    conditions: Sequence[Any],
    terms: Sequence[Term],
    *,
    samples: int = 128,
    sampler: Sampler | str | None = None,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
    seed: int = 0,
    progress: bool = False,
    on_batch: Any = None,
) -> EngineResult:
    """Run the engine: every condition on the same ``(a, eps)`` draws, terms accumulated.

    Args:
        model: any :class:`~diffpid.models.base.Model`.
        x: ``(b, *data_shape)`` or ``(*data_shape)`` inputs (latents or pixels).
        conditions: ``k`` conditions built by ``model.encode_prompt``.
        terms: :class:`Difference` / :class:`Minimum` / :class:`Combination` over condition indices.
        samples: ``(a, eps)`` draws per image (denoiser calls per image and condition).
        sampler: a :class:`~diffpid.engine.channel.Sampler` or its name; default ``"adaptive"``.
        batch_size: most rows (inputs x conditions) per model call.
        generator: source of randomness; ``seed`` is used when it is omitted.
        progress: show a progress bar.
        on_batch: optional callback ``f(x_a, logsnr, weight, eps, predictions)`` per chunk,
            e.g. to collect attention at the same noise levels at no extra denoiser cost.
    """
    x = model.check_x(x)
    conditions = list(conditions)
    if not conditions:
        raise ParameterError("no conditions given; pass at least two (a condition and its reference)")
    if not isinstance(samples, int) or samples < 1:
        raise ParameterError(f"samples must be a positive integer, got {samples!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ParameterError(f"batch_size must be a positive integer, got {batch_size!r}")
    _check_terms(terms, len(conditions))
    sampler = make_sampler() if sampler is None else make_sampler(sampler)
    lo, hi = sampler.range
    mlo, mhi = model.logsnr_range
    if lo < mlo - 1e-6 or hi > mhi + 1e-6:
        raise ParameterError(
            f"the sampler covers log-SNR [{lo:.2f}, {hi:.2f}] but {model.name} was trained on "
            f"[{mlo:.2f}, {mhi:.2f}]; choose loc/scale/clip inside that range"
        )
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    b, k, shape = len(x), len(conditions), tuple(model.data_shape)
    mshape = _map_shape(shape)
    dev = model.device
    chunk = max(1, batch_size // (b * k))
    gens = [torch.Generator().manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator))) for _ in range(b)]

    edges = torch.linspace(lo, hi, CURVE_BINS + 1, dtype=torch.float64)
    acc_o = [(_Moments((b,)), _Moments((b, *mshape))) for _ in terms]
    acc_s = [(_Moments((b,)), _Moments((b, *mshape))) for _ in terms]
    curves = [_Binned(edges, b) for _ in terms]
    mmse = [_Binned(edges, b) for _ in range(k)]
    nll = [_Moments((b,)) for _ in range(k)]
    d = math.prod(shape)
    xd = x.to(dev, torch.float32)

    adaptive = isinstance(sampler, AdaptiveSampler)
    # the pilot stage records the integrands' second moments per log-SNR bin (Difference terms only:
    # combinations can be near zero, and their parts are Differences anyway)
    piloted = [i for i, t in enumerate(terms) if isinstance(t, Difference)] or list(range(len(terms)))
    pilots = {i: _Binned(sampler.edges(), b) for i in piloted} if adaptive else {}
    n_first = sampler.pilot_size(samples) if adaptive else samples

    def consume(draws) -> None:
        m = len(draws[0].logsnr)
        a = torch.stack([dr.logsnr for dr in draws], 1).to(dev)  # (m, b)
        w = torch.stack([dr.weight for dr in draws], 1).to(dev)  # (m, b)
        eps = torch.stack([dr.eps for dr in draws], 1).to(dev)  # (m, b, *shape)
        x_a = noisy(xd.expand(m, *xd.shape).reshape(m * b, *shape), a.reshape(-1), eps.reshape(m * b, *shape))
        pred = predict(model, x_a, a.reshape(-1), conditions, batch_size)  # (m*b, k, *shape)
        if on_batch is not None:
            on_batch(x_a, a.reshape(-1), w.reshape(-1), eps.reshape(m * b, *shape), pred)
        pred = pred.reshape(m, b, k, *shape)
        err = _to_map((eps[:, :, None] - pred) ** 2, shape)  # (m, b, k, *mshape)
        err_tot = err.flatten(3).sum(-1)  # (m, b, k)
        half_w = (0.5 * w).reshape(m, b, *([1] * len(mshape)))
        # control variate: the exact denoiser of N(0, I), e_G = sqrt(sig(-a)) x_a, whose integral is known
        ref = ((eps - torch.sigmoid(-a).sqrt().reshape(m, b, *([1] * len(shape))) * x_a.reshape(m, b, *shape)) ** 2)
        ref = ref.flatten(2).sum(-1)  # (m, b)
        for c in range(k):
            mmse[c].add(a, err_tot[:, :, c])
            nll[c].add(0.5 * w * (err_tot[:, :, c] - ref))
        cache: dict[Difference, torch.Tensor] = {}

        def ortho(t: Difference) -> torch.Tensor:
            if t not in cache:
                cache[t] = _to_map((pred[:, :, t.condition] - pred[:, :, t.reference]) ** 2, shape)
            return cache[t]

        def integrand(t: Term) -> torch.Tensor:  # orthogonal integrand (m, b, *mshape)
            if isinstance(t, Combination):
                return sum(float(c) * integrand(p) for c, p in zip(t.coefficients, t.terms))
            return torch.minimum(ortho(t.first), ortho(t.second)) if isinstance(t, Minimum) else ortho(t)

        def standard(t: Term) -> torch.Tensor:  # standard integrand (m, b, *mshape)
            if isinstance(t, Combination):
                return sum(float(c) * standard(p) for c, p in zip(t.coefficients, t.terms))
            return err[:, :, t.reference] - err[:, :, t.condition]

        for i, t in enumerate(terms):
            f = integrand(t)
            g = half_w * f  # (m, b, *mshape)
            acc_o[i][1].add(g)
            acc_o[i][0].add(g.flatten(2).sum(-1))
            curves[i].add(a, f.flatten(2).sum(-1))
            if i in pilots:
                pilots[i].add(a, f.flatten(2).sum(-1) ** 2)
            if _has_standard(t):
                s = half_w * standard(t)
                acc_s[i][1].add(s)
                acc_s[i][0].add(s.flatten(2).sum(-1))

    bar = tqdm(total=samples, disable=not progress, desc=f"{model.name}: {k} conditions", unit="sample")
    for draws in zip(*[sampler.stream(n_first, shape, gi, chunk) for gi in gens]):
        consume(draws)
        bar.update(len(draws[0].logsnr))
    if samples > n_first:
        # (b, bins) second moment of every term's integrand, each relative to its pilot value squared
        moment = sum(p.means() / (acc_o[i][0].s / n_first).pow(2).clamp_min(1e-30)[:, None] for i, p in pilots.items())
        pilots.clear()
        mains = [sampler.fit(moment[i]).stream(samples - n_first, shape, gi, chunk) for i, gi in enumerate(gens)]
        for draws in zip(*mains):
            consume(draws)
            bar.update(len(draws[0].logsnr))
    bar.close()

    out = []
    for i, t in enumerate(terms):
        v, se = acc_o[i][0].result(samples)
        pm, pse = acc_o[i][1].result(samples)
        if _has_standard(t):
            sv, sse = acc_s[i][0].result(samples)
            sm, _ = acc_s[i][1].result(samples)
        else:
            sv = sse = np.full(b, np.nan)
            sm = np.full((b, *mshape), np.nan)
        out.append(TermEstimate(t, v, se, pm, pse, sv, sse, sm, curves[i].result()))
    gauss = (0.5 * d * math.log(2 * math.pi) + 0.5 * (x.double() ** 2).flatten(1).sum(1)).numpy()  # -log N(x; 0, I)
    nv = np.stack([r.result(samples)[0] for r in nll]) + gauss[None]
    ns = np.stack([r.result(samples)[1] for r in nll])
    return EngineResult(tuple(out), tuple(c.result() for c in mmse), nv, ns, samples, (lo, hi), type(sampler).__name__)
