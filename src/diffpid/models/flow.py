"""Flow-matching (rectified-flow) denoisers behind the Model protocol: the channel bridge.

A flow model is trained on ``x_t = (1-t) x + t eps`` and predicts the velocity
``v = eps - x``. Its signal-to-noise ratio ``((1-t)/t)^2`` is that of the engine's
variance-preserving channel at log-SNR ``a = 2 log((1-t)/t)`` (SCIENCE.md section 7), so

    t = sigmoid(-a/2),    x_t = x_a (1-t) / sqrt(sigmoid(a)),    eps_hat = x_t + (1-t) v_hat

and the engine, which stays in ``a``, sees an ordinary epsilon predictor. This module holds
that bridge once (:class:`FlowMatchingModel`: subclasses give :meth:`~FlowMatchingModel.velocity`
at flow time ``t``) and the exact oracle that proves it, :class:`FlowGaussianMixture`: the
Gaussian mixture's posterior-mean velocity computed directly in flow coordinates.
The diffusers backends (SD3, Flux.1, Flux.2) are in :mod:`diffpid.models.flow_families`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..errors import ParameterError
from .base import GENERATE, Generated, Model, ModelIdentity, pairs
from .mixture import GaussianMixture, MixtureCondition

__all__ = ["FlowGaussianMixture", "FlowMatchingModel", "eps_from_velocity", "flow_input", "flow_time",
           "logsnr_of_time"]


def flow_time(logsnr: torch.Tensor) -> torch.Tensor:
    """Flow time of a log-SNR: ``t = sigmoid(-a/2)`` (``t -> 0`` is the data end)."""
    return torch.sigmoid(-logsnr / 2)


def logsnr_of_time(t: torch.Tensor | float) -> torch.Tensor:
    """Log-SNR of a flow time: ``a = 2 log((1-t)/t)`` (inverse of :func:`flow_time`)."""
    t = torch.as_tensor(t, dtype=torch.float64)
    return 2 * (torch.log1p(-t) - torch.log(t))


def _col(v: torch.Tensor, ndim: int) -> torch.Tensor:
    return v.reshape(-1, *([1] * (ndim - 1)))


def flow_input(x_a: torch.Tensor, logsnr: torch.Tensor) -> torch.Tensor:
    """The flow input of the same noisy point: ``x_t = x_a (1-t) / sqrt(sigmoid(a))``.

    ``1 - t = sigmoid(a/2)`` is computed directly (no cancellation at the noise end).
    Shapes: ``x_a`` ``(n, *shape)``, ``logsnr`` ``(n,)``; the result has ``x_a``'s dtype.
    """
    a = _col(logsnr.to(x_a.dtype), x_a.dim())
    return x_a * (torch.sigmoid(a / 2) / torch.sigmoid(a).sqrt())


def eps_from_velocity(x_t: torch.Tensor, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Epsilon prediction from a velocity prediction: ``eps_hat = x_t + (1-t) v_hat``.

    ``x_t`` and ``v`` broadcast (e.g. ``(n, 1, *shape)`` against ``(n, k, *shape)``); ``t`` is ``(n,)``.
    """
    return x_t + _col(1 - t.to(v.dtype), v.dim()) * v


class FlowMatchingModel(Model):
    """A rectified-flow denoiser seen by the engine as an epsilon predictor.

    Subclasses implement :meth:`velocity`; :meth:`eps` is the bridge. Arithmetic of the
    bridge runs in :attr:`bridge_dtype` (float32; the exact oracle uses float64).
    """

    bridge_dtype: torch.dtype = torch.float32
    ROW_METHODS = (("eps", "eps_rows"), ("velocity", "velocity_rows"))

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        """Velocity predictions ``(n, k, *data_shape)`` at flow inputs ``x_t`` ``(n, *data_shape)``,
        flow times ``t`` ``(n,)``, under ``k`` conditions."""
        raise NotImplementedError  # abstract

    def velocity_rows(self, x_t: torch.Tensor, t: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        """Velocity predictions ``(n, *data_shape)``, row ``i`` under ``conditions[i]``. This default calls
        :meth:`velocity` once per distinct condition; backends override it with one call."""
        groups: dict[int, list[int]] = {}
        for i, c in enumerate(conditions):
            groups.setdefault(id(c), []).append(i)
        out = None
        for rows in groups.values():
            idx = torch.tensor(rows, dtype=torch.long, device=x_t.device)
            v = self.velocity(x_t[idx], t[idx], [conditions[rows[0]]])[:, 0]
            out = v.new_empty((len(x_t), *v.shape[1:])) if out is None else out
            out[idx.to(out.device)] = v
        return out

    def eps(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        """Epsilon predictions ``(n, k, *data_shape)`` float32 through the flow bridge (one velocity call)."""
        x_t, t = self._bridge_in(x_a, logsnr)
        v = self.velocity(x_t, t, conditions).to(self.bridge_dtype)
        return eps_from_velocity(x_t[:, None], t, v).float()

    def eps_rows(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        """Epsilon predictions ``(n, *data_shape)`` float32, row ``i`` under ``conditions[i]`` (one
        :meth:`velocity_rows` call)."""
        x_t, t = self._bridge_in(x_a, logsnr)
        v = self.velocity_rows(x_t, t, conditions).to(self.bridge_dtype)
        return eps_from_velocity(x_t, t, v).float()

    def _bridge_in(self, x_a: torch.Tensor, logsnr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flow inputs ``x_t`` and times ``t`` of noisy inputs at log-SNR ``logsnr``, in :attr:`bridge_dtype`."""
        dt = self.bridge_dtype
        a = logsnr.to(self.device, torch.float64)
        return flow_input(x_a.to(self.device, dt), a.to(dt)), flow_time(a).to(dt)


def _default_range(t_min: float) -> tuple[float, float]:
    a = float(logsnr_of_time(t_min))
    return (-a, a)


class FlowGaussianMixture(FlowMatchingModel):
    """The exact velocity of a Gaussian mixture at flow time ``t``: the flow-side oracle.

    With ``x_t = (1-t) x + t eps`` and component ``k`` = ``N(mu_k, s_k^2 I)``,
    ``x_t | k ~ N((1-t) mu_k, V_k I)``, ``V_k = (1-t)^2 s_k^2 + t^2``, and

        E[eps | x_t, k] = t (x_t - (1-t) mu_k) / V_k
        E[x | x_t, k]   = mu_k + (1-t) s_k^2 (x_t - (1-t) mu_k) / V_k
        v(x_t | C)      = sum_k r_k (E[eps | x_t, k] - E[x | x_t, k])

    with ``r_k`` the posterior of component ``k`` among those ``C`` allows. Nothing here
    uses the variance-preserving formulas of :class:`~diffpid.models.mixture.GaussianMixture`,
    so MI through :meth:`eps` equals the VP oracle's only if the bridge is right.

    Args:
        mixture: the mixture (its components, labels, conditions, sampling and log densities).
        t_min: the smallest flow time of :attr:`logsnr_range` (symmetric: ``[-a(t_min), a(t_min)]``).
    """

    bridge_dtype = torch.float64
    name = "flow-gaussian-mixture"
    capabilities = frozenset({GENERATE})

    def __init__(self, mixture: GaussianMixture, t_min: float = 1e-3) -> None:
        if not isinstance(mixture, GaussianMixture):
            raise ParameterError(f"FlowGaussianMixture wraps a GaussianMixture, got {type(mixture).__name__}")
        if not 0 < t_min < 0.5:
            raise ParameterError(f"t_min must be in (0, 0.5), got {t_min}")
        self.mixture = mixture
        self.data_shape = mixture.data_shape
        self.logsnr_range = _default_range(t_min)

    def identity(self) -> ModelIdentity:
        """``"oracle"`` family, as the wrapped mixture, with the flow parameterisation in ``extra``."""
        inner = self.mixture.identity()
        return ModelIdentity(self.name, "oracle", type(self).__name__, None, "float64", (),
                             pairs({**dict(inner.extra), "parameterisation": "flow velocity"}))

    def encode_prompt(self, prompt) -> MixtureCondition:
        return self.mixture.encode_prompt(prompt)

    def unconditional(self) -> MixtureCondition:
        return self.mixture.unconditional()

    def velocity(self, x_t: torch.Tensor, t: torch.Tensor, conditions: Sequence[MixtureCondition]) -> torch.Tensor:
        mask = torch.stack([c.mask for c in conditions])[None]  # (1, k, K)
        return self._velocity(x_t, t, mask).reshape(len(x_t), len(conditions), *self.data_shape)

    def velocity_rows(self, x_t: torch.Tensor, t: torch.Tensor, conditions: Sequence[MixtureCondition]) -> torch.Tensor:
        mask = torch.stack([c.mask for c in conditions])[:, None]  # (n, 1, K): row i under its own condition
        return self._velocity(x_t, t, mask).reshape(len(x_t), *self.data_shape)

    def _velocity(self, x_t: torch.Tensor, t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Exact velocity ``(n, k, d)`` float64 under component masks ``(1 or n, k, K)``."""
        m = self.mixture
        x = x_t.to(torch.float64).reshape(len(x_t), -1)  # (n, d)
        t = t.to(torch.float64)[:, None]  # (n, 1)
        mu, s2 = m._flat, m.variances[None]  # (K, d), (1, K)
        var = (1 - t) ** 2 * s2 + t**2  # (n, K)
        dist = (x**2).sum(1, keepdim=True) - 2 * (1 - t) * x @ mu.T + (1 - t) ** 2 * m._sq[None]  # ||x - (1-t) mu||^2
        ll = torch.log(m.weights)[None] - 0.5 * m.dim * torch.log(2 * math.pi * var) - 0.5 * dist / var
        r = torch.softmax(ll[:, None, :].masked_fill(~mask, -math.inf), dim=-1)  # (n, k, K)
        # v_k = E[eps|k] - E[x|k] = c_k (x_t - (1-t) mu_k) - mu_k with c_k = (t - (1-t) s_k^2) / V_k
        c = (t - (1 - t) * s2) / var  # (n, K)
        rc = r * c[:, None, :]  # (n, k, K)
        return rc.sum(-1, keepdim=True) * x[:, None, :] - ((1 - t)[:, :, None] * rc + r) @ mu

    def log_prob(self, x, condition=None):
        return self.mixture.log_prob(x, condition)

    def sample(self, n, condition=None, generator=None):
        return self.mixture.sample(n, condition, generator)

    def generate(self, prompt=None, seed: int = 0, **kwargs) -> Generated:
        return self.mixture.generate(prompt, seed, **kwargs)
