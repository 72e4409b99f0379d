"""Counter-based streams: the hash is splitmix64 bit for bit, the numbers have the right law, and
draws do not depend on how they are batched or chunked."""

import math

import numpy as np
import pytest
import torch

from diffpid.engine import streams
from diffpid.engine.channel import LogisticSampler, make_sampler
from diffpid.engine.estimate import Difference, estimate
from diffpid.models.mixture import GaussianMixture


def test_tensor_hash_is_splitmix64_bit_for_bit():
    xs = [0, 1, 2, 12345678901234567, 2**63 - 1, -1, -(2**63), -987654321]
    got = streams.mix(torch.tensor(xs, dtype=torch.long)).tolist()
    assert [g & (2**64 - 1) for g in got] == [streams.mix_int(x & (2**64 - 1)) for x in xs]
    # the published first output of SplittableRandom/splitmix64 seeded with 0
    assert streams.mix_int(0) == 0xE220A8397B1DCDAF


def test_normals_and_uniforms_have_their_law():
    n = 200_000
    z = streams.normal(3, torch.zeros(n // 50, dtype=torch.long), torch.arange(n // 50), 50).double().ravel()
    assert abs(z.mean().item()) < 4 / math.sqrt(n)
    assert z.var().item() == pytest.approx(1.0, abs=4 * math.sqrt(2 / n))
    assert (z ** 4).mean().item() == pytest.approx(3.0, abs=0.05)  # Gaussian kurtosis
    assert (z.abs() > 3).double().mean().item() == pytest.approx(0.0027, abs=0.0006)
    u = streams.uniform(3, streams.LEVEL, torch.zeros(n, dtype=torch.long), torch.arange(n), torch.float64)
    assert 0 < u.min() and u.max() < 1
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    assert ((counts - n / 10).abs() < 5 * math.sqrt(n / 10)).all()
    # images are independent streams: correlation of two images' noise is ~0
    a = streams.normal(3, torch.zeros(1000, dtype=torch.long), torch.arange(1000), 20).ravel()
    b = streams.normal(3, torch.ones(1000, dtype=torch.long), torch.arange(1000), 20).ravel()
    assert abs(torch.corrcoef(torch.stack([a, b]))[0, 1].item()) < 4 / math.sqrt(20_000)


def test_van_der_corput_is_stratified_at_every_power_of_two():
    image = torch.full((64,), 5, dtype=torch.long)
    u = streams.van_der_corput(1, 0, image, torch.arange(64))
    for j in (1, 2, 4, 8, 16, 32, 64):
        shifted = (u[:j] - u[0] + 0.5 / 2**32) % 1.0  # undo the image's shift
        assert sorted((shifted * j).floor().long().tolist()) == list(range(j))


@pytest.mark.parametrize("name", ["logistic", "sobol", "uniform", "adaptive", "neyman"])
def test_draws_are_a_function_of_image_and_sample_only(name):
    s = make_sampler(name)
    image = torch.tensor([0, 3, 3, 7, 0])
    sample = torch.tensor([5, 0, 9, 2, 6])
    whole = s.draw(11, image, sample, (2, 3))
    for i in range(5):
        one = s.draw(11, image[i : i + 1], sample[i : i + 1], (2, 3))
        assert torch.equal(one.eps, whole.eps[i : i + 1])
        assert torch.equal(one.logsnr, whole.logsnr[i : i + 1]) and torch.equal(one.weight, whole.weight[i : i + 1])


def _mixture():
    means = torch.zeros(3, 2, 3, 3)
    for i in range(3):
        means[i, i % 2] = 0.7 * (1 + i // 2)
    return GaussianMixture(means, 0.05, labels={"y": [0, 1, 2]})


@pytest.mark.parametrize("sampler", ["adaptive", "neyman", "sobol", LogisticSampler()])
def test_engine_numbers_do_not_depend_on_batch_size_or_chunking(sampler):
    m = _mixture()
    x, _ = m.sample(5, generator=torch.Generator().manual_seed(0))
    conds = [m.unconditional(), m.encode_prompt({"y": 0}), m.encode_prompt({"y": 1})]
    terms = [Difference(1, 0), Difference(2, 0), Difference(2, 1)]
    runs = [estimate(m, x, conds, terms, samples=37, sampler=sampler, seed=4, batch_size=bs) for bs in (1, 2, 7, 64, 10_000)]
    for r in runs[1:]:
        for ta, tb in zip(runs[0].terms, r.terms):
            np.testing.assert_allclose(ta.value, tb.value, rtol=1e-6)
            np.testing.assert_allclose(ta.stderr, tb.stderr, rtol=1e-5)
            np.testing.assert_allclose(ta.pixel_map, tb.pixel_map, rtol=1e-5, atol=1e-12)
            np.testing.assert_allclose(ta.curve.count, tb.curve.count)
        np.testing.assert_allclose(runs[0].nll, r.nll, rtol=1e-5, atol=1e-5)  # float32 model calls per batch shape
    # an image's numbers are its own: the first three images alone give the same values
    part = estimate(m, x[:3], conds, terms, samples=37, sampler=sampler, seed=4, batch_size=5)
    np.testing.assert_allclose(part.terms[0].value, runs[0].terms[0].value[:3], rtol=1e-6)


class _Counting(GaussianMixture):
    calls: list

    def eps(self, x_a, logsnr, conditions):
        self.calls.append(len(x_a) * len(conditions))
        return super().eps(x_a, logsnr, conditions)


def test_many_images_run_in_full_batches():
    """Images x conditions far beyond the batch: calls stay full (the old engine drew one sample at a time)."""
    base = _mixture()
    m = _Counting(base.means, 0.05, labels={"y": [0, 1, 2]})
    m.calls = []
    x, _ = base.sample(500, generator=torch.Generator().manual_seed(1))
    conds = [m.unconditional(), m.encode_prompt({"y": 1})]
    run = estimate(m, x, conds, [Difference(1, 0)], samples=12, sampler="sobol", batch_size=64, seed=0)
    rows = 500 * 12 * 2
    assert sum(m.calls) == rows and len(m.calls) == math.ceil(rows / 64)
    assert all(c == 64 for c in m.calls[:-1])
    assert (run.image_samples == 12).all() and run.terms[0].value.shape == (500,)
    # and the values are those of the images run in small groups
    small = estimate(base, x[:40], conds, [Difference(1, 0)], samples=12, sampler="sobol", batch_size=8, seed=0)
    np.testing.assert_allclose(small.terms[0].value, run.terms[0].value[:40], rtol=1e-6)
