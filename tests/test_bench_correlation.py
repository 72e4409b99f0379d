"""Correlations, ranks, bootstrap errors and min-max normalisation (diffpid.bench.correlation)."""

import math

import numpy as np
import pytest
from scipy import stats

from diffpid.bench.correlation import (bootstrap, image_level_correlation, minmax, pearson, pixel_level_correlation,
                                       ranks, spearman)
from diffpid.errors import ParameterError, ShapeError


def test_pearson_hand_computed():
    # x - mean = (-1, 0, 1), y - mean = (-7/3, -1/3, 8/3): r = 5 / sqrt(2 * 38/3)
    assert pearson([1, 2, 3], [2, 4, 7]) == pytest.approx(5 / math.sqrt(2 * 38 / 3))
    assert pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(pearson([1, 1, 1], [1, 2, 3]))
    assert math.isnan(pearson([1], [2]))
    with pytest.raises(ShapeError):
        pearson([1, 2], [1, 2, 3])


def test_ranks_average_ties():
    assert ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert ranks([3, 3, 3]).tolist() == [2.0, 2.0, 2.0]


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.integers(0, 5, 30).astype(float)
        y = x + rng.integers(0, 4, 30)
        assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert spearman([1, 2, 3, 4], [1, 4, 9, 16]) == pytest.approx(1.0)  # monotone, not linear


def test_bootstrap_of_a_mean_matches_the_analytic_error():
    rng = np.random.default_rng(1)
    v = rng.normal(size=400)
    est = bootstrap(lambda i: v[i].mean(), v.size, resamples=2000, seed=3)
    assert est.value == pytest.approx(v.mean())
    assert est.stderr == pytest.approx(v.std(ddof=1) / math.sqrt(v.size), rel=0.1)
    assert est.items == 400 and est.resamples == 2000
    again = bootstrap(lambda i: v[i].mean(), v.size, resamples=2000, seed=3)
    assert again.stderr == est.stderr  # seeded
    one = bootstrap(lambda i: v[i].mean(), 1)
    assert math.isnan(one.stderr)
    with pytest.raises(ParameterError):
        bootstrap(lambda i: 0.0, 0)


def test_image_and_pixel_level_correlations():
    change = [1.0, 2.0, 3.0, 4.0]
    score = [2.0, 1.0, 4.0, 3.0]
    est = image_level_correlation(change, score, resamples=200)
    assert est.value == pytest.approx(pearson(change, score)) == pytest.approx(0.6)
    assert est.stderr > 0
    assert image_level_correlation(change, score, rank=True).value == pytest.approx(0.6)
    a = np.arange(16.0).reshape(4, 4)
    maps_c = [a, a, np.ones((4, 4))]          # the last image has a constant change: left out
    maps_s = [a ** 2, -a, a]
    per = [pearson(a.ravel(), (a ** 2).ravel()), -1.0]
    assert pixel_level_correlation(maps_c, maps_s, resamples=100).value == pytest.approx(np.mean(per))
    with pytest.raises(ShapeError):
        pixel_level_correlation(maps_c, maps_s[:2])


def test_minmax():
    assert minmax([2.0, 4.0, 3.0]).tolist() == [0.0, 1.0, 0.5]
    assert minmax([5.0, 5.0]).tolist() == [0.0, 0.0]
    assert minmax([]).size == 0
