"""Precision targets: rounds of draws until each image's values reach a relative standard error."""

import numpy as np
import pytest
import torch

import diffpid
from diffpid.engine.accumulate import samples_needed
from diffpid.errors import ParameterError
from diffpid.engine.estimate import Difference, estimate
from diffpid.models.mixture import GaussianMixture
from diffpid.plan import Plan
from diffpid.settings import Settings


def _model(k=4, scale=0.6):
    means = torch.zeros(k, 2, 3, 3)
    for i in range(k):
        means[i, i % 2] = scale * (1 + i // 2)
    return GaussianMixture(means, 0.02, labels={"y": list(range(k))})


def _setup(n=4):
    m = _model()
    x, comp = m.sample(n, generator=torch.Generator().manual_seed(2))
    conds = [m.unconditional()] + [m.encode_prompt({"y": int(c)}) for c in range(4)]
    terms = [Difference(1 + int(c), 0) for c in comp]  # each image's own label; terms for every image
    return m, x, comp, conds, terms


def test_the_target_is_met_for_every_image_and_term():
    m, x, _, conds, terms = _setup()
    target, floor = 0.08, 1e-3
    run = estimate(m, x, conds, terms, samples=16, sampler="sobol", seed=3, precision=target,
                   precision_floor=floor, max_samples=5000)
    assert run.precision == target
    for t in run.terms:
        ok = (t.stderr <= target * np.abs(t.value)) | (t.stderr <= floor)
        assert ok.all(), (t.value, t.stderr)
    assert (run.image_samples > 16).any() and (run.image_samples < 5000).all()
    assert run.samples == run.image_samples.max()


def test_the_cap_is_respected():
    m, x, _, conds, terms = _setup(2)
    run = estimate(m, x, conds, terms, samples=8, seed=0, precision=1e-4, precision_floor=0.0, max_samples=50)
    assert (run.image_samples == 50).all()
    assert (run.terms[0].curve.count.sum(1) == 50).all()


@pytest.mark.parametrize("sampler", ["sobol", "logistic"])
def test_rounds_equal_a_fixed_run_with_the_same_total(sampler):
    m, x, _, conds, terms = _setup(3)
    run = estimate(m, x, conds, terms, samples=8, sampler=sampler, seed=5, precision=0.25, precision_floor=1e-3,
                   max_samples=1000, batch_size=15)
    n = run.image_samples
    assert len(set(n.tolist())) > 1  # images stopped at different counts
    for i in range(3):
        fixed = estimate(m, x, conds, terms, samples=int(n[i]), sampler=sampler, seed=5, batch_size=64)
        for tp, tf in zip(run.terms, fixed.terms):
            assert tp.value[i] == pytest.approx(tf.value[i], rel=1e-6)
            assert tp.stderr[i] == pytest.approx(tf.stderr[i], rel=1e-5)
            np.testing.assert_allclose(tp.pixel_map[i], tf.pixel_map[i], rtol=1e-5, atol=1e-12)


def test_a_precise_estimate_is_still_unbiased_on_the_oracle():
    m, x, comp, conds, terms = _setup(2)
    run = estimate(m, x, conds, terms, samples=32, seed=1, precision=0.07, precision_floor=1e-3, max_samples=8000)
    for i in range(2):
        exact = (m.log_prob(x[i : i + 1], {"y": int(comp[i])}) - m.log_prob(x[i : i + 1])).item()
        t = run.terms[i]
        assert t.stderr[i] <= 0.07 * abs(t.value[i]) + 1e-12
        assert t.value[i] == pytest.approx(exact, abs=3 * t.stderr[i] + 0.01)


def test_samples_needed_follows_the_inverse_square_law():
    v = torch.tensor([[1.0, 2.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    se = torch.tensor([[0.2, 0.1], [0.05, 0.3], [0.2, 0.2]], dtype=torch.float64)
    n = torch.tensor([100, 100, 100])
    got = samples_needed(v, se, n, precision=0.1, floor=0.01, cap=300)
    # image 0: (0.2/0.1)^2 = 4 -> 440, but at most 4x (400) and the cap (300); image 1: the zero value
    # needs stderr <= floor: (0.3/0.01)^2 huge -> capped; image 2 as image 0
    assert got.tolist() == [300, 300, 300]
    got = samples_needed(v, se / 2, n, precision=0.1, floor=0.05, cap=10_000)
    assert got.tolist() == [100, 400, 100]  # images 0 and 2 meet the target exactly; image 1: 4x at most
    one = samples_needed(torch.tensor([[1.0]]), torch.tensor([[0.105]]), torch.tensor([100]), 0.1, 0.0, 10_000)
    assert one.tolist() == [122]  # ceil(1.1 * 100 * 1.05^2)
    done = samples_needed(v, se / 100, n, precision=0.1, floor=0.05, cap=10_000)
    assert done.tolist() == [100, 100, 100]  # met: no more draws


def test_every_entry_point_honours_precision():
    m = _model(2)
    x = m.means[1].float()
    s = Settings(samples=8, precision=0.2, precision_floor=1e-3, max_samples=2000, sampler="sobol")
    info = diffpid.mutual_information(m, x, {"y": 1}, settings=s)
    assert info.stderr <= 0.2 * info.value and 8 < info.samples < 2000
    r = Plan().mi("y", {"y": 1}).run(m, x, s)
    assert r.precision == 0.2 and r.samples == info.samples and r.mi["y"].value == info.value
    with pytest.raises(ParameterError, match="precision"):
        estimate(m, x, [m.unconditional(), m.encode_prompt({"y": 1})], [Difference(1, 0)], precision=2.0)
