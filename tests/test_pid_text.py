"""PID and CPID with words of a prompt: the conditions built, and a tiny Stable Diffusion end to end."""

import numpy as np
import pytest
import torch

import diffpid
from diffpid.errors import ConditionError
from diffpid.models.mixture import GaussianMixture
from diffpid.prompts import prompt_words
from tiny_pipelines import sd_path  # noqa: F401 - fixture


class WordMixture(GaussianMixture):
    """A mixture whose prompts are text: every known word present in the prompt sets its label to 1."""

    def encode_prompt(self, prompt):
        if isinstance(prompt, str):
            words = {w.lower() for w in prompt_words(prompt)}
            prompt = {name: 1 for name in self.labels if name in words}
        return super().encode_prompt(prompt)


def word_world():
    g = torch.Generator().manual_seed(4)
    combos = [(r, c, d) for r in (0, 1) for c in (0, 1) for d in (0, 1)]
    means = 0.5 * torch.randn(len(combos), 2, 3, 3, generator=g)
    labels = {n: [k[i] for k in combos] for i, n in enumerate(("red", "cat", "dog"))}
    return WordMixture(means, 0.05, labels=labels), labels


def test_text_cpid_equals_the_label_cpid():
    model, _ = word_world()
    x, _ = model.sample(2, {"red": 1, "cat": 1, "dog": 1}, generator=torch.Generator().manual_seed(0))
    kw = dict(samples=32, batch_size=1024, seed=11)
    text = diffpid.pid(model, x, "cat", "dog", prompt="a red cat and a dog", conditional=True, **kw)
    assert text.conditions == ("a red and a", "a red cat and a", "a red and a dog", "a red cat and a dog")
    assert text.context == "a red and a" and text.source_1 == "cat" and text.source_2 == "dog"
    labels = diffpid.pid(model, x, {"cat": 1}, {"dog": 1}, context={"red": 1}, **kw)
    for a, b in zip(text.atoms + (text.mi_12,), labels.atoms + (labels.mi_12,)):
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.pixel_map, b.pixel_map)
        np.testing.assert_array_equal(a.stderr, b.stderr)


def test_text_pid_prompts():
    model, _ = word_world()
    x = model.means[7].float()
    r = diffpid.pid(model, x, "dog", "cat", prompt="A red Cat and a dog", samples=4)
    assert r.conditions == ("", "dog", "Cat", "Cat dog") and r.source_2 == "Cat" and r.context is None
    r = diffpid.pid(model, x, "dog", "cat", prompt="A red Cat and a dog", full_prompt=True, samples=4)
    assert r.conditions[3] == "A red Cat and a dog"
    r = diffpid.pid(model, x, "cat", "dog", samples=4)
    assert r.conditions == ("", "cat", "dog", "cat dog")
    with pytest.raises(ConditionError):
        diffpid.pid(model, x, "cat", "bird", prompt="a red cat and a dog", conditional=True, samples=4)
    with pytest.raises(ConditionError):
        diffpid.pid(model, x, "red cat", "cat", prompt="a red cat and a dog", samples=4)


def test_cpid_on_a_tiny_stable_diffusion(sd_path):  # noqa: F811
    sd = diffpid.load_model(sd_path)
    x = sd.encode_image(np.full((32, 32, 3), 120, np.uint8))
    prompt = "a red cat on the table"
    r = diffpid.pid(sd, x[0], "cat", "red", prompt=prompt, conditional=True, samples=8, sampler="sobol", seed=0)
    assert r.conditions == ("a on the table", "a cat on the table", "a red on the table", prompt)
    assert r.synergy.pixel_map.shape == (16, 16) and isinstance(r.synergy.value, float)
    R, U1, U2, S = (a.pixel_map for a in r.atoms)
    np.testing.assert_allclose(R + U1 + U2 + S, r.mi_12.pixel_map, atol=1e-12)
    np.testing.assert_allclose(R + U1, r.mi_1.pixel_map, atol=1e-12)
    assert np.isfinite([a.value for a in r.atoms]).all() and r.mi_12.value > 0
    # the same draws as a CMI run of the full prompt against the context (Sobol points do not depend on chunking)
    cmi = diffpid.conditional_mutual_information(sd, x[0], prompt, "a on the table", samples=8, sampler="sobol", seed=0)
    assert r.mi_12.value == pytest.approx(cmi.value, rel=1e-4)
