import math

import numpy as np
import pytest
import torch

from diffpid.errors import ConditionError, ParameterError
from diffpid.models.mixture import GaussianMixture


def _mixture():
    g = torch.Generator().manual_seed(0)
    means = torch.randn(5, 2, 3, generator=g)
    return GaussianMixture(means, [0.1, 0.2, 0.05, 0.3, 0.0], weights=[1, 2, 3, 1, 1],
                           labels={"y1": [0, 0, 1, 1, 1], "y2": [0, 1, 0, 1, 2]})


def test_denoiser_equals_tweedie_score():
    # E[eps | x_a] = -sqrt(sig(-a)) * grad log p_a(x_a), with p_a the noised mixture density
    m = _mixture()
    g = torch.Generator().manual_seed(1)
    x_a = torch.randn(7, 2, 3, generator=g, dtype=torch.float64)
    a = torch.tensor([-4.0, -1.0, 0.0, 0.5, 2.0, 5.0, 8.0], dtype=torch.float64)
    for cond in [{}, {"y1": 1}, {"y1": 1, "y2": 2}]:
        c = m.encode_prompt(cond)
        xr = x_a.clone().requires_grad_(True)
        sa = torch.sigmoid(a)[:, None]
        v = sa * m.variances[None] + torch.sigmoid(-a)[:, None]
        dist = ((xr.reshape(7, 1, -1) - sa.sqrt()[:, :, None] * m._flat[None]) ** 2).sum(-1)
        ll = torch.log(m.weights)[None] - 3 * torch.log(2 * math.pi * v) - 0.5 * dist / v
        lp = torch.logsumexp(ll.masked_fill(~c.mask[None], -math.inf), 1).sum()
        (grad,) = torch.autograd.grad(lp, xr)
        expect = -torch.sigmoid(-a).sqrt()[:, None, None] * grad
        got = m.eps(x_a.float(), a.float(), [c])[:, 0]
        assert torch.allclose(got.double(), expect, atol=1e-5), cond


def test_log_prob_against_scipy():
    from scipy.stats import multivariate_normal

    g = torch.Generator().manual_seed(2)
    means = torch.randn(3, 4, generator=g)
    var = torch.tensor([0.5, 1.0, 0.2])
    w = torch.tensor([0.2, 0.3, 0.5])
    m = GaussianMixture(means, var, w, labels={"y": [0, 1, 1]})
    x = torch.randn(6, 4, generator=g)
    dens = np.stack([multivariate_normal(means[k].numpy(), var[k].item() * np.eye(4)).pdf(x.numpy()) for k in range(3)])
    expect = np.log((w.numpy()[:, None] * dens).sum(0))
    assert np.allclose(m.log_prob(x).numpy(), expect, atol=1e-6)
    expect_y1 = np.log((w.numpy()[1:, None] * dens[1:]).sum(0) / w[1:].sum().item())
    assert np.allclose(m.log_prob(x, {"y": 1}).numpy(), expect_y1, atol=1e-6)


def test_denoiser_is_stable_far_from_the_data():
    m = _mixture()
    x_a = torch.full((2, 2, 3), 1e3)
    out = m.eps(x_a, torch.tensor([9.0, -9.0]), [m.unconditional()])
    assert torch.isfinite(out).all()


def test_sampling_respects_conditions():
    m = _mixture()
    x, comp = m.sample(500, {"y1": 1}, torch.Generator().manual_seed(0))
    assert x.shape == (500, 2, 3)
    assert set(comp.tolist()) <= {2, 3, 4}
    assert (m.labels_of(comp)["y1"] == 1).all()


def test_bad_conditions():
    m = _mixture()
    with pytest.raises(ConditionError, match="unknown label"):
        m.encode_prompt({"colour": 1})
    with pytest.raises(ConditionError, match="no component"):
        m.encode_prompt({"y1": 0, "y2": 2})
    with pytest.raises(ParameterError):
        GaussianMixture(torch.zeros(3, 2), labels={"y": [0, 1]})
    with pytest.raises(ParameterError, match="point mass"):
        m.log_prob(torch.zeros(1, 2, 3))
