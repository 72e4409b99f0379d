"""Attention maps of diffpid models: engine noise levels, inversion, generation, SDXL, pixel space."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_pipelines import pixel_path, sd_path, sdxl_path  # noqa: F401 - fixtures

import diffpid
from diffpid.attention import (AttentionCapture, attention_and_information, attention_maps)
from diffpid.errors import ParameterError, ShapeError
from diffpid.models.mixture import GaussianMixture
from diffpid.prompts import token_span
from diffpid.sampling import ddim_invert

PROMPT = "a red cat on the table"


@pytest.fixture(scope="module")
def sd(sd_path):
    return diffpid.load_model(sd_path)


def _x(model, b=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*((b,) if b else ()), *model.data_shape, generator=g)


def test_noise_levels_one_map_per_draw_and_images_kept_apart(sd):
    x0, x1 = _x(sd, seed=1), _x(sd, seed=2)
    kw = dict(samples=6, sampler="sobol", seed=3, per_step=True)
    single0 = attention_maps(sd, x0, ["cat", "red"], PROMPT, **kw)
    single1 = attention_maps(sd, x1, ["cat", "red"], PROMPT, **kw)
    assert single0.maps.shape == (2, *sd.resolution) and single0.steps == 6
    assert single0.tokens == (token_span(PROMPT, "cat", sd), token_span(PROMPT, "red", sd))
    assert np.all((single0.levels >= -5) & (single0.levels <= 7)) and len(set(single0.levels)) == 6
    assert single0.step_maps.shape == (6, 2, *sd.resolution) and (single0.maps >= 0).all()
    # batch image i gets the i-th stream of the generator, as a single run does for image 0
    a = attention_maps(sd, torch.stack([x0, x1]), ["cat", "red"], PROMPT, **kw)
    b = attention_maps(sd, torch.stack([x1, x0]), ["cat", "red"], PROMPT, **kw)
    assert np.allclose(a[0].maps, single0.maps, atol=1e-5) and np.allclose(b[0].maps, single1.maps, atol=1e-5)
    assert not np.allclose(a[1].maps, single1.maps, atol=1e-4)  # another stream: other noise levels
    assert np.allclose(a[0].levels, single0.levels)


def test_attention_and_information_share_one_engine_run(sd):
    x = _x(sd, seed=4)
    kw = dict(samples=6, sampler="sobol", seed=5)
    both = attention_and_information(sd, x, PROMPT, ["cat", "table"], **kw)
    alone = attention_maps(sd, x, ["cat", "table"], PROMPT, **kw)
    # the prompt's rows sit among three conditions' rows, yet give the same maps as alone
    assert np.allclose(both.attention.maps, alone.maps, atol=1e-5)
    assert np.allclose(both.attention.levels, alone.levels)
    # conditions split over several UNet calls per input (k = 3 > batch_size = 2): same rows found
    split = attention_and_information(sd, x, PROMPT, ["cat", "table"], batch_size=2, **kw)
    assert np.allclose(split.attention.maps, both.attention.maps, atol=1e-6) and split.attention.steps == 6
    for word, info in zip(["cat", "table"], both.information):
        ref = diffpid.conditional_mutual_information(sd, x, PROMPT, word=word, **kw)
        assert info.value == pytest.approx(ref.value, rel=1e-4, abs=1e-7)
        assert np.allclose(info.pixel_map, ref.pixel_map, rtol=1e-4, atol=1e-8)


def test_generation_matches_a_capture_around_the_pipeline(sd):
    got = attention_maps(sd, PROMPT, ["cat"], steps=2, seed=7, per_step=True)
    assert got.steps == 2 and got.generated is not None and got.generated.seed == 7
    assert got.levels[0] > got.levels[1]  # UNet timesteps, high noise first
    tok = sd.tokenizers[0]
    with AttentionCapture(sd.unet, PROMPT, tokenizer=tok, layout=["", PROMPT]) as cap:
        sd.generate(PROMPT, seed=7, steps=2)
    ref = cap.maps(["cat"], size=sd.resolution)
    assert np.allclose(got.maps, ref.maps, atol=1e-6)


def test_inversion_steps_and_the_exact_flow_of_a_gaussian():
    means = torch.zeros(1, 2, 4, 4)
    model = GaussianMixture(means, variances=1.0)
    x = torch.randn(3, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    # data N(0, I), eps = sqrt(sig(-a)) x_a: the flow does not move x, and each DDIM step from
    # a to a' multiplies x by sqrt(sig(a) sig(a')) + sqrt(sig(-a) sig(-a')) = cos(theta' - theta)
    for steps in (10, 400):
        out = ddim_invert(model, x, model.unconditional(), steps=steps)
        s = torch.sigmoid(torch.linspace(12.0, -12.0, steps + 1, dtype=torch.float64))
        factor = ((s[1:] * s[:-1]).sqrt() + ((1 - s[1:]) * (1 - s[:-1])).sqrt()).prod().item()
        assert torch.allclose(out, factor * x, rtol=1e-4, atol=1e-6)
    assert 0.99 < factor < 1
    with pytest.raises(ParameterError):
        attention_maps(model, x[0], ["w"], "w")  # no UNet


def test_inversion_maps(sd):
    m = attention_maps(sd, _x(sd, seed=8), ["cat"], PROMPT, method="inversion", steps=4, per_layer=True)
    assert m.steps == 4 and np.all(np.diff(m.levels) < 0)
    assert m.layer_maps.shape == (len(m.layers), 1, *sd.resolution)
    # a batch is inverted in one trajectory; rows of the prompt in one UNet call are its images
    x0, x1 = _x(sd, seed=8), _x(sd, seed=11)
    pair = attention_maps(sd, torch.stack([x0, x1]), ["cat"], PROMPT, method="inversion", steps=4)
    one = attention_maps(sd, x1, ["cat"], PROMPT, method="inversion", steps=4)
    assert np.allclose(pair[0].maps, m.maps, atol=1e-5) and np.allclose(pair[1].maps, one.maps, atol=1e-5)


def test_sdxl_and_pixel_space(sdxl_path, pixel_path):
    for path, prompt, word in ((sdxl_path, PROMPT, "cat"), (pixel_path, "a red cat", "cat")):
        model = diffpid.load_model(path)
        m = attention_maps(model, _x(model, seed=9), [word], prompt, samples=3, sampler="sobol", per_head=True)
        assert m.maps.shape == (1, *model.resolution) and np.isfinite(m.maps).all() and m.maps.max() > 0
        assert m.tokens == (token_span(prompt, word, model),)
        assert len(m.head_maps) == len(m.layers) and m.head_maps[0].shape[1:] == (1, *model.resolution)
    # a component folder samples with its own DDIM loop, batch [prompt, negative]: rows found by embedding
    gen = attention_maps(model, "a red cat", ["cat"], steps=3, seed=1)
    with AttentionCapture(model.unet, "a red cat", tokenizer=model.tokenizers[0], layout=["a red cat", ""]) as cap:
        model.generate("a red cat", seed=1, steps=3)
    assert gen.steps == 3 and np.allclose(gen.maps, cap.maps(["cat"], size=model.resolution).maps, atol=1e-6)


def test_eps_that_breaks_the_row_layout_is_caught(sd):
    class Twice(type(sd)):
        def eps(self, x_a, logsnr, conditions):
            super().eps(x_a, logsnr, conditions)
            return super().eps(x_a, logsnr, conditions)

    twice = Twice.__new__(Twice)
    twice.__dict__.update(sd.__dict__)
    with pytest.raises(ShapeError):
        attention_maps(twice, _x(sd), ["cat"], PROMPT, samples=2, sampler="sobol")
    assert all(type(p).__name__.startswith("Attn") for p in sd.unet.attn_processors.values())


def test_sdxl_generation_rows_and_bfloat16(sdxl_path, sd_path):
    sdxl = diffpid.load_model(sdxl_path)
    got = attention_maps(sdxl, "a red cat", ["cat", "red"], steps=2, seed=0)
    with AttentionCapture(sdxl.unet, "a red cat", tokenizer=sdxl.tokenizers[0], layout=["", "a red cat"]) as cap:
        sdxl.generate("a red cat", seed=0, steps=2)
    assert got.steps == 2 and np.allclose(cap.maps(["cat", "red"], size=sdxl.resolution).maps, got.maps, atol=1e-6)
    x = _x(sdxl, seed=10)
    kw = dict(samples=4, sampler="sobol")
    half = attention_maps(diffpid.load_model(sd_path, torch_dtype=torch.bfloat16), x, ["cat"], "a red cat", **kw)
    full = attention_maps(diffpid.load_model(sd_path), x, ["cat"], "a red cat", **kw)
    assert np.allclose(half.maps, full.maps, rtol=0.05, atol=1e-3 * full.maps.max())
