"""DiffusionPID studies: per-case PID against diffpid.pid, summaries against hand values, cases, commands."""

import json

import numpy as np
import pytest
import torch

from diffpid.bench.correlation import minmax, spearman
from diffpid.bench.pid_cases import bias_cases, bias_strength, homonym_cases, synonym_cases
from diffpid.bench.pid_studies import PairCase, PairResult, bias_summary, group_contrast, pair_pid
from diffpid.bench.pid_studies_run import occupation_cases, read_pair_cases, run_pairs
from diffpid.bench.uniqueness import mask_mass, summarize_uniqueness, uniqueness_cases
from diffpid.cli import main
from diffpid.errors import ParameterError
from diffpid.models.loading import load_model
from diffpid.decomposition.pid import pid
from diffpid.runs.runner import item_seed
from diffpid.settings import Settings
from tiny_pipelines import pixel_folder, shapes_path  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def pixel():
    return load_model(pixel_folder(), device="cpu")


def test_pair_pid_equals_diffpid_pid(pixel):
    x = torch.randn(pixel.data_shape, generator=torch.Generator().manual_seed(0))
    for conditional in (False, True):
        case = PairCase(x, "a red cat on a table", "red", "cat", conditional=conditional)
        r = pair_pid(pixel, case, settings=Settings(samples=8, seed=5))
        ref = pid(pixel, x, "red", "cat", prompt=case.prompt, conditional=conditional, full_prompt=not conditional,
                  samples=8, seed=5)
        assert r.values["redundancy"] == pytest.approx(ref.redundancy.value)
        assert r.values["synergy"] == pytest.approx(ref.synergy.value)
        assert r.stderrs["unique_1"] == pytest.approx(ref.unique_1.stderr)
        assert r.values["mi_12"] == pytest.approx(ref.mi_12.value)
        assert r.values["per_snr_redundancy"] == pytest.approx(ref.per_snr_redundancy.value)
        s1, s2, s12 = ref.mi_1.standard_value, ref.mi_2.standard_value, ref.mi_12.standard_value
        assert r.values["standard_redundancy"] == pytest.approx(min(s1, s2))
        assert r.values["standard_synergy"] == pytest.approx(s12 - max(s1, s2))
        assert r.pixel_redundancy == pytest.approx(np.minimum(ref.mi_1.pixel_map, ref.mi_2.pixel_map).sum())
        assert r.redundant_share == pytest.approx(ref.redundancy.value / ref.mi_12.value)
        assert np.allclose(r.maps["unique_2"], ref.unique_2.pixel_map)
        assert r.conditions == tuple(ref.conditions) and r.case.image is None
    # words alone: the joint is "y1 y2"
    r = pair_pid(pixel, PairCase(x, None, "red", "cat"), samples=4)
    assert r.conditions == ("", "red", "cat", "red cat")


def test_run_pairs_passes_the_settings_on(pixel, tmp_path):
    """Every case runs with the run's settings (batch size included) and its own seed; the table records them."""
    x = torch.randn(pixel.data_shape, generator=torch.Generator().manual_seed(1))
    cases = [PairCase(x, "a red cat on a table", "red", "cat", group="a"),
             PairCase(x, "a red cat on a table", "cat", "table", conditional=True, group="b")]
    rows: list[int] = []
    eps = pixel.eps

    def counting(x_a, logsnr, conditions):
        rows.append(len(x_a) * len(conditions))
        return eps(x_a, logsnr, conditions)

    pixel.eps = counting
    try:
        settings = Settings(samples=6, batch_size=4, sampler="sobol", seed=2)
        results, stored, summary = run_pairs("t", cases, tmp_path, model=pixel, settings=settings)
    finally:
        del pixel.eps
    assert rows and max(rows) <= 4  # the batch size reached the engine (it was dropped before)
    assert summary.parameters["samples"] == 6 and summary.parameters["sampler"] == "sobol"
    for r, s, c in zip(results, stored, cases):
        seed = item_seed(2, s.id) % 2**31
        ref = pair_pid(pixel, c, samples=6, sampler="sobol", seed=seed, batch_size=4)
        assert r.values["synergy"] == pytest.approx(ref.values["synergy"], rel=1e-6)
        assert r.stderrs["redundancy"] == pytest.approx(ref.stderrs["redundancy"], rel=1e-6)


def test_planted_bias_strengths_and_cases():
    assert bias_strength("red", "triangle") == pytest.approx(0.9)
    assert bias_strength("blue", "triangle") == pytest.approx(0.1 / 6)
    assert bias_strength("red", "circle") == pytest.approx(1 / 7)
    cases = bias_cases(images=2, seed=1)
    assert len(cases) == 6 * 4 * 2 and not any(c.word_1 == "orange" for c in cases)  # alone, "orange" is the fruit
    assert sum(c.strength for c in cases if c.key.endswith("triangle")) == pytest.approx(2 * (1.0 - 0.1 / 6))
    c = next(c for c in cases if c.key == "red triangle")
    assert (c.prompt, c.word_1, c.word_2) == ("a red triangle", "red", "triangle") and tuple(c.image.shape) == (3, 32, 32)
    assert all(c.image is None for c in bias_cases(1, generated=True))


def test_bias_reference_closed_form():
    from diffpid.bench.pid_cases import bias_reference

    ref = bias_reference(draws=40_000, seed=1)
    assert len(ref) == 28
    # uniform colour prior: i(shape) = log 1 / (P(one object) P(shape)) = log(1 / (0.4 * 0.25)) = log 10 < i(colour)
    for k in ("blue circle", "green square", "white diamond"):
        assert ref[k] == pytest.approx(np.log(10), abs=0.12)
    # the shape word of a non-red triangle contradicts its colour (prior 1/60): the lowest redundancy
    low = [ref[f"{c} triangle"] for c in ("yellow", "green", "blue", "pink", "white")]
    assert max(low) < 0.7 < ref["red triangle"] < ref["blue circle"]


def _result(key, group, strength, **values):
    base = dict(redundancy=0.0, unique_1=0.0, unique_2=0.0, synergy=0.0, mi_1=1.0, mi_2=1.0, mi_12=2.0,
                per_snr_redundancy=0.0, standard_redundancy=0.0)
    base.update(values)
    return PairResult(PairCase(None, None, "a", "b", group=group, key=key, strength=strength), base,
                      {k: 0.0 for k in base}, values.get("pix", 0.0), {}, ("", "a", "b", "a b"))


def test_bias_summary_hand_computed():
    red = {"p1": [1.0, 3.0], "p2": [5.0], "p3": [4.0, 4.0], "p4": [0.0]}   # pair means 2, 5, 4, 0
    strength = {"p1": 0.1, "p2": 0.9, "p3": 0.5, "p4": 0.2}
    rs = [_result(k, "bias", strength[k], redundancy=v, per_snr_redundancy=-v) for k, vs in red.items() for v in vs]
    s = bias_summary(rs, resamples=200)
    assert s.keys == ("p1", "p2", "p3", "p4") and s.top == "p2"
    assert s.redundancy.tolist() == [2.0, 5.0, 4.0, 0.0]
    assert s.normalized.tolist() == pytest.approx([0.4, 1.0, 0.8, 0.0])
    want = spearman([2, 5, 4, 0], [0.1, 0.9, 0.5, 0.2])
    assert s.spearman["redundancy"].value == pytest.approx(want) == pytest.approx(0.8)
    assert s.spearman["per_snr_redundancy"].value == pytest.approx(-0.8)
    assert s.means["per_snr_redundancy"].tolist() == [-2.0, -5.0, -4.0, 0.0]
    assert np.isfinite(s.spearman["redundancy"].stderr)
    assert bias_summary([_result("a", "bias", None, redundancy=1.0)]).spearman == {}
    assert minmax(s.redundancy).tolist() == s.normalized.tolist()


def test_group_contrast_hand_computed():
    rs = [_result("s", "synonym", None, redundancy=v) for v in (1.0, 3.0)]
    rs += [_result("u", "unrelated", None, redundancy=v) for v in (0.0, 1.0, 2.0)]
    c = group_contrast(rs, "redundancy", "synonym", "unrelated", resamples=300)
    groups = {g: (m, se, n) for g, m, se, n in c.groups}
    assert groups["synonym"] == pytest.approx((2.0, 1.0, 2)) and groups["unrelated"] == pytest.approx((1.0, 1 / 3 ** 0.5, 3))
    assert c.difference.value == pytest.approx(1.0) and 0.5 < c.difference.stderr < 1.6
    nan = group_contrast(rs + [_result("s", "synonym", None, redundancy=1.0, mi_12=0.0)], "redundant_share",
                         "synonym", "unrelated", resamples=10)
    assert dict((g, n) for g, _, _, n in nan.groups)["synonym"] == 2  # the undefined share is left out
    frac = group_contrast([_result("s", "synonym", None, redundancy=0.5, mi_1=2.0, mi_2=0.5)], "redundant_fraction",
                          "synonym", "synonym", resamples=10)
    assert frac.groups[0][1] == pytest.approx(0.25)
    share = group_contrast(rs, "redundant_share", "synonym", "unrelated", resamples=10)
    assert dict((g, m) for g, m, _, _ in share.groups)["synonym"] == pytest.approx(1.0)  # mean of 1/2 and 3/2
    with pytest.raises(ParameterError):
        group_contrast(rs, "redundancy", "synonym", "homonym")
    with pytest.raises(ParameterError):
        group_contrast(rs, "loudness", "synonym", "unrelated")


def test_synonym_and_homonym_cases_use_true_words():
    cases = synonym_cases(images=3, seed=0)
    assert len(cases) == 15 and sum(c.group == "synonym" for c in cases) == 3
    for c in cases:
        assert c.prompt is None and (c.word_2 in ("square", "box"))
    assert {c.word_2 for c in homonym_cases()} == {"circle"} and len(homonym_cases()) == 6 * 4
    h = homonym_cases(images=1, controls=("red",), shapes=("circle", "square"))
    assert [(c.word_1, c.word_2, c.group) for c in h] == [("orange", "circle", "homonym"), ("red", "circle", "control"),
                                                          ("orange", "square", "homonym"), ("red", "square", "control")]
    with pytest.raises(ParameterError):
        homonym_cases(controls=("orange",))


def test_mask_mass_and_uniqueness_summary():
    m = np.array([[1.0, 2.0], [3.0, -4.0]])
    own = np.array([[True, False], [False, False]])
    other = np.array([[False, True], [True, False]])
    mm = mask_mass(m, own, other)
    assert (mm.own, mm.other, mm.own_area, mm.other_area) == pytest.approx((1 / 6, 5 / 6, 0.25, 0.5))
    assert np.isnan(mask_mass(np.zeros((2, 2)), own, other).own)
    from diffpid.bench.uniqueness import dilate

    g = np.zeros((5, 5), bool)
    g[2, 2] = True
    assert dilate(g).sum() == 9 and dilate(g, 2).all()
    a_, b_ = np.zeros((1, 6), bool), np.zeros((1, 6), bool)
    a_[0, 0], b_[0, 2] = True, True
    line = np.arange(6.0)[None]
    grown = mask_mass(line, a_, b_, grow=1)   # grown: own 0-1, other 1-3; pixel 1 is claimed by both: neither
    assert (grown.own, grown.other) == pytest.approx((0.0, (2 + 3) / 15))
    s = summarize_uniqueness([mm, mask_mass(m, other, own), mask_mass(np.zeros((2, 2)), own, other)])
    assert s.maps == 2 and s.hit_rate == pytest.approx(0.5) and s.own == pytest.approx(0.5)
    cases = uniqueness_cases(4, seed=0)
    for c in cases:
        assert c.pair.conditional and c.pair.word_1 != c.pair.word_2
        assert c.mask_1.any() and c.mask_2.any() and not (c.mask_1 & c.mask_2).all()


def test_case_files(tmp_path):
    (tmp_path / "c.csv").write_text("prompt,word_1,word_2,strength,group,conditional\n"
                                    "a female nurse,female,nurse,0.9,,\na bed and a mattress,bed,mattress,,synonym,yes\n")
    a, b = read_pair_cases(tmp_path / "c.csv", group="bias")
    assert (a.strength, a.group, a.conditional, a.image) == (0.9, "bias", False, None)
    assert (b.strength, b.group, b.conditional, b.key) == (None, "synonym", True, "bed mattress")
    (tmp_path / "jobs.txt").write_text("# occupations\nnurse\nfirefighter\n")
    occ = occupation_cases(tmp_path / "jobs.txt")
    assert [c.prompt for c in occ] == ["a photo of a male nurse", "a photo of a female nurse",
                                       "a photo of a male firefighter", "a photo of a female firefighter"]
    assert occ[1].word_1 == "female" and occ[1].word_2 == "nurse" and occ[1].image is None
    with pytest.raises(ParameterError):
        occupation_cases(tmp_path / "jobs.txt", template="a {occupation}")


@pytest.mark.parametrize("study, extra", [
    # synonyms: with 2 samples every case's share R / m12 can be undefined (m12 <= 0) on a random model
    ("bias", ["--images", "1"]), ("synonyms", ["--images", "1", "--samples", "8"]),
    ("homonyms", ["--images", "1", "--shapes", "circle", "--controls", "red"]),
    ("uniqueness", ["--n", "2", "--figure-cases", "2"]),
])
def test_commands_end_to_end(shapes_path, tmp_path, study, extra, capsys):
    args = ["bench", study, "--model", shapes_path, "--samples", "2", "--resamples", "20", "--no-progress",
            "--out", str(tmp_path), *extra]
    assert main(args) == 0
    doc = json.loads((tmp_path / f"{study}-shapes.json").read_text())
    samples = int(extra[extra.index("--samples") + 1]) if "--samples" in extra else 2
    assert doc["meta"]["samples"] == samples and doc["rows"] and doc["detail"]["cases"]
    assert "### " in capsys.readouterr().out
    if study == "uniqueness":
        assert (tmp_path / "uniqueness-shapes.png").read_bytes().startswith(b"\x89PNG")
    if study == "bias":
        assert len(doc["rows"]) == 24 and "Spearman" in " ".join(doc["notes"])
        assert doc["rows"][0]["perfect model, standard"] is not None


def test_intervention_command(shapes_path, tmp_path):
    args = ["bench", "intervention", "--model", shapes_path, "--n", "2", "--steps", "2", "--samples", "2",
            "--resamples", "20", "--no-progress", "--out", str(tmp_path)]
    assert main(args) == 0
    doc = json.loads((tmp_path / "intervention-shapes.json").read_text())
    assert doc["meta"]["items"] == 2 and doc["meta"]["mode"] == "omit"
