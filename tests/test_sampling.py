"""DDIM inversion and regeneration (diffpid.sampling) against the closed-form flow of a Gaussian."""

import math

import pytest
import torch

from diffpid.errors import ParameterError
from diffpid.models.mixture import GaussianMixture
from diffpid.sampling import ddim_generate, ddim_invert, ddim_levels, round_trip_error


def _gaussian(var: float) -> tuple[GaussianMixture, torch.Tensor]:
    mu = torch.linspace(-1, 1, 3 * 4 * 4).reshape(1, 3, 4, 4)
    return GaussianMixture(mu, var), mu[0]


def _std(a: float, var: float) -> float:
    s = 1 / (1 + math.exp(-a))
    return math.sqrt(s * var + 1 - s)


def test_levels_follow_the_model_range_clipped():
    m, _ = _gaussian(0.1)
    lv = ddim_levels(m, 4)
    assert lv.tolist() == pytest.approx([12.0, 6.0, 0.0, -6.0, -12.0])
    assert ddim_levels(m, 3, lowest=-6.0).tolist() == pytest.approx([12.0, 6.0, 0.0, -6.0])
    assert ddim_levels(m, 4, lowest=-20.0).tolist() == pytest.approx(lv.tolist())  # never below the range
    with pytest.raises(ParameterError):
        ddim_levels(m, 0)
    with pytest.raises(ParameterError):
        ddim_levels(m, 2, lowest=13.0)


def test_inversion_matches_the_linear_flow_of_a_gaussian():
    # For N(mu, v I) the probability-flow ODE is linear: x_a - sqrt(s_a) mu scales with the marginal std.
    var = 0.2
    m, mu = _gaussian(var)
    g = torch.Generator().manual_seed(0)
    x = (mu + math.sqrt(var) * torch.randn(mu.shape, generator=g, dtype=torch.float64)).float()
    lv = ddim_levels(m, 100)
    hi, lo = float(lv[0]), float(lv[-1])
    s_hi, s_lo = 1 / (1 + math.exp(-hi)), 1 / (1 + math.exp(-lo))
    exact = (math.sqrt(s_lo) * mu + (x - math.sqrt(s_hi) * mu) * _std(lo, var) / _std(hi, var)).float()
    errs = [(ddim_invert(m, x, m.unconditional(), n)[0] - exact).abs().max().item() for n in (400, 1600)]
    assert errs[1] < 6e-3  # first order: 4x the steps, a quarter of the error
    assert 3.0 < errs[0] / errs[1] < 5.0
    # and regeneration walks it back
    z = ddim_invert(m, x, m.unconditional(), 1600)[0]
    back = ddim_generate(m, z, m.unconditional(), 1600)[0]
    assert torch.allclose(back, x, atol=1e-2)


def test_lowest_level_is_where_inversion_stops():
    var = 0.2
    m, mu = _gaussian(var)
    x = mu + 0.3
    z = ddim_invert(m, x, m.unconditional(), 800, lowest=-3.0)
    s_hi, s_lo = 1 / (1 + math.exp(-12.0)), 1 / (1 + math.exp(3.0))
    exact = math.sqrt(s_lo) * mu + (x - math.sqrt(s_hi) * mu) * _std(-3.0, var) / _std(12.0, var)
    assert torch.allclose(z[0], exact, atol=5e-3)
    back = ddim_generate(m, z, m.unconditional(), 800, lowest=-3.0)[0]
    assert torch.allclose(back, x, atol=5e-3)


def test_round_trip_is_exact_for_a_point_mass_and_improves_with_steps():
    m, mu = _gaussian(0.0)
    z = ddim_invert(m, mu, m.unconditional(), 5)
    assert round_trip_error(mu[None], ddim_generate(m, z, m.unconditional(), 5))[0] < 1e-10
    m, mu = _gaussian(0.3)
    x = mu + 0.5 * torch.randn(mu.shape, generator=torch.Generator().manual_seed(1))
    errs = [round_trip_error(x[None], ddim_generate(m, ddim_invert(m, x, m.unconditional(), n), m.unconditional(), n))[0]
            for n in (5, 50)]
    assert errs[1] < 0.2 * errs[0]


def test_guidance_one_equals_conditional_and_guidance_zero_equals_unconditional():
    means = torch.stack([torch.full((2, 2, 2), -0.5), torch.full((2, 2, 2), 0.5)])
    m = GaussianMixture(means, 0.1, labels={"y": [0, 1]})
    x = torch.full((2, 2, 2), 0.3)
    c, u = m.encode_prompt({"y": 1}), m.unconditional()
    plain = ddim_invert(m, x, c, 8)
    assert torch.allclose(ddim_invert(m, x, c, 8, guidance=1.0, unconditional=u), plain)
    assert torch.allclose(ddim_invert(m, x, c, 8, guidance=0.0), ddim_invert(m, x, u, 8), atol=1e-6)
    assert not torch.allclose(ddim_invert(m, x, c, 8, guidance=3.0), plain)
    with pytest.raises(ParameterError):
        ddim_invert(m, x, c, 8, guidance=-1.0)


def test_round_trip_error_values():
    x = torch.ones(1, 2, 2)
    mse, rel = round_trip_error(x, torch.zeros(1, 2, 2))
    assert mse == pytest.approx(1.0) and rel == pytest.approx(1.0)
