"""Streaming accumulators of the engine, kept on the model's device.

Each chunk of draws is a flat list of ``(image, sample)`` pairs (any images, any sample
indices); the accumulators add each pair's contribution to its image's row with
``index_add_``, so nothing is copied to the host until the end of a round. Sums are float64
where the device has it (CPU, CUDA); on Apple's MPS (no float64) they are float32 with Kahan
compensation. Non-finite model output reaches the sums (every prediction enters the MMSE and
``-log p`` sums), so checking them once per round (:meth:`Moments.finite`) replaces a check
of every prediction.
"""

from __future__ import annotations

import numpy as np
import torch

from .channel import real_dtype


class _Sum:
    """A ``(b, *shape)`` sum updated per image, float64, or float32 with Kahan compensation."""

    def __init__(self, shape: tuple[int, ...], device: torch.device) -> None:
        self.dtype = real_dtype(device)
        self.total = torch.zeros(shape, dtype=self.dtype, device=device)
        self.comp = torch.zeros_like(self.total) if self.dtype != torch.float64 else None

    def add(self, image: torch.Tensor, g: torch.Tensor) -> None:
        if self.comp is None:
            self.total.index_add_(0, image, g.to(self.dtype))
            return
        y = torch.zeros_like(self.total).index_add_(0, image, g.to(self.dtype)) - self.comp
        t = self.total + y
        self.comp = (t - self.total) - y
        self.total = t


class Moments:
    """Per-image streaming sum and sum of squares of per-sample contributions ``(P, *shape)``."""

    def __init__(self, b: int, shape: tuple[int, ...], device: torch.device) -> None:
        self.s = _Sum((b, *shape), device)
        self.s2 = _Sum((b, *shape), device)

    def add(self, image: torch.Tensor, g: torch.Tensor) -> None:  # image: (P,), g: (P, *shape)
        g = g.to(self.s.dtype)
        self.s.add(image, g)
        self.s2.add(image, g * g)

    def finite(self) -> torch.Tensor:
        """A 0-d bool tensor (on the device): whether every sum is finite."""
        return torch.isfinite(self.s.total).all() & torch.isfinite(self.s2.total).all()

    def mean_stderr(self, n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-image mean and standard error of the mean for ``n`` ``(b,)`` samples (NaN error for n < 2)."""
        n = n.to(self.s.dtype).reshape(-1, *([1] * (self.s.total.dim() - 1)))
        mean = self.s.total / n
        var = (self.s2.total / n - mean ** 2).clamp_min(0) * n / (n - 1).clamp_min(1)
        se = torch.where(n >= 2, (var / n).sqrt(), torch.full_like(var, float("nan")))
        return mean, se

    def result(self, n: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        mean, se = self.mean_stderr(n)
        return mean.cpu().double().numpy(), se.cpu().double().numpy()


class Binned:
    """Per-image streaming means of per-sample values ``(P, *extra)`` in bins of log-SNR: ``(b, *extra, bins)``."""

    def __init__(self, edges: torch.Tensor, b: int, extra: tuple[int, ...], device: torch.device) -> None:
        dtype = real_dtype(device)
        self.edges = edges.to(device, dtype)
        self.bins = len(edges) - 1
        self.sum = torch.zeros((b, *extra, self.bins), dtype=dtype, device=device)
        self.count = torch.zeros_like(self.sum)

    def add(self, image: torch.Tensor, a: torch.Tensor, f: torch.Tensor) -> None:
        """``image`` ``(P,)``, ``a`` ``(P,)`` levels, ``f`` ``(P, *extra)`` values."""
        idx = (torch.bucketize(a.to(self.edges.dtype), self.edges) - 1).clamp(0, self.bins - 1)
        extra = self.sum.shape[1:-1]
        lanes = int(np.prod(extra)) if extra else 1
        flat = (image * lanes)[:, None] + torch.arange(lanes, device=image.device)[None]  # (P, lanes)
        flat = (flat * self.bins + idx[:, None]).reshape(-1)
        self.sum.view(-1).index_add_(0, flat, f.reshape(-1).to(self.sum.dtype))
        self.count.view(-1).index_add_(0, flat, torch.ones_like(flat, dtype=self.sum.dtype))

    def means(self) -> torch.Tensor:
        """Per-bin means, 0 where a bin is empty (on the device)."""
        return self.sum / self.count.clamp_min(1)

    def result(self) -> "tuple[np.ndarray, np.ndarray, np.ndarray]":
        """Bin centres ``(bins,)``, means ``(b, *extra, bins)`` (NaN where empty) and counts."""
        s, c = self.sum, self.count
        centers = (0.5 * (self.edges[1:] + self.edges[:-1])).cpu().double().numpy()
        s, c = s.cpu().double().numpy(), c.cpu().double().numpy()
        with np.errstate(invalid="ignore", divide="ignore"):
            return centers, s / c, c


def samples_needed(value: torch.Tensor, stderr: torch.Tensor, n: torch.Tensor, precision: float,
                   floor: float, cap: int, growth: float = 4.0) -> torch.Tensor:
    """Per image, the draws that should bring every value to the target (``(b,)`` int64).

    ``value``, ``stderr``: ``(b, T)``; ``n``: ``(b,)`` draws so far. A value is precise enough
    when ``stderr <= max(precision * |value|, floor)``. Standard errors shrink as ``1/sqrt(n)``,
    so the draws a value needs are ``n (stderr / tolerance)**2`` (plus 10% for the noise of the
    estimated error); an image takes the most any of its values needs, at least one more draw,
    at most ``growth`` times its draws so far (the first errors are themselves noisy), and at
    most ``cap``. Images already precise enough keep ``n``.
    """
    tol = torch.clamp_min(precision * value.abs(), floor)
    se = torch.nan_to_num(stderr, nan=float("inf"))
    ok = (se <= tol).all(1)
    ratio = torch.nan_to_num((se / tol) ** 2, nan=float("inf"), posinf=float("inf")).amax(1)
    nf = n.to(ratio.dtype)
    want = torch.minimum(torch.ceil(1.1 * nf * ratio), growth * nf)
    want = torch.maximum(want, nf + 1).clamp_max(cap)
    return torch.where(ok, n, torch.maximum(want.long(), n))
