"""explain(): one shared engine run gives the same numbers as the separate estimators."""

import numpy as np
import pytest

import diffpid
from diffpid.errors import ConditionError, ParameterError
from diffpid.explanation import content_words, explain
from tiny_pipelines import pixel_folder

PROMPT = "a red cat on the big table"


@pytest.fixture(scope="module")
def model():
    return diffpid.load_model(pixel_folder())


@pytest.fixture(scope="module")
def explained(model):
    return explain(PROMPT, model=model, samples=12, sampler="sobol", seed=3, pair=("cat", "table"))


def test_content_words_skip_articles_and_particles():
    assert content_words("A red cat, on the big table of a man") == ("red", "cat", "big", "table", "man")


def test_words_and_pair(explained):
    assert explained.words == ("red", "cat", "big", "table")
    assert explained.pair == ("cat", "table")
    assert explained.image.shape == (16, 16, 3) and explained.image.dtype == np.uint8
    assert explained.seed == 3


def test_values_equal_the_separate_estimators(model, explained):
    x = model.generate(PROMPT, seed=3).x
    common = dict(samples=12, sampler="sobol", seed=3)
    for w in explained.words:
        cmi = diffpid.conditional_mutual_information(model, x[0], PROMPT, word=w, **common)
        mi = diffpid.mutual_information(model, x[0], w, "", **common)
        assert explained.cmi[w].value == pytest.approx(cmi.value, rel=1e-5)
        assert np.allclose(explained.cmi[w].pixel_map, cmi.pixel_map, rtol=1e-4, atol=1e-9)
        assert explained.mi[w].value == pytest.approx(mi.value, rel=1e-5)
    for conditional, got in ((False, explained.pid), (True, explained.cpid)):
        ref = diffpid.pid(model, x[0], "cat", "table", prompt=PROMPT, conditional=conditional, **common)
        for a, b in zip(got.atoms, ref.atoms):
            assert a.value == pytest.approx(b.value, rel=1e-5, abs=1e-9)
            assert a.stderr == pytest.approx(b.stderr, rel=1e-4, abs=1e-9)


def test_attention_comes_from_the_same_run(explained):
    assert set(explained.attention) == set(explained.words)
    for m in explained.attention.values():
        assert m.shape == (16, 16) and (m >= 0).all() and m.sum() > 0


def test_default_pair_is_the_two_words_of_highest_cmi(model):
    e = explain(PROMPT, model=model, samples=8, sampler="sobol", attention=False)
    top = sorted(e.words, key=lambda w: -e.cmi[w].value)[:2]
    assert set(e.pair) == set(top)
    assert PROMPT.index(e.pair[0]) < PROMPT.index(e.pair[1])
    assert len(e.curves) >= 8 and all(np.isfinite(c.nll) for c in e.curves)


def test_bad_input(model):
    with pytest.raises(ConditionError, match="dog"):
        explain(PROMPT, model=model, pair=("cat", "dog"), samples=2)
    with pytest.raises(ParameterError, match="two words"):
        explain(PROMPT, model=model, pair=("cat",), samples=2)
    with pytest.raises(ParameterError, match="empty"):
        explain("  ", model=model)
    with pytest.raises(ConditionError, match="content words"):
        explain("a the of", model=model)
