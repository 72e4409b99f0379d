"""The shapes-world oracle: caption semantics, the marginal, and the denoiser against GaussianMixture."""

import math
import random
from collections import Counter

import pytest
import torch

from diffpid.bench.shapes_oracle import VARIANCE, ShapesOracle
from diffpid.errors import ConditionError
from diffpid.information import mutual_information
from diffpid.models.mixture import GaussianMixture


@pytest.fixture(scope="module")
def oracle():
    return ShapesOracle()


def _p(o, w, **fixed):
    return sum(float(w[k]) for k, (c, s, z) in enumerate(o.components)
               if all({"color": c, "shape": s, "size": z}[f] == v for f, v in fixed.items()))


def test_caption_semantics(oracle):
    o = oracle
    tri = o.weights("a triangle")
    assert _p(o, tri, color="red") == pytest.approx(0.9) and _p(o, tri, color="blue") == pytest.approx(0.1 / 6)
    red = o.weights("red")
    assert all(_p(o, red, shape=s) == pytest.approx(0.25) for s in ("circle", "square", "triangle", "diamond"))
    fruit = o.weights("a big orange")
    assert _p(o, fruit, shape="circle", size="big") == pytest.approx(1.0) and _p(o, fruit, color="pink") == pytest.approx(1 / 7)
    assert _p(o, o.weights("orange circle"), color="orange", shape="circle") == pytest.approx(1.0)
    assert torch.allclose(o.weights("square box"), o.weights("box")) and torch.allclose(o.weights("box"), o.weights("square"))
    with pytest.raises(ConditionError):
        o.weights("square circle")
    with pytest.raises(ConditionError):
        o.weights("red circle left of a box")


def test_marginal_matches_the_world_caption_process(oracle):
    from diffpid.shapes.captions import sample_plan

    rng = random.Random(0)
    counts, n = Counter(), 0
    for _ in range(60_000):
        plan = sample_plan(rng, training=True)
        if len(plan.objects) == 1:
            o = plan.objects[0]
            counts[(o.color, o.shape)] += 1
            n += 1
    w = oracle.weights("")
    assert float(w.sum()) == pytest.approx(1.0)
    for (c, s), k in counts.items():
        p = _p(oracle, w, color=c, shape=s)
        assert abs(p - k / n) < 4 * math.sqrt(p * (1 - p) / n) + 1e-3, (c, s)


def test_denoiser_equals_the_gaussian_mixture_with_the_caption_weights(oracle):
    w = oracle.weights("a triangle")
    keep = (w > 0).long().tolist()  # the mixture's labels exclude the zero-weight images exactly
    ref = GaussianMixture(oracle.means, VARIANCE, weights=w + (w == 0), labels={"keep": keep})
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, 32, 32, generator=g)
    a = torch.tensor([-4.0, 0.0, 3.0])
    mine = oracle.eps(x, a, [oracle.encode_prompt("a triangle"), oracle.encode_prompt("")])
    theirs = ref.eps(x, a, [ref.encode_prompt({"keep": 1})])[:, 0]
    assert torch.allclose(mine[:, 0], theirs, atol=1e-4)
    marginal = GaussianMixture(oracle.means, VARIANCE, weights=oracle.weights(""))
    assert torch.allclose(mine[:, 1], marginal.eps(x, a, [marginal.unconditional()])[:, 0], atol=1e-4)


def test_standard_information_is_the_log_weight_ratio(oracle):
    g = oracle.generate("a red triangle", seed=3)
    k = int(torch.argmin(((oracle.means - g.x[0].double()) ** 2).sum((1, 2, 3))))
    assert oracle.components[k][:2] == ("red", "triangle")
    exact = math.log(float(oracle.weights("triangle")[k] / oracle.weights("")[k]))
    mi = mutual_information(oracle, g.x[0], "triangle", samples=400, seed=0)
    assert abs(mi.standard_value - exact) < 4 * mi.standard_stderr + 0.05
