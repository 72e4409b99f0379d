"""The exact MMSE denoiser of a mixture of isotropic Gaussians: the ground-truth oracle.

Component ``k`` is ``N(mu_k, s_k^2 I)`` with prior weight ``pi_k`` and discrete labels
(for example ``{"shape": 2, "color": 0}``). A condition is a partial assignment of labels;
``{}`` is unconditional. Under the channel ``x_a = sqrt(sig(a)) x + sqrt(sig(-a)) eps``,
``x_a | k ~ N(sqrt(sig(a)) mu_k, v_k I)`` with ``v_k = sig(a) s_k^2 + sig(-a)``, so

    E[eps | x_a, C] = sum_k r_k sqrt(sig(-a)) (x_a - sqrt(sig(a)) mu_k) / v_k

with ``r_k`` the posterior of component ``k`` among those allowed by ``C`` (log-sum-exp).
Exact log densities and sampling make every information quantity checkable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from ..errors import ConditionError, ParameterError
from .base import GENERATE, Generated, Model, ModelIdentity, pairs


@dataclass(frozen=True)
class MixtureCondition:
    """A partial label assignment and the components it allows.

    Args:
        assignment: sorted ``(label, value)`` pairs.
        mask: ``(K,)`` bool, the components consistent with the assignment.
    """

    assignment: tuple[tuple[str, int], ...]
    mask: torch.Tensor


class GaussianMixture(Model):
    """Mixture of isotropic Gaussians with labelled components and its exact denoiser.

    Args:
        means: ``(K, *data_shape)`` component means (any shape, e.g. images ``(K, 3, 32, 32)``).
        variances: per-component variance ``s_k^2``, a float or ``(K,)``; ``>= 0`` (0 is a point mass).
        weights: ``(K,)`` prior weights (normalised here); uniform when omitted.
        labels: label name to ``K`` integer values, e.g. ``{"y1": [0, 0, 1, 1]}``.
    """

    name = "gaussian-mixture"
    capabilities = frozenset({GENERATE})
    """Exact samples; no text, attention or images (conditions are label assignments)."""

    def __init__(
        self,
        means: torch.Tensor,
        variances: float | Sequence[float] | torch.Tensor = 0.0,
        weights: Sequence[float] | torch.Tensor | None = None,
        labels: Mapping[str, Sequence[int]] | None = None,
    ) -> None:
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.dim() < 2:
            raise ParameterError("means must have shape (K, *data_shape) with at least one data dimension")
        k = means.shape[0]
        var = torch.as_tensor(variances, dtype=torch.float64).expand(k).clone()
        if (var < 0).any() or not torch.isfinite(var).all():
            raise ParameterError("variances must be finite and >= 0")
        w = torch.ones(k, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if w.shape != (k,) or (w < 0).any() or w.sum() <= 0:
            raise ParameterError(f"weights must be {k} non-negative numbers with a positive sum")
        self.means = means
        self.variances = var
        self.weights = w / w.sum()
        self.labels = {n: torch.as_tensor(v, dtype=torch.long) for n, v in (labels or {}).items()}
        for n, v in self.labels.items():
            if v.shape != (k,):
                raise ParameterError(f"label {n!r} must give one value per component ({k}), got {tuple(v.shape)}")
        self.data_shape = tuple(means.shape[1:])
        self.dim = math.prod(self.data_shape)
        self._flat = means.reshape(k, -1)
        self._sq = (self._flat**2).sum(1)

    def identity(self) -> ModelIdentity:
        """``"oracle"`` family; ``extra`` holds the number of components, labels and data shape."""
        return ModelIdentity(self.name, "oracle", type(self).__name__, None, "float64", (),
                             pairs({"components": len(self.weights), "labels": tuple(sorted(self.labels)),
                                    "data_shape": self.data_shape}))

    def encode_prompt(self, prompt: Mapping[str, int] | None) -> MixtureCondition:
        """Condition on a partial label assignment, e.g. ``{"y1": 1}``; ``{}`` is unconditional."""
        prompt = dict(prompt or {})
        mask = torch.ones(len(self.weights), dtype=torch.bool)
        for name, value in prompt.items():
            if name not in self.labels:
                raise ConditionError(f"unknown label {name!r}; this mixture has labels {sorted(self.labels)}")
            mask &= self.labels[name] == int(value)
        if not (mask & (self.weights > 0)).any():
            raise ConditionError(f"no component with positive weight has labels {prompt}")
        return MixtureCondition(tuple(sorted((n, int(v)) for n, v in prompt.items())), mask)

    def unconditional(self) -> MixtureCondition:
        return self.encode_prompt({})

    def _log_lik(self, x_a: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Log ``pi_k N(x_a; sqrt(sig(a)) mu_k, v_k I)`` as ``(n, K)``, with ``v`` ``(n, K)`` and ``sig(a)``."""
        sa = torch.sigmoid(a)[:, None]  # (n, 1)
        v = sa * self.variances[None] + torch.sigmoid(-a)[:, None]  # (n, K)
        xf = x_a.reshape(len(x_a), -1)
        dist = (xf**2).sum(1, keepdim=True) - 2 * sa.sqrt() * xf @ self._flat.T + sa * self._sq[None]
        ll = torch.log(self.weights)[None] - 0.5 * self.dim * torch.log(2 * math.pi * v) - 0.5 * dist / v
        return ll, v, sa

    def eps(self, x_a, logsnr, conditions):
        mask = torch.stack([c.mask for c in conditions])[None]  # (1, k, K)
        return self._eps(x_a, logsnr, mask).reshape(len(x_a), len(conditions), *self.data_shape)

    def eps_rows(self, x_a, logsnr, conditions):
        mask = torch.stack([c.mask for c in conditions])[:, None]  # (n, 1, K): row i under its own condition
        return self._eps(x_a, logsnr, mask).reshape(len(x_a), *self.data_shape)

    def _eps(self, x_a: torch.Tensor, logsnr: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Exact epsilon ``(n, k, d)`` float32 under component masks ``(1 or n, k, K)``."""
        x_a = x_a.to(torch.float64)
        a = logsnr.to(torch.float64)
        ll, v, sa = self._log_lik(x_a, a)  # (n, K)
        r = torch.softmax(ll[:, None, :].masked_fill(~mask, -math.inf), dim=-1)  # (n, k, K)
        rv = r / v[:, None, :]  # (n, k, K)
        xf = x_a.reshape(len(x_a), 1, -1)
        out = xf * rv.sum(-1, keepdim=True) - sa.sqrt()[:, :, None] * (rv @ self._flat)
        return (torch.sigmoid(-a).sqrt()[:, None, None] * out).float()

    def log_prob(self, x: torch.Tensor, condition: Mapping[str, int] | MixtureCondition | None = None) -> torch.Tensor:
        """Exact ``log p(x | condition)`` in nats, ``(n,)``; needs positive variances."""
        cond = condition if isinstance(condition, MixtureCondition) else self.encode_prompt(condition)
        if (self.variances[cond.mask] <= 0).any():
            raise ParameterError("log_prob needs positive variances (point masses have no density)")
        xf = x.to(torch.float64).reshape(len(x), -1)
        var = self.variances
        dist = (xf**2).sum(1, keepdim=True) - 2 * xf @ self._flat.T + self._sq[None]
        ll = torch.log(self.weights)[None] - 0.5 * self.dim * torch.log(2 * math.pi * var)[None] - 0.5 * dist / var[None]
        ll = ll.masked_fill(~cond.mask[None], -math.inf)
        return torch.logsumexp(ll, 1) - torch.log(self.weights[cond.mask].sum())

    def sample(
        self, n: int, condition: Mapping[str, int] | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``n`` samples: ``(n, *data_shape)`` float32 data and ``(n,)`` component indices."""
        cond = self.encode_prompt(condition)
        p = self.weights * cond.mask
        comp = torch.multinomial(p, n, replacement=True, generator=generator)
        noise = torch.randn((n, self.dim), generator=generator, dtype=torch.float64)
        x = self._flat[comp] + self.variances[comp].sqrt()[:, None] * noise
        return x.reshape(n, *self.data_shape).float(), comp

    def labels_of(self, components: torch.Tensor) -> dict[str, torch.Tensor]:
        """The label values of the given component indices."""
        return {n: v[components] for n, v in self.labels.items()}

    def generate(self, prompt=None, seed: int = 0, **kwargs) -> Generated:
        g = torch.Generator().manual_seed(seed)
        x, _ = self.sample(1, prompt, g)
        return Generated(image=None, x=x, prompt=prompt, seed=seed)
