"""The engine against exact answers on the Gaussian-mixture oracle."""

import math

import numpy as np
import pytest
import torch

import diffpid
from diffpid.engine.channel import LogisticSampler
from diffpid.errors import ConditionError, ModelOutputError, ParameterError, ShapeError
from diffpid.engine.estimate import Difference, estimate
from diffpid.models.mixture import GaussianMixture

WIDE = LogisticSampler(loc=1.0, scale=2.5, clip=5.0)  # log-SNR in [-11.5, 13.5]: tails negligible


def separated(k=4, scale=0.6, shape=(3, 4, 4), var=0.02):
    means = torch.zeros(k, *shape)
    for i in range(k):
        means[i, i % shape[0]] = scale * (1 + i // shape[0])
    return GaussianMixture(means, var, labels={"y": list(range(k))})


def test_negative_log_likelihood_of_a_gaussian():
    d, s2 = 12, 0.3
    mu = torch.linspace(-1, 1, d)
    m = GaussianMixture(mu[None], s2)
    x = (mu + 0.4 * torch.sin(torch.arange(d))).reshape(1, d)
    run = estimate(m, x, [m.unconditional()], [Difference(0, 0)], samples=4096, sampler=WIDE, seed=0)
    exact = 0.5 * d * math.log(2 * math.pi * s2) + ((x - mu) ** 2).sum().item() / (2 * s2)
    assert run.nll[0, 0] == pytest.approx(exact, abs=4 * run.nll_stderr[0, 0] + 0.01)
    assert run.nll_stderr[0, 0] < 0.2


def test_pointwise_mi_of_separated_components_is_ln_k():
    m = separated()
    g = torch.Generator().manual_seed(0)
    x, comp = m.sample(4, generator=g)
    for i in range(4):
        r = diffpid.mutual_information(m, x[i], {"y": int(comp[i])}, samples=2048, sampler=WIDE, seed=i)
        exact = (m.log_prob(x[i : i + 1], {"y": int(comp[i])}) - m.log_prob(x[i : i + 1])).item()
        assert exact == pytest.approx(math.log(4), abs=1e-6)
        # the standard estimator is pointwise exact; the orthogonal one only in expectation, but here
        # the components are separated so both are close to ln K
        assert r.standard_value == pytest.approx(exact, abs=4 * r.standard_stderr + 0.02)
        assert r.value == pytest.approx(exact, abs=4 * r.stderr + 0.02)


def test_mi_of_overlapping_1d_components_against_numerical_integration():
    from scipy import integrate
    from scipy.stats import norm

    mu, s = 0.5, 0.5
    m = GaussianMixture(torch.tensor([[-mu], [mu]]), s * s, labels={"y": [0, 1]})

    def h(f, lo=-6, hi=6):
        return -integrate.quad(lambda t: f(t) * math.log(f(t)), lo, hi, limit=200)[0]

    mix = lambda t: 0.5 * norm.pdf(t, -mu, s) + 0.5 * norm.pdf(t, mu, s)  # noqa: E731
    exact = h(mix) - h(lambda t: norm.pdf(t, mu, s))
    g = torch.Generator().manual_seed(5)
    x, comp = m.sample(512, generator=g)
    conds = [m.unconditional(), m.encode_prompt({"y": 0}), m.encode_prompt({"y": 1})]
    run = estimate(m, x, conds, [Difference(1, 0), Difference(2, 0)], samples=64, sampler=WIDE, batch_size=4096, seed=1)
    pick = comp.numpy()
    vals = np.where(pick == 0, run.terms[0].value, run.terms[1].value)
    std_vals = np.where(pick == 0, run.terms[0].standard_value, run.terms[1].standard_value)
    for v in (vals, std_vals):
        se = v.std(ddof=1) / math.sqrt(len(v))
        assert v.mean() == pytest.approx(exact, abs=3.5 * se)
    assert 0.05 < exact < 0.5  # genuinely overlapping: well below ln 2


def test_chain_rule_and_estimators_agree_in_expectation():
    # y1, y2 two binary labels on four components; I(x; y1 y2) = I(x; y1) + I(x; y2 | y1)
    g = torch.Generator().manual_seed(3)
    means = 0.35 * torch.randn(4, 2, 3, 3, generator=g)
    m = GaussianMixture(means, 0.1, labels={"y1": [0, 0, 1, 1], "y2": [0, 1, 0, 1]})
    x, comp = m.sample(256, generator=g)
    y1, y2 = m.labels["y1"][comp], m.labels["y2"][comp]
    totals, parts, standard, ortho = [], [], [], []
    for v1 in (0, 1):
        for v2 in (0, 1):
            sel = ((y1 == v1) & (y2 == v2)).nonzero()[:, 0]
            conds = [m.unconditional(), m.encode_prompt({"y1": v1}), m.encode_prompt({"y1": v1, "y2": v2})]
            run = estimate(m, x[sel], conds, [Difference(2, 0), Difference(1, 0), Difference(2, 1)],
                           samples=48, sampler=WIDE, batch_size=8192, seed=v1 * 2 + v2)
            totals.append(run.terms[0].value)
            parts.append(run.terms[1].value + run.terms[2].value)
            standard.append(run.terms[0].standard_value)
            ortho.append(run.terms[0].value)
    diff = np.concatenate(totals) - np.concatenate(parts)
    assert abs(diff.mean()) < 3.5 * diff.std(ddof=1) / math.sqrt(len(diff))
    d2 = np.concatenate(standard) - np.concatenate(ortho)
    assert abs(d2.mean()) < 3.5 * d2.std(ddof=1) / math.sqrt(len(d2))
    # and both estimate the exact mutual information
    lp = m.log_prob(x, None)
    cond_lp = torch.stack([m.log_prob(x[i : i + 1], {"y1": int(y1[i]), "y2": int(y2[i])})[0] for i in range(len(x))])
    exact_pointwise = (cond_lp - lp).numpy()
    total = np.concatenate(totals)
    # pointwise order of the concatenation follows the selections; compare expectations only
    se = math.hypot(total.std(ddof=1), exact_pointwise.std(ddof=1)) / math.sqrt(len(total))
    assert total.mean() == pytest.approx(exact_pointwise.mean(), abs=3.5 * se)


def test_pixel_map_sums_to_the_image_value_and_stderr_shapes():
    m = separated()
    x, comp = m.sample(3, generator=torch.Generator().manual_seed(0))
    conds = [m.encode_prompt({"y": int(c)}) for c in comp] + [m.unconditional()]
    run = estimate(m, x, conds, [Difference(0, 3), Difference(1, 3)], samples=32, seed=0)
    for t in run.terms:
        assert t.pixel_map.shape == (3, 4, 4)
        assert np.allclose(t.pixel_map.sum((1, 2)), t.value, rtol=1e-6, atol=1e-9)
        assert np.allclose(t.standard_map.sum((1, 2)), t.standard_value, rtol=1e-5, atol=1e-7)
        assert (t.pixel_map >= 0).all() and (t.pixel_stderr >= 0).all()
        assert t.curve.mean.shape[0] == 3 and (t.curve.count.sum(1) == 32).all()
    assert run.nll.shape == (4, 3)


def test_pixel_map_localises_the_differing_pixels():
    means = torch.zeros(2, 1, 6, 6)
    means[1, 0, :3, :3] = 1.0  # the label only changes the top-left quarter
    m = GaussianMixture(means, 0.01, labels={"y": [0, 1]})
    x = means[1:2]
    r = diffpid.mutual_information(m, x[0], {"y": 1}, samples=128, seed=0)
    inside = r.pixel_map[:3, :3].sum()
    assert inside > 0.99 * r.value and r.value > 0.3


def test_same_seed_same_numbers_and_batch_split_invariance():
    m = separated()
    x, comp = m.sample(3, generator=torch.Generator().manual_seed(0))
    conds = [m.unconditional(), m.encode_prompt({"y": 0}), m.encode_prompt({"y": 1})]
    terms = [Difference(1, 0), Difference(2, 0), Difference(2, 1)]
    r1 = estimate(m, x, conds, terms, samples=40, seed=7, batch_size=64)
    r2 = estimate(m, x, conds, terms, samples=40, seed=7, batch_size=64)
    r3 = estimate(m, x, conds, terms, samples=40, seed=7, batch_size=2)  # conditions split across calls
    r4 = estimate(m, x, conds, terms, samples=40, seed=7, batch_size=1000)
    for a, b in [(r1, r2), (r1, r3), (r1, r4)]:
        for ta, tb in zip(a.terms, b.terms):
            assert np.allclose(ta.value, tb.value, rtol=1e-6, atol=1e-9)
            assert np.allclose(ta.pixel_map, tb.pixel_map, rtol=1e-5, atol=1e-9)
    assert np.array_equal(r1.terms[0].value, r2.terms[0].value)
    r5 = estimate(m, x, conds, terms, samples=40, seed=8)
    assert not np.allclose(r1.terms[0].value, r5.terms[0].value)


def test_every_sampler_runs_and_agrees():
    m = separated(k=2)
    x = m.means[1:2].float()
    vals = []
    for s in ["adaptive", "sobol", "published", "uniform"]:
        r = diffpid.mutual_information(m, x, {"y": 1}, samples=1024, sampler=s, seed=0)
        vals.append((r.value[0], r.stderr[0]))
    for v, se in vals[1:]:
        assert v == pytest.approx(vals[0][0], abs=4 * math.hypot(se, vals[0][1]))


class _Broken(GaussianMixture):
    def eps(self, x_a, logsnr, conditions):
        out = super().eps(x_a, logsnr, conditions)
        out[0] = float("nan")
        return out


def test_bad_input():
    m = separated()
    x = m.means[:1].float()
    with pytest.raises(ShapeError, match="expects"):
        diffpid.mutual_information(m, torch.zeros(1, 3, 5, 5), {"y": 1})
    with pytest.raises(ConditionError):
        diffpid.mutual_information(m, x, {"z": 1})
    with pytest.raises(ParameterError, match="clip"):
        diffpid.mutual_information(m, x, {"y": 1}, sampler=LogisticSampler(clip=-1))
    with pytest.raises(ParameterError, match="samples"):
        diffpid.mutual_information(m, x, {"y": 1}, samples=0)
    with pytest.raises(ShapeError, match="NaN"):
        diffpid.mutual_information(m, torch.full((1, 3, 4, 4), float("nan")), {"y": 1})
    broken = _Broken(m.means, 0.02, labels={"y": [0, 1, 2, 3]})
    with pytest.raises(ModelOutputError, match="NaN"):
        diffpid.mutual_information(broken, x, {"y": 1}, samples=4)
    with pytest.raises(ParameterError, match="context"):
        diffpid.conditional_mutual_information(m, x, {"y": 1})


def test_sampler_outside_the_trained_range_is_refused():
    m = separated()
    m.logsnr_range = (-5.36, 7.07)
    with pytest.raises(ParameterError, match="trained on"):
        diffpid.mutual_information(m, m.means[:1].float(), {"y": 1}, sampler=WIDE)


def test_neyman_adaptive_sampler_is_unbiased_on_the_exact_oracle():
    from diffpid.engine.channel import AdaptiveSampler

    m = separated(k=2)
    x = m.means[1:2].float()
    exact = (m.log_prob(x, {"y": 1}) - m.log_prob(x)).item()  # = ln 2 for separated components
    s = AdaptiveSampler(loc=1.0, scale=2.5, clip=5.0, allocation="neyman")
    vals, ses = [], []
    for seed in range(6):
        r = diffpid.mutual_information(m, x, {"y": 1}, samples=512, sampler=s, seed=seed)
        vals.append(r.value[0]), ses.append(r.stderr[0])
    se = math.sqrt(sum(v * v for v in ses)) / len(ses)
    assert np.mean(vals) == pytest.approx(exact, abs=4 * se + 0.01)
    # and it is not the default sampler's numbers
    d = diffpid.mutual_information(m, x, {"y": 1}, samples=512, sampler=AdaptiveSampler(loc=1.0, scale=2.5, clip=5.0),
                                   seed=0)
    assert d.value[0] != vals[0]
