import math

import pytest
import torch

from diffpid.engine.channel import (
    AdaptiveSampler, LogisticSampler, SobolSampler, UniformSampler, logistic_weight, logsnr_from_alphas_cumprod,
    make_sampler, noisy)
from diffpid.errors import ParameterError
from diffpid.models.flow import logsnr_of_time


def test_noisy_is_variance_preserving():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g)
    eps = torch.randn(200_000, generator=g)
    a = torch.full((200_000,), 0.7)
    xa = noisy(x[:, None], a, eps[:, None])[:, 0]
    assert xa.var().item() == pytest.approx(1.0, abs=0.01)
    # coefficient on x is sqrt(sigmoid(a))
    cov = ((xa - xa.mean()) * (x - x.mean())).mean().item()
    assert cov == pytest.approx(math.sqrt(1 / (1 + math.exp(-0.7))), abs=0.01)


def test_logsnr_conversions():
    ac = torch.tensor([0.9, 0.5, 0.1])
    assert torch.allclose(logsnr_from_alphas_cumprod(ac), torch.log(ac / (1 - ac)).double(), atol=1e-6)
    t = torch.tensor([0.25])
    # x_t = 0.75 x + 0.25 eps -> SNR = 9 -> log 9
    assert logsnr_of_time(t).item() == pytest.approx(math.log(9), rel=1e-6)


def test_logistic_density_times_weight_is_one():
    # the truncated logistic density q(a) = sig(r) sig(-r) / (s tanh(k/2)); q * w == 1 over the range
    loc, s, k = 1.0, 2.0, 3.0
    a = torch.linspace(loc - k * s, loc + k * s, 101, dtype=torch.float64)
    r = (a - loc) / s
    q = torch.sigmoid(r) * torch.sigmoid(-r) / (s * math.tanh(k / 2))
    assert torch.allclose(q * logistic_weight(a, loc, s, k), torch.ones_like(a), atol=1e-12)
    # and q integrates to one over the clipped range
    assert torch.trapezoid(q, a).item() == pytest.approx(1.0, abs=1e-3)


_FITTED = AdaptiveSampler().fit(torch.linspace(0, 3, 16) ** 2)


@pytest.mark.parametrize("sampler", [LogisticSampler(), SobolSampler(), UniformSampler(), LogisticSampler(0.5, 1.5, 2.0), _FITTED])
def test_weights_integrate_a_constant(sampler):
    g = torch.Generator().manual_seed(1)
    draws = list(sampler.stream(1 << 14, (1,), g, chunk=4096))
    a = torch.cat([d.logsnr for d in draws])
    w = torch.cat([d.weight for d in draws]).double()
    lo, hi = sampler.range
    assert a.min() >= lo - 1e-5 and a.max() <= hi + 1e-5
    # E[w] = length of the range; Sobol's first coordinate is stratified, so it is nearly exact
    tol = 2e-3 if isinstance(sampler, SobolSampler) else 4 * (w.std() / math.sqrt(len(w))).item() + 1e-9
    assert w.mean().item() == pytest.approx(hi - lo, abs=tol)
    # a linear function too: Int_lo^hi a da
    wa = w * a.double()
    tol_lin = 2e-2 if isinstance(sampler, SobolSampler) else 4 * (wa.std() / math.sqrt(len(wa))).item()
    assert wa.mean().item() == pytest.approx((hi**2 - lo**2) / 2, abs=tol_lin)


def test_uniform_weight_is_the_range_length_not_its_inverse():
    s = UniformSampler(1, 2, 3)
    _, w = s.levels(torch.rand(5, dtype=torch.float64))
    assert torch.allclose(w, torch.full((5,), 12.0))


def test_sobol_noise_is_standard_normal_and_chunking_invariant():
    s = SobolSampler()
    d1 = list(s.stream(256, (3, 4), torch.Generator().manual_seed(3), chunk=256))[0]
    d2 = list(s.stream(256, (3, 4), torch.Generator().manual_seed(3), chunk=7))
    eps2 = torch.cat([d.eps for d in d2])
    assert torch.equal(d1.eps, eps2)
    assert torch.equal(d1.logsnr, torch.cat([d.logsnr for d in d2]))
    assert d1.eps.mean().abs().item() < 0.02
    assert d1.eps.std().item() == pytest.approx(1.0, abs=0.03)


def test_sobol_beyond_its_dimension_limit_still_draws():
    s = SobolSampler()
    d = next(s.stream(4, (3, 100, 80), torch.Generator().manual_seed(0), chunk=4))
    assert d.eps.shape == (4, 3, 100, 80)
    assert d.eps.std().item() == pytest.approx(1.0, abs=0.05)


def test_bad_parameters():
    with pytest.raises(ParameterError, match="clip"):
        LogisticSampler(clip=0)
    with pytest.raises(ParameterError, match="scale"):
        UniformSampler(scale=-1)
    with pytest.raises(ParameterError, match="unknown sampler"):
        make_sampler("gaussian")
    with pytest.raises(ParameterError, match="at least 1"):
        next(LogisticSampler().stream(0, (1,), torch.Generator(), 4))


def test_adaptive_fit_follows_the_root_second_moment_with_a_logistic_floor():
    s = AdaptiveSampler(bins=4, floor=0.5, loc=0.0, scale=1.0, clip=2.0)
    fitted = s.fit(torch.tensor([0.0, 0.0, 4.0, 0.0]))
    probs = torch.tensor(fitted.probs, dtype=torch.float64)
    assert probs.sum().item() == pytest.approx(1.0)
    # smoothing spreads the moment to neighbours: [0, 1, 2, 1] -> sqrt -> normalised
    opt = torch.tensor([0.0, 1.0, math.sqrt(2), 1.0], dtype=torch.float64)
    opt = opt / opt.sum()
    e = torch.linspace(-2, 2, 5, dtype=torch.float64)
    c = torch.sigmoid(e)
    base = (c[1:] - c[:-1]) / (c[-1] - c[0])
    assert torch.allclose(probs, 0.5 * opt + 0.5 * base, atol=1e-9)
    assert s.pilot_size(1000) == 250 and s.pilot_size(10) == 10


def test_neyman_score_is_the_variance_plus_a_share_of_the_squared_mean():
    first = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.0, 1.0]], dtype=torch.float64)  # (T=2, bins=3)
    second = torch.tensor([[2.0, 5.0, 0.0], [0.5, 0.0, 1.0]], dtype=torch.float64)
    ney = AdaptiveSampler(allocation="neyman", mean_share=0.05).pilot_score(first, second)
    # term 0: [2 - 0.95, 5 - 3.8, 0]; term 1: [0.5 - 0.2375, 0, 1 - 0.95]
    assert torch.allclose(ney, torch.tensor([1.05 + 0.2625, 1.2, 0.05], dtype=torch.float64))
    assert torch.allclose(AdaptiveSampler().pilot_score(first, second), torch.tensor([2.5, 5.0, 1.0], dtype=torch.float64))
    # a bin with a constant integrand (variance 0) keeps only the mean share
    only = AdaptiveSampler(allocation="neyman", mean_share=0.0).pilot_score(first[:1, :1], first[:1, :1] ** 2)
    assert only.item() == 0.0
    with pytest.raises(ParameterError, match="allocation"):
        AdaptiveSampler(allocation="optimal")
    with pytest.raises(ParameterError, match="mean_share"):
        AdaptiveSampler(mean_share=2.0)


def test_neyman_sampler_by_name_and_in_settings():
    from diffpid.engine.channel import NeymanSampler, make_sampler
    from diffpid.settings import Settings

    s = make_sampler("neyman")
    assert isinstance(s, NeymanSampler) and isinstance(s, AdaptiveSampler)
    assert (s.allocation, s.pilot, s.min_pilot) == ("neyman", 0.1, 24)
    assert s.pilot_size(100) == 24 and s.pilot_size(1000) == 100
    assert Settings(sampler="neyman").sampler == "neyman"
