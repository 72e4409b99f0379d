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

Memory does not grow with the number of samples. Every draw is a pure function of
``(seed, image index, sample index)`` (counter-based streams, :mod:`diffpid.engine.streams`), drawn on
the model's device a whole chunk at a time, so an image's numbers do not depend on the batch
size, the chunking or the rounds of a precision target. Accumulators stay on the device
(:mod:`diffpid.engine.accumulate`); the inner loop is :mod:`diffpid.engine.chunks`. With ``precision=`` the
engine draws rounds until every image's values reach the target relative standard error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ParameterError
from ..models.base import Model
from .accumulate import Binned, samples_needed
from .channel import AdaptiveSampler, Sampler, make_sampler, seed_of
from .chunks import Engine, gaussian_nll, run_round

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
        samples: the most ``(a, eps)`` draws of any image.
        logsnr_range: the range integrated over.
        sampler: the sampler's class name.
        image_samples: ``(b,)`` draws per image (they differ when a precision target stopped
            images at different counts).
        precision: the relative standard error targeted (``None``: a fixed number of draws).
    """

    terms: tuple[TermEstimate, ...]
    mmse: tuple[Curve, ...]
    nll: np.ndarray
    nll_stderr: np.ndarray
    samples: int
    logsnr_range: tuple[float, float]
    sampler: str = field(default="")
    image_samples: np.ndarray | None = None
    precision: float | None = None


def _map_shape(data_shape: tuple[int, ...]) -> tuple[int, ...]:
    """Pixel maps sum over channels for ``(C, H, W)`` data; other data keep every coordinate."""
    return tuple(data_shape[1:]) if len(data_shape) == 3 else tuple(data_shape)


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


def _recipe(terms: Sequence[Term]) -> tuple[list[tuple[int, int]], Any, list[int]]:
    """The distinct differences the terms use, the map from their integrands to the terms', and
    the indices of the terms that have a standard estimator."""
    parts: dict[Difference, int] = {}

    def collect(t: Term) -> None:
        if isinstance(t, Combination):
            for q in t.terms:
                collect(q)
        elif isinstance(t, Minimum):
            collect(t.first), collect(t.second)
        else:
            parts.setdefault(t, len(parts))

    for t in terms:
        collect(t)
    pairs = [(d.condition, d.reference) for d in parts]
    std = [i for i, t in enumerate(terms) if _has_standard(t)]
    if all(isinstance(t, Difference) for t in terms):
        idx = [parts[t] for t in terms]
        same = idx == list(range(len(parts)))
        return pairs, (lambda o, s: (o, s) if same else (o[:, idx], s[:, idx])), std

    def one(t: Term, o: torch.Tensor, s: torch.Tensor | None) -> torch.Tensor:
        src = o if s is None else s
        if isinstance(t, Combination):
            return sum(float(c) * one(q, o, s) for c, q in zip(t.coefficients, t.terms))
        if isinstance(t, Minimum):
            return torch.minimum(o[:, parts[t.first]], o[:, parts[t.second]])
        return src[:, parts[t]]

    def recipe(o: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = torch.stack([one(t, o, None) for t in terms], 1)
        g = torch.stack([one(terms[i], o, s) for i in std], 1) if std else s[:, :0]
        return f, g

    return pairs, recipe, std


@dataclass(frozen=True)
class Job:
    """One engine run among several that share denoiser calls (:func:`estimate_jobs`).

    Args:
        x: ``(b, *data_shape)`` or ``(*data_shape)`` inputs.
        conditions: its ``k`` encoded conditions.
        terms: its terms over those conditions.
        seed: the seed of its counter-based streams (its numbers are those of :func:`estimate` with it).
        targets: the terms a precision target applies to (default: every term).
        on_batch: its per-chunk callback (see :func:`estimate`).
    """

    x: Any
    conditions: Sequence[Any]
    terms: Sequence[Term]
    seed: int = 0
    targets: Sequence[int] | None = None
    on_batch: Any = None


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
    precision: float | None = None,
    precision_floor: float = 0.05,
    max_samples: int = 4096,
    targets: Sequence[int] | None = None,
) -> EngineResult:
    """Run the engine: every condition on the same ``(a, eps)`` draws, terms accumulated.

    Args:
        model: any :class:`~diffpid.models.base.Model`.
        x: ``(b, *data_shape)`` or ``(*data_shape)`` inputs (latents or pixels).
        conditions: ``k`` conditions built by ``model.encode_prompt``.
        terms: :class:`Difference` / :class:`Minimum` / :class:`Combination` over condition indices.
        samples: ``(a, eps)`` draws per image (denoiser calls per image and condition); with a
            ``precision`` target, the first round.
        sampler: a :class:`~diffpid.engine.channel.Sampler` or its name; default ``"adaptive"``.
        batch_size: most rows (inputs x conditions) per model call.
        generator: source of the seed; ``seed`` is used when it is omitted.
        progress: show a progress bar.
        on_batch: optional callback ``f(x_a, logsnr, weight, eps, predictions, image=image)`` per
            chunk (``image`` ``(n,)``: the input each row belongs to), e.g. to collect attention at
            the same noise levels at no extra denoiser cost.
        precision: target relative standard error of every term's value per image; more rounds of
            draws (the next sample indices of the same streams) until each image meets it, or
            its standard error is at most ``precision_floor`` nats, or it has ``max_samples`` draws.
        targets: indices of the terms the precision target applies to (default: every term); helper
            terms such as the pairwise differences behind a PID's covariance need no target.
    """
    seed = seed_of(generator) if generator is not None else int(seed)
    job = Job(x, conditions, terms, seed, targets, on_batch)
    return estimate_jobs(model, [job], samples=samples, sampler=sampler, batch_size=batch_size, progress=progress,
                         precision=precision, precision_floor=precision_floor, max_samples=max_samples)[0]


def estimate_jobs(
    model: Model,
    jobs: Sequence[Job],
    *,
    samples: int = 128,
    sampler: Sampler | str | None = None,
    batch_size: int = 64,
    progress: bool = False,
    precision: float | None = None,
    precision_floor: float = 0.05,
    max_samples: int = 4096,
) -> list[EngineResult]:
    """Several engine runs (:class:`Job`: each its own inputs, conditions, terms and seed) that share
    denoiser calls: the rows of several jobs go into one :meth:`~diffpid.models.base.Model.eps_rows`
    call when one job alone does not fill a batch. Each job's result is that of :func:`estimate`
    with its own arguments (draws, rounds and precision stops are per job; values agree up to the
    float rounding of differently shaped model calls). Arguments as :func:`estimate`.
    """
    for name, v in (("samples", samples), ("batch_size", batch_size), ("max_samples", max_samples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParameterError(f"{name} must be a positive integer, got {v!r}")
    if precision is not None and not (isinstance(precision, (int, float)) and 0 < precision < 1):
        raise ParameterError(f"precision is a relative standard error between 0 and 1 (e.g. 0.1), got {precision!r}")
    if not jobs:
        raise ParameterError("no jobs to estimate; pass at least one Job")
    sampler = make_sampler() if sampler is None else make_sampler(sampler)
    lo, hi = sampler.range
    mlo, mhi = model.logsnr_range
    if lo < mlo - 1e-6 or hi > mhi + 1e-6:
        raise ParameterError(
            f"the sampler covers log-SNR [{lo:.2f}, {hi:.2f}] but {model.name} was trained on "
            f"[{mlo:.2f}, {mhi:.2f}]; choose loc/scale/clip inside that range"
        )
    mshape = _map_shape(tuple(model.data_shape))
    edges = torch.linspace(lo, hi, CURVE_BINS + 1, dtype=torch.float64)
    prepared = [_prepare(model, job) for job in jobs]  # (x, conditions, terms, targets, (parts, recipe, std))
    total = samples * sum(len(p[0]) for p in prepared)
    k = len(prepared[0][1])
    desc = f"{model.name}: {k} conditions" if len(jobs) == 1 else f"{model.name}: {len(jobs)} jobs"
    bar = tqdm(total=total, disable=not progress, desc=desc, unit="draw")
    runs: list[Engine] = []
    for (x, conds, terms, _, (parts, recipe, std)), job in zip(prepared, jobs):
        runs.append(Engine(model, x, conds, parts, recipe, len(terms), len(std), mshape, edges, batch_size,
                           int(job.seed), job.on_batch, bar))
    full = [torch.full((len(r.x),), samples, dtype=torch.long, device=r.device) for r in runs]
    if isinstance(sampler, AdaptiveSampler):
        n_pilot = sampler.pilot_size(samples)
        for r, p in zip(runs, prepared):
            r.pilot = Binned(sampler.edges(), len(r.x), (2, len(p[2])), r.device)
        run_round(runs, [sampler] * len(runs), [torch.full_like(f, n_pilot) for f in full], batch_size, bar)
        now: list[Sampler] = []
        for r, p in zip(runs, prepared):
            # per image, the moments of every Difference term's integrand relative to its pilot value
            terms = p[2]
            piloted = [i for i, t in enumerate(terms) if isinstance(t, Difference)] or list(range(len(terms)))
            value = r.values()[0][:, piloted]  # (b, T'), after n_pilot draws of every image
            means = r.pilot.means()  # (b, 2, T, bins)
            scale = value.abs().clamp_min(1e-30)[:, :, None]
            r.pilot = None
            score = sampler.pilot_score(means[:, 0, piloted] / scale, means[:, 1, piloted] / scale ** 2)
            now.append(sampler.fit(score, start=n_pilot))
        if samples > n_pilot:
            run_round(runs, now, full, batch_size, bar)
    else:
        now = [sampler] * len(runs)
        run_round(runs, now, full, batch_size, bar)
    if precision is not None:
        cap = max(max_samples, samples)
        active = list(range(len(runs)))
        while active:
            goals = {}
            for j in active:
                r, wanted = runs[j], prepared[j][3]
                value, se = r.values()
                target = samples_needed(value[:, wanted], se[:, wanted], r.n, float(precision),
                                        float(precision_floor), cap)
                extra = int((target - r.n).sum())
                if extra:
                    goals[j] = target
                    bar.total += extra
            active = list(goals)
            if active:
                run_round([runs[j] for j in active], [now[j] for j in active], [goals[j] for j in active],
                          batch_size, bar)
    bar.close()
    return [_result(r, p[2], p[4][2], p[0], (lo, hi), type(sampler).__name__, precision) for r, p in zip(runs, prepared)]


def _prepare(model: Model, job: Job) -> tuple[torch.Tensor, list[Any], list[Term], list[int], tuple]:
    """A job's checked inputs, conditions, terms, precision targets and :func:`_recipe`."""
    x = model.check_x(job.x)
    conditions = list(job.conditions)
    if not conditions:
        raise ParameterError("no conditions given; pass at least two (a condition and its reference)")
    terms = list(job.terms)
    _check_terms(terms, len(conditions))
    targets = list(range(len(terms))) if job.targets is None else [int(i) for i in job.targets]
    if not targets or not all(0 <= i < len(terms) for i in targets):
        raise ParameterError(f"targets must name terms 0..{len(terms) - 1}, got {targets}")
    return x, conditions, terms, targets, _recipe(terms)


def _result(run: Engine, terms: Sequence[Term], std: list[int], x: torch.Tensor, logsnr_range: tuple[float, float],
            sampler: str, precision: float | None) -> EngineResult:
    """Bring the accumulators to the host once and package them per term."""
    b = len(x)
    v, se = run.total.result(run.n)
    pm, pse = run.maps.result(run.n)
    sv, sse = run.std_total.result(run.n)
    sm, _ = run.std_maps.result(run.n)
    centers, curve_mean, curve_count = run.curves.result()
    out = []
    for i, t in enumerate(terms):
        if i in std:
            j = std.index(i)
            svi, ssei, smi = sv[:, j], sse[:, j], sm[:, j]
        else:
            svi = ssei = np.full(b, np.nan)
            smi = np.full(pm[:, i].shape, np.nan)
        curve = Curve(centers, curve_mean[:, i], curve_count[:, i])
        out.append(TermEstimate(t, v[:, i], se[:, i], pm[:, i], pse[:, i], svi, ssei, smi, curve))
    _, mm, mc = run.mmse.result()
    mmse = tuple(Curve(centers, mm[:, c], mc[:, c]) for c in range(mm.shape[1]))
    nv, ns = run.nll.result(run.n)
    nv = nv.T + gaussian_nll(x).numpy()[None]
    n = run.n.cpu().numpy()
    return EngineResult(tuple(out), mmse, nv, ns.T, int(n.max()), logsnr_range, sampler, n, precision)
