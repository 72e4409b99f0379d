"""Prompt intervention bench: per-item values against direct computations, summaries, items, the run."""

import json

import numpy as np
import pytest
import torch

from diffpid.attention import attention_maps
from diffpid.bench.correlation import pearson
from diffpid.bench.intervention import Intervention, InterventionCase, intervene, summarize_interventions
from diffpid.bench.intervention_run import read_cases, run_intervention, shapes_cases
from diffpid.errors import ConditionError, ParameterError
from diffpid.information import mutual_information
from diffpid.models.loading import load_model
from diffpid.sampling import ddim_generate, ddim_invert
from diffpid.settings import Settings
from tiny_pipelines import pixel_folder, shapes_path  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def pixel():
    return load_model(pixel_folder(), device="cpu")


def _x(model, seed=0):
    return torch.randn(model.data_shape, generator=torch.Generator().manual_seed(seed)).clamp(-1, 1)


def test_intervene_matches_its_parts(pixel):
    x = _x(pixel)
    case = InterventionCase(x, "a red cat on a table", "cat")
    r = intervene(pixel, case, steps=4, lowest=-3.0, settings=Settings(samples=8, seed=3, batch_size=5))
    assert r.edited == "a red on a table"
    full, edit = pixel.encode_prompt(case.caption), pixel.encode_prompt(r.edited)
    noise = ddim_invert(pixel, x, full, 4, lowest=-3.0)
    rec, out = ddim_generate(pixel, noise, full, 4, lowest=-3.0)[0], ddim_generate(pixel, noise, edit, 4, lowest=-3.0)[0]
    assert np.allclose(r.reconstruction, rec.numpy(), atol=1e-5)
    assert np.allclose(r.edited_x, out.numpy(), atol=1e-5)
    change = ((out - rec) ** 2).sum(0).double().numpy()
    assert np.allclose(r.change_map, change, rtol=1e-4, atol=1e-6) and r.change == pytest.approx(change.sum(), rel=1e-4)
    assert r.reconstruction_mse == pytest.approx(float(((rec - x) ** 2).mean()), rel=1e-4)
    info = mutual_information(pixel, x, case.caption, r.edited, samples=8, seed=3, batch_size=5)
    assert r.information == pytest.approx(info.value) and r.information_stderr == pytest.approx(info.stderr)
    assert np.allclose(r.information_map, info.pixel_map)
    assert r.standard_information == pytest.approx(info.standard_value) and np.allclose(r.standard_map, info.standard_map)
    att = attention_maps(pixel, x, ["cat"], case.caption, method="inversion", steps=4, size=(16, 16))
    assert np.allclose(r.attention_map, att["cat"]) and r.attention == pytest.approx(float(att["cat"].sum()))
    assert r.values()["edited"] == r.edited and set(r.arrays()) >= {"change_map", "information_map", "attention_map"}


def test_swap_and_errors(pixel):
    x = _x(pixel, 1)
    r = intervene(pixel, InterventionCase(x, "a red cat", "cat", "dog"), steps=2, samples=4, attention=False)
    assert r.edited == "a red dog" and r.attention is None and r.attention_map is None
    with pytest.raises(ConditionError):
        intervene(pixel, InterventionCase(x, "a red cat", "dog"), steps=2, samples=4)
    with pytest.raises(ParameterError):
        intervene(pixel, InterventionCase(x, "a red cat", "cat", " "), steps=2, samples=4)
    with pytest.raises(ConditionError):
        intervene(pixel, InterventionCase(x, "a red cat", "cat", "cat"), steps=2, samples=4)


def _synthetic(change_maps, info_maps, att_maps):
    out = []
    for c, i, a in zip(change_maps, info_maps, att_maps):
        z = np.zeros((1, 2, 2))
        out.append(Intervention("c", "w", "e", float(i.sum()), 0.1, float(c.sum()), 0.01, 0.02, float(a.sum()), c, i, a,
                                np.ones((1, 2, 2)), z, z))
    return out


def test_summary_correlations_equal_hand_computed():
    rng = np.random.default_rng(0)
    change = [rng.random((2, 2)) for _ in range(6)]
    info = [2 * c + 1 for c in change]               # pixel r = 1 in every image, totals linear: image r = 1
    att = [rng.random((2, 2)) for _ in range(6)]
    s = summarize_interventions(_synthetic(change, info, att), resamples=50)
    assert s.image_standard is None  # the synthetic results carry no standard maps
    assert s.image_information.value == pytest.approx(1.0) and s.pixel_information.value == pytest.approx(1.0)
    assert s.image_attention.value == pytest.approx(pearson([c.sum() for c in change], [a.sum() for a in att]))
    per = [pearson(c.ravel(), a.ravel()) for c, a in zip(change, att)]
    assert s.pixel_attention.value == pytest.approx(np.mean(per))
    assert s.reconstruction_mse == pytest.approx(0.01) and s.items == 6
    assert s.relative_change == pytest.approx(np.mean([c.sum() / 4 for c in change]))
    with pytest.raises(ParameterError):
        summarize_interventions([])


def test_shapes_cases_are_deterministic_and_valid():
    from diffpid.shapes.world import COLORS, SIZES

    a, b = shapes_cases(10, seed=2, mode="swap"), shapes_cases(10, seed=2, mode="swap")
    assert [(l, c.caption, c.word, c.replacement) for l, c in a] == [(l, c.caption, c.word, c.replacement) for l, c in b]
    for _, c in a:
        words = c.caption.split()
        assert words.count(c.word) == 1 and c.replacement != c.word
        for group in (tuple(SIZES), tuple(COLORS)):
            if c.word in group and not (c.word == "orange" and words.index(c.word) + 1 == len(words)):
                assert c.replacement in group
        assert tuple(c.image.shape) == (3, 32, 32)
    assert all(c.replacement is None for _, c in shapes_cases(3, seed=2))
    with pytest.raises(ParameterError):
        shapes_cases(3, mode="blur")


def test_single_object_cases_and_replicates_on_the_oracle(tmp_path):
    from diffpid.bench.intervention_run import single_object_cases
    from diffpid.bench.shapes_oracle import ShapesOracle

    cases = single_object_cases(30, seed=0, mode="swap")
    for _, c in cases:
        assert c.image is None and c.caption.split()[0] == "a" and len(c.caption.split()) == 4
        assert c.word in c.caption.split() and c.replacement not in (None, c.word, "orange")
    same = [("a", InterventionCase(None, "a big red circle", "red")), ("b", InterventionCase(None, "a big red circle", "red"))]
    s, _ = run_intervention(same, tmp_path, model=ShapesOracle(), steps=20, samples=8, resamples=20)
    assert s.items == 2  # two generated replicates, not one item twice
    assert s.reconstruction_relative < 1e-3  # the exact denoiser inverts almost exactly


def test_read_cases(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(tmp_path / "img.png")
    (tmp_path / "items.csv").write_text("image,caption,word,replacement\nimg.png,a red cat,cat,\n,a dog,dog,cat\n")
    cases = read_cases(tmp_path / "items.csv")
    assert cases[0][1].image == str(tmp_path / "img.png") and cases[0][1].replacement is None
    assert cases[1][1].image is None and cases[1][1].replacement == "cat"
    (tmp_path / "bad.csv").write_text("caption\na cat\n")
    with pytest.raises(ParameterError):
        read_cases(tmp_path / "bad.csv")


def test_run_end_to_end_and_resume(shapes_path, tmp_path):
    cases = shapes_cases(3, seed=0)
    s, table = run_intervention(cases, tmp_path, model=shapes_path, steps=3, resamples=50, settings=Settings(samples=4))
    assert s.items == 3 and len(table.rows) == 4 and s.pixel_standard is not None
    doc = json.loads((tmp_path / "intervention.json").read_text())
    assert doc["meta"]["items"] == 3 and len(doc["detail"]["items"]) == 3
    assert (tmp_path / "intervention.md").read_text().startswith("### Prompt intervention")
    stored = {f: f.stat().st_mtime_ns for f in tmp_path.glob("intervention-*/results/*.json")}
    assert len(stored) == 3
    s2, _ = run_intervention(cases, tmp_path, model=shapes_path, steps=3, samples=4, resamples=50)
    assert s2 == s and {f: f.stat().st_mtime_ns for f in stored} == stored  # read back, not recomputed
