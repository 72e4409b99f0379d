"""The flow-matching bridge against exact answers: the Gaussian mixture as a velocity model.

:class:`~diffpid.models.flow.FlowGaussianMixture` computes the mixture's posterior-mean
velocity in flow coordinates (``x_t = (1-t) x + t eps``) without any variance-preserving
formula; the engine reaches it only through the bridge ``t = sigmoid(-a/2)``,
``x_t = x_a (1-t)/sqrt(sigmoid(a))``, ``eps = x_t + (1-t) v``. MI, CMI and PID through it must
equal the VP oracle's on the same draws to float tolerance, and the closed forms within
3 standard errors.
"""

import math

import numpy as np
import pytest
import torch

import diffpid
from diffpid.engine.channel import LogisticSampler, noisy
from diffpid.errors import ParameterError
from diffpid.models.flow import (FlowGaussianMixture, eps_from_velocity, flow_input, flow_time, logsnr_of_time)
from diffpid.models.mixture import GaussianMixture
from diffpid.decomposition.dataset import dataset_pid

from test_pid import CASES, FAST, world
from tiny_flow import velocity_from_eps

WIDE = LogisticSampler(loc=1.0, scale=2.5, clip=4.5)  # log-SNR in [-10.25, 12.25]


def separated(k=4, scale=0.6, shape=(3, 4, 4), var=0.02):
    means = torch.zeros(k, *shape)
    for i in range(k):
        means[i, i % shape[0]] = scale * (1 + i // shape[0])
    return GaussianMixture(means, var, labels={"y": list(range(k)), "z": [i % 2 for i in range(k)]})


def test_time_and_logsnr_are_inverse_and_the_input_is_the_flow_interpolation():
    t = torch.tensor([1e-3, 0.05, 0.3, 0.5, 0.8, 0.999], dtype=torch.float64)
    a = logsnr_of_time(t)
    assert torch.allclose(flow_time(a), t, rtol=1e-12)
    assert torch.allclose(a, 2 * torch.log((1 - t) / t))
    g = torch.Generator().manual_seed(0)
    x, eps = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 5, generator=g, dtype=torch.float64)
    x_t = flow_input(noisy(x, a, eps), a)
    assert torch.allclose(x_t, (1 - t)[:, None] * x + t[:, None] * eps, atol=1e-12)
    v = eps - x  # the true velocity gives back the true noise, and the inverse map the velocity
    assert torch.allclose(eps_from_velocity(x_t, t, v), eps, atol=1e-12)
    assert torch.allclose(velocity_from_eps(x_t, t, eps), v, atol=1e-10)


@pytest.mark.parametrize("var", [0.0, 0.05, [0.02, 0.3, 0.1, 0.5]])
def test_flow_velocity_gives_the_vp_oracle_epsilon(var):
    g = torch.Generator().manual_seed(1)
    m = GaussianMixture(torch.randn(4, 2, 3, 3, generator=g), var, labels={"y": [0, 0, 1, 1], "z": [0, 1, 0, 1]})
    f = FlowGaussianMixture(m)
    x = torch.randn(64, 2, 3, 3, generator=g)
    a = torch.linspace(-12, 12, 64)
    conds = [m.unconditional(), m.encode_prompt({"y": 1}), m.encode_prompt({"y": 0, "z": 1})]
    vp, fl = m.eps(x, a, conds), f.eps(x, a, conds)
    assert fl.dtype == torch.float32 and fl.shape == (64, 3, 2, 3, 3)
    assert torch.allclose(fl, vp, atol=2e-6, rtol=1e-6)


def test_mi_and_cmi_through_the_flow_path_equal_the_vp_oracle_and_the_closed_form():
    m = separated()
    f = FlowGaussianMixture(m)
    g = torch.Generator().manual_seed(0)
    x, comp = m.sample(3, generator=g)
    for i in range(3):
        y = {"y": int(comp[i])}
        rv = diffpid.mutual_information(m, x[i], y, samples=1024, sampler=WIDE, seed=i)
        rf = diffpid.mutual_information(f, x[i], y, samples=1024, sampler=WIDE, seed=i)
        assert rf.value == pytest.approx(rv.value, rel=1e-5, abs=1e-6)
        assert rf.standard_value == pytest.approx(rv.standard_value, rel=1e-5, abs=1e-6)
        assert rf.stderr == pytest.approx(rv.stderr, rel=1e-4, abs=1e-6)
        assert np.allclose(rf.pixel_map, rv.pixel_map, rtol=1e-4, atol=1e-6)
        exact = (m.log_prob(x[i : i + 1], y) - m.log_prob(x[i : i + 1])).item()
        assert exact == pytest.approx(math.log(4), abs=1e-6)
        assert rf.standard_value == pytest.approx(exact, abs=3 * rf.standard_stderr + 0.02)
        assert rf.value == pytest.approx(exact, abs=3 * rf.stderr + 0.02)
        # CMI of y given z: log p(x | y, z) - log p(x | z), exactly ln 2 here
        full, ctx = {"y": int(comp[i]), "z": int(comp[i]) % 2}, {"z": int(comp[i]) % 2}
        cv = diffpid.conditional_mutual_information(m, x[i], full, ctx, samples=1024, sampler=WIDE, seed=i)
        cf = diffpid.conditional_mutual_information(f, x[i], full, ctx, samples=1024, sampler=WIDE, seed=i)
        assert cf.value == pytest.approx(cv.value, rel=1e-5, abs=1e-6)
        exact_c = (m.log_prob(x[i : i + 1], full) - m.log_prob(x[i : i + 1], ctx)).item()
        assert exact_c == pytest.approx(math.log(2), abs=1e-6)
        assert cf.standard_value == pytest.approx(exact_c, abs=3 * cf.standard_stderr + 0.02)


@pytest.mark.parametrize("name", ["xor", "copy", "and"])
def test_pid_through_the_flow_path_equals_the_vp_oracle_and_the_closed_form(name):
    probs, expected = CASES[name]
    model, keys, mu = world(probs)
    flow = FlowGaussianMixture(model)
    x = torch.stack([mu[t] for t, _, _ in keys])
    kw = dict(weights=[probs[k] for k in keys], redundancy="integrated", samples=2048, batch_size=FAST, seed=0)
    s1, s2 = [{"y1": k[1]} for k in keys], [{"y2": k[2]} for k in keys]
    vp, fl = dataset_pid(model, x, s1, s2, **kw), dataset_pid(flow, x, s1, s2, **kw)
    for a, b, want in zip(fl.atoms, vp.atoms, expected):
        assert a.value == pytest.approx(b.value, rel=1e-4, abs=2e-5)
        assert a.stderr == pytest.approx(b.stderr, rel=1e-3, abs=2e-5)
        assert a.value == pytest.approx(want, abs=3 * a.stderr + 0.004)
    # pointwise PID of one image: the same atoms on the same draws
    pv = diffpid.pid(model, x[0], {"y1": keys[0][1]}, {"y2": keys[0][2]}, samples=256, batch_size=FAST, seed=3)
    pf = diffpid.pid(flow, x[0], {"y1": keys[0][1]}, {"y2": keys[0][2]}, samples=256, batch_size=FAST, seed=3)
    for a, b in zip(pf.atoms, pv.atoms):
        assert a.value == pytest.approx(b.value, rel=1e-4, abs=2e-5)
        assert np.allclose(a.pixel_map, b.pixel_map, rtol=1e-3, atol=2e-5)


def test_bad_oracle_arguments():
    with pytest.raises(ParameterError, match="wraps a GaussianMixture"):
        FlowGaussianMixture(object())
    with pytest.raises(ParameterError, match="t_min"):
        FlowGaussianMixture(separated(), t_min=0.7)
