"""The engine's inner loop: chunks of ``(image, sample)`` pairs through draws, the model and the accumulators.

A round asks for draws ``done[i] .. target[i] - 1`` of every image ``i``. The outstanding pairs
are enumerated image by image and cut into chunks of ``batch_size // k`` pairs (``k``
conditions), so every denoiser call is a full batch however many images there are: 40,000
images with 2 conditions at batch 64 run as calls of 32 inputs x 2 conditions, not one draw
of 40,000 inputs at a time. Pair ``p`` of the round is located by a ``searchsorted`` on the
device; draws come from the counter-based streams (:mod:`diffpid.engine.streams`), so the numbers of
an image do not depend on the chunking, the batch or the round. Nothing here synchronises
with the host; :func:`run_round` checks the sums for non-finite values once at its end.

Several *jobs* (each an :class:`Engine`: its own inputs, conditions, terms, seed and
accumulators, e.g. the items of a dataset run) can share a round: their pairs are packed job
after job into chunks of at most ``batch_size`` rows (a pair of a job with ``k`` conditions is
``k`` rows), and a chunk that holds several jobs is one :meth:`~diffpid.models.base.Model.eps_rows`
call (row = input under one of its job's conditions). A job's draws depend only on its seed and
its own image and sample indices, so its numbers are those of its run alone (up to the float
rounding of a differently shaped model call). A lone job is chunked exactly as before.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from .accumulate import Binned, Moments
from .channel import Sampler, noisy
from ..errors import ModelOutputError
from ..models.base import Model, predict_rows


def _to_map(sq: torch.Tensor, data_shape: tuple[int, ...]) -> torch.Tensor:
    """``(..., *data_shape)`` squared terms to ``(..., *map_shape)`` by summing channels."""
    return sq.sum(-3) if len(data_shape) == 3 else sq


def predict(model: Model, x_a: torch.Tensor, a: torch.Tensor, conditions: Sequence[Any], batch_size: int) -> torch.Tensor:
    """All conditions on every noisy input in calls of at most ``batch_size`` rows: ``(n, k, *shape)``.

    The engine's chunks hold ``batch_size // k`` inputs, so this is one call unless the conditions
    alone exceed a batch (then each input's conditions are split over calls).
    """
    n, k = len(x_a), len(conditions)
    if n * k <= batch_size:
        out = model.eps(x_a, a, conditions)
    elif k <= batch_size:
        per = max(1, batch_size // k)
        out = torch.cat([model.eps(x_a[i : i + per], a[i : i + per], conditions) for i in range(0, n, per)], 0)
    else:
        out = torch.cat([torch.cat([model.eps(x_a[i : i + 1], a[i : i + 1], conditions[j : j + batch_size])
                                    for j in range(0, k, batch_size)], 1) for i in range(n)], 0)
    if tuple(out.shape) != (n, k, *model.data_shape):
        raise ModelOutputError(f"{model.name}.eps returned shape {tuple(out.shape)}, expected {(n, k, *model.data_shape)}")
    return out.float()


class Engine:
    """Accumulators of one job of an engine run (see the module docstring).

    Args:
        model, x, conditions: the denoiser, ``(b, *data_shape)`` inputs and ``k`` encoded conditions.
        parts: ``(cond, ref)`` index pairs of the distinct differences the terms use.
        recipe: ``f(ortho, standard) -> (F, S)``: per-term integrands ``(P, T, *map_shape)`` and those of
            the ``n_standard`` terms with a standard estimator, from the per-difference ones.
        n_terms, n_standard, map_shape: sizes of the accumulators.
        edges: log-SNR bin edges of the curves.
        batch_size, seed: rows per denoiser call; the seed of the counter-based streams.
        on_batch, bar: per-chunk callback; a progress bar to update (or ``None``).

    Set :attr:`pilot` to a :class:`~diffpid.engine.accumulate.Binned` with lanes ``(2, T)`` to record the
    adaptive pilot's first and second moments.
    """

    def __init__(self, model: Any, x: torch.Tensor, conditions: Sequence[Any], parts: Sequence[tuple[int, int]],
                 recipe: Any, n_terms: int, n_standard: int, map_shape: tuple[int, ...], edges: torch.Tensor,
                 batch_size: int, seed: int, on_batch: Any = None, bar: Any = None) -> None:
        self.model, self.conditions, self.recipe, self.seed = model, list(conditions), recipe, seed
        dev = self.device = model.device
        self.x = x.to(dev, torch.float32)
        b, k = len(x), len(conditions)
        self.shape = tuple(model.data_shape)
        self.batch_size, self.on_batch, self.bar = batch_size, on_batch, bar
        self.cond = torch.tensor([c for c, _ in parts], dtype=torch.long, device=dev)
        self.ref = torch.tensor([r for _, r in parts], dtype=torch.long, device=dev)
        self.total = Moments(b, (n_terms,), dev)
        self.maps = Moments(b, (n_terms, *map_shape), dev)
        self.std_total = Moments(b, (n_standard,), dev)
        self.std_maps = Moments(b, (n_standard, *map_shape), dev)
        self.curves = Binned(edges, b, (n_terms,), dev)
        self.mmse = Binned(edges, b, (k,), dev)
        self.nll = Moments(b, (k,), dev)
        self.pilot: Binned | None = None
        self.n = torch.zeros(b, dtype=torch.long, device=dev)  # draws so far per image
        self.sampler: Sampler | None = None

    def _pairs(self, ends: torch.Tensor, count: torch.Tensor, start: torch.Tensor, lo: int, hi: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image and sample index of pairs ``lo .. hi - 1`` of the round."""
        p = torch.arange(lo, hi, device=self.device)
        image = torch.searchsorted(ends, p, right=True)
        return image, start[image] + p - (ends[image] - count[image])

    def _draw(self, image: torch.Tensor, sample: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(x_a, a, w, eps)`` of the pairs, from this job's streams."""
        d = self.sampler.draw(self.seed, image, sample, self.shape)
        a, w, eps = d.logsnr, d.weight, d.eps.to(torch.float32)
        return noisy(self.x[image], a, eps), a, w, eps

    def _chunk(self, image: torch.Tensor, sample: torch.Tensor) -> None:
        x_a, a, w, eps = self._draw(image, sample)
        pred = predict(self.model, x_a, a, self.conditions, self.batch_size)  # (P, k, *shape)
        self._add(image, x_a, a, w, eps, pred)

    def _add(self, image: torch.Tensor, x_a: torch.Tensor, a: torch.Tensor, w: torch.Tensor, eps: torch.Tensor,
             pred: torch.Tensor) -> None:
        """Accumulate the predictions ``(P, k, *shape)`` of the pairs of ``image``."""
        shape, p = self.shape, len(image)
        if self.on_batch is not None:
            self.on_batch(x_a, a, w, eps, pred, image=image)
        err = _to_map((eps[:, None] - pred) ** 2, shape)  # (P, k, *mshape)
        err_tot = err.flatten(2).sum(-1)  # (P, k)
        # control variate: the exact denoiser of N(0, I), e_G = sqrt(sig(-a)) x_a, whose integral is known
        ref = ((eps - torch.sigmoid(-a).sqrt().reshape(p, *([1] * len(shape))) * x_a) ** 2).flatten(1).sum(-1)
        half_w = 0.5 * w
        self.mmse.add(image, a, err_tot)
        self.nll.add(image, half_w[:, None] * (err_tot - ref[:, None]))
        ortho = _to_map((pred[:, self.cond] - pred[:, self.ref]) ** 2, shape)  # (P, parts, *mshape)
        standard = err[:, self.ref] - err[:, self.cond]
        f, s = self.recipe(ortho, standard)  # (P, T, *mshape), (P, Ts, *mshape)
        hw = half_w.reshape(p, 1, *([1] * (f.dim() - 2)))
        g = hw * f
        self.maps.add(image, g)
        f_tot = f.flatten(2).sum(-1)  # (P, T)
        self.total.add(image, g.flatten(2).sum(-1))
        self.curves.add(image, a, f_tot)
        if self.pilot is not None:
            self.pilot.add(image, a, torch.stack([f_tot, f_tot ** 2], 1))  # (P, 2, T)
        if s.shape[1]:
            gs = hw * s
            self.std_maps.add(image, gs)
            self.std_total.add(image, gs.flatten(2).sum(-1))

    def values(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image and term: the orthogonal value and its standard error ``(b, T)`` (on the device)."""
        return self.total.mean_stderr(self.n)


def pack(jobs: Sequence[tuple[int, int]], batch_size: int) -> list[list[tuple[int, int, int]]]:
    """Chunks of the pairs of jobs ``(pairs, k)``, job after job: each chunk a list of ``(job, lo, hi)``
    with at most ``batch_size`` rows (``k`` per pair). A lone job gets chunks of ``batch_size // k`` pairs;
    a job with more conditions than a batch goes one pair per chunk (:func:`predict` splits it)."""
    chunks: list[list[tuple[int, int, int]]] = []
    cur: list[tuple[int, int, int]] = []
    room = batch_size
    for j, (total, k) in enumerate(jobs):
        lo = 0
        while lo < total:
            m = min(total - lo, max(0, room) // k)
            if m == 0 and cur:
                chunks.append(cur)
                cur, room = [], batch_size
                continue
            m = max(m, 1)
            cur.append((j, lo, lo + m))
            room -= m * k
            lo += m
    if cur:
        chunks.append(cur)
    return chunks


def run_round(engines: Sequence[Engine], samplers: Sequence[Sampler], targets: Sequence[torch.Tensor],
              batch_size: int, bar: Any = None) -> None:
    """Draw every image ``i`` of every job ``j`` up to ``targets[j][i]`` draws with ``samplers[j]``, in
    chunks shared by the jobs (see the module docstring), then check every job's sums."""
    rounds = []
    for e, sampler, target in zip(engines, samplers, targets):
        e.sampler = sampler
        start = e.n
        count = (target.to(e.n.device) - start).clamp_min(0)
        ends = count.cumsum(0)
        rounds.append((start, count, ends, int(ends[-1]) if len(ends) else 0))
    for chunk in pack([(r[3], len(e.conditions)) for e, r in zip(engines, rounds)], batch_size):
        if len(chunk) == 1:
            j, lo, hi = chunk[0]
            e = engines[j]
            e._chunk(*e._pairs(rounds[j][2], rounds[j][1], rounds[j][0], lo, hi))
        else:
            _shared_chunk(engines, rounds, chunk)
        if bar is not None:
            bar.update(sum(hi - lo for _, lo, hi in chunk))
    for e, target in zip(engines, targets):
        e.n = torch.maximum(e.n, target.to(e.n.device))
        if not bool(e.nll.finite() & e.total.finite()):
            raise ModelOutputError(f"{e.model.name} returned NaN or Inf predictions; try dtype float32 or a "
                                   "narrower log-SNR range (clip)")


def _shared_chunk(engines: Sequence[Engine], rounds: Sequence[tuple], chunk: Sequence[tuple[int, int, int]]) -> None:
    """One denoiser call for the pairs of several jobs: every pair's input under each of its job's conditions."""
    model = engines[chunk[0][0]].model
    parts, xs, levels, conds = [], [], [], []
    for j, lo, hi in chunk:
        e = engines[j]
        start, count, ends, _ = rounds[j]
        image, _sample = e._pairs(ends, count, start, lo, hi)
        x_a, a, w, eps = e._draw(image, _sample)
        k = len(e.conditions)
        parts.append((e, image, x_a, a, w, eps))
        xs.append(x_a.repeat_interleave(k, 0))  # (P*k, *shape), input-major
        levels.append(a.repeat_interleave(k))
        conds.extend(e.conditions * len(image))
    out = predict_rows(model, torch.cat(xs), torch.cat(levels), conds)
    rows = sum(len(x) for x in xs)
    if tuple(out.shape) != (rows, *model.data_shape):
        raise ModelOutputError(f"{model.name}.eps_rows returned shape {tuple(out.shape)}, expected "
                               f"{(rows, *model.data_shape)}")
    out = out.float()
    at = 0
    for e, image, x_a, a, w, eps in parts:
        n, k = len(image), len(e.conditions)
        e._add(image, x_a, a, w, eps, out[at:at + n * k].reshape(n, k, *e.shape))
        at += n * k


def gaussian_nll(x: torch.Tensor) -> torch.Tensor:
    """``-log N(x; 0, I)`` per input ``(b,)`` in float64 on the host."""
    d = math.prod(x.shape[1:])
    return 0.5 * d * math.log(2 * math.pi) + 0.5 * (x.double().cpu() ** 2).flatten(1).sum(1)
