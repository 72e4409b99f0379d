"""The engine's Combination term: values, correlated standard errors, validation."""

import math

import numpy as np
import pytest
import torch

from diffpid.errors import ParameterError
from diffpid.engine.estimate import Combination, Difference, Minimum, estimate
from diffpid.models.mixture import GaussianMixture


def _model() -> GaussianMixture:
    g = torch.Generator().manual_seed(3)
    means = 0.8 * torch.randn(4, 2, 3, 3, generator=g)
    return GaussianMixture(means, 0.02, labels={"y1": [0, 0, 1, 1], "y2": [0, 1, 0, 1]})


def test_combination_value_and_stderr_from_per_sample_contributions():
    model = _model()
    x, _ = model.sample(2, {"y1": 1, "y2": 0}, generator=torch.Generator().manual_seed(0))
    conds = [model.encode_prompt(c) for c in ({}, {"y1": 1}, {"y2": 0}, {"y1": 1, "y2": 0})]
    d1, d2, d12 = Difference(1, 0), Difference(2, 0), Difference(3, 0)
    mn = Minimum(d1, d2)
    syn = Combination((d12, d1, d2, mn), (1.0, -1.0, -1.0, 1.0))
    diff = Combination((d1, d2), (1.0, -1.0))
    rows = []  # per-sample contributions, recomputed here from the predictions

    def grab(x_a, a, w, eps, pred, image):
        p = pred.double()  # (m, 4, 2, 3, 3): rows of any images, in any order
        sq = lambda i, j: ((p[:, i] - p[:, j]) ** 2).sum(1)  # (m, 3, 3)
        f1, f2, f12 = sq(1, 0), sq(2, 0), sq(3, 0)
        fs = f12 - f1 - f2 + torch.minimum(f1, f2)
        h = 0.5 * w.double()[:, None, None]
        rows.append((image, torch.stack([h * (f1 - f2), h * fs], 0)))  # (2, m, 3, 3)

    n = 100
    run = estimate(model, x, conds, [d1, d2, d12, mn, diff, syn], samples=n, batch_size=16, seed=1, on_batch=grab)
    owner = torch.cat([r[0] for r in rows])
    flat = torch.cat([r[1] for r in rows], 1)
    per = torch.stack([flat[:, owner == i] for i in range(2)], 2)  # (2, n, b, 3, 3)
    assert per.shape[1] == n
    for idx, term in ((0, run.terms[4]), (1, run.terms[5])):
        tot = per[idx].flatten(2).sum(-1)  # (n, b)
        np.testing.assert_allclose(term.value, tot.mean(0).numpy(), rtol=1e-6, atol=1e-7)  # float32 integrands
        np.testing.assert_allclose(term.stderr, (tot.std(0) / math.sqrt(n)).numpy(), rtol=1e-5)
        np.testing.assert_allclose(term.pixel_stderr, (per[idx].std(0) / math.sqrt(n)).numpy(), rtol=1e-5, atol=1e-9)
    v = [t.value for t in run.terms]
    np.testing.assert_allclose(v[4], v[0] - v[1], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v[5], v[2] - v[0] - v[1] + v[3], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(run.terms[5].pixel_map, run.terms[2].pixel_map - run.terms[0].pixel_map
                               - run.terms[1].pixel_map + run.terms[3].pixel_map, atol=1e-7)
    # common random numbers correlate the terms: the root-sum-square of their errors is far too large
    rss = np.sqrt(sum(run.terms[i].stderr ** 2 for i in range(4)))
    assert np.all(run.terms[5].stderr < 0.6 * rss)
    # standard estimator: defined for a combination of differences only
    np.testing.assert_allclose(run.terms[4].standard_value, run.terms[0].standard_value - run.terms[1].standard_value,
                               rtol=1e-6, atol=1e-7)
    assert np.isnan(run.terms[5].standard_value).all()


def test_combination_validation():
    model = _model()
    x = model.means[0].float()
    conds = [model.unconditional(), model.encode_prompt({"y1": 0})]
    bad = [
        Combination((), ()),
        Combination((Difference(1, 0),), (1.0, 2.0)),
        Combination((Difference(1, 0),), (float("nan"),)),
        Combination((Difference(2, 0),), (1.0,)),
        Combination((Combination((Difference(1, 0),), (1.0,)),), (1.0,)),
    ]
    for t in bad:
        with pytest.raises(ParameterError):
            estimate(model, x, conds, [t], samples=2)
