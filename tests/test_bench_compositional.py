"""Compositional bench: caption ranking on the exact oracle, common random numbers, shapes sets, runs, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench_models import colour_shape_mixture
from diffpid.bench.compositional import (
    CompositionalCase, score_captions, shapes_attribute_items, shapes_relation_items,
)
from diffpid.bench.compositional_run import run_compositional
from diffpid.errors import ParameterError
from diffpid.information import mutual_information
from diffpid.runs.runner import Item, item_id
from diffpid.settings import Settings

CAPTIONS = ["a red circle", "a red square", "a blue circle", "a blue square"]


def test_ranking_on_the_oracle_standard_wins_orthogonal_prefers_contradictions():
    """On the exact oracle, i(x; caption) ranks the true caption first; i_o does not.

    i_o(x; y) = 1/2 Int E||e(x_a|y) - e(x_a)||^2 da equals the pointwise MI only in
    expectation over p(x, y): for an image that contradicts y, the denoiser under y is pulled
    towards another component, far from the unconditional one, so i_o is large while the
    log-likelihood ratio i is very negative. The bench reports both scores.
    """
    model, means = colour_shape_mixture()
    g = torch.Generator().manual_seed(1)
    for comp, caption in enumerate(CAPTIONS):  # component k has (colour, shape) = (k // 2, k % 2)
        x = means[comp].float() + 0.05 ** 0.5 * torch.randn(means[comp].shape, generator=g)
        wrong = [c for c in CAPTIONS if c != caption]
        r = score_captions(model, x, [wrong[0], caption, wrong[1], wrong[2]], correct=1, samples=256, seed=comp)
        assert r.standard_predicted == 1 and r.standard_is_correct
        # the true caption: i_o ~ i ~ log 4 (the caption picks one of four components); 0.35 allows for
        # the information outside the sampler's log-SNR range
        assert abs(r.scores[1] - np.log(4)) < 3 * r.stderr[1] + 0.35
        assert abs(r.standard[1] - np.log(4)) < 3 * r.standard_stderr[1] + 0.35
        assert (np.delete(r.standard, 1) < -10).all()  # contradicting captions: log p(x|y)/p(x) << 0
        assert (np.delete(r.scores, 1) > 10).all() and not r.is_correct  # ... but i_o >> 0
        # a partial caption (colour only) carries about log 2, less than the full caption
        p = score_captions(model, x, [caption, f"a {caption.split()[1]} thing"], samples=64, seed=comp)
        assert p.predicted == 0 and p.standard_predicted == 0 and 0 < p.scores[1] < p.scores[0]


def test_candidates_share_one_engine_run():
    model, means = colour_shape_mixture()
    x = means[2].float()
    # the draws do not depend on the number of conditions or the chunking (batch_size // conditions)
    settings = Settings(samples=24, sampler="uniform", seed=5)
    r = score_captions(model, x, CAPTIONS + ["a red circle"], settings=settings)
    for k, c in enumerate(CAPTIONS):  # each score equals MI against "" with the same draws
        alone = mutual_information(model, x, c, "", settings=settings.replace(batch_size=3))
        assert r.scores[k] == pytest.approx(alone.value, rel=1e-9)
        assert r.stderr[k] == pytest.approx(alone.stderr, rel=1e-9)
        assert r.standard[k] == pytest.approx(alone.standard_value, rel=1e-9)
    assert r.scores[4] == r.scores[0]  # duplicated candidate: one condition, identical score
    # margins of the correct caption (index 0) with paired errors; for the standard estimator the margin over
    # caption j is the information of the correct caption against caption j, sample by sample
    assert r.margins == pytest.approx(r.scores[0] - r.scores, rel=1e-6, abs=1e-6)
    assert r.standard_margins == pytest.approx(r.standard[0] - r.standard, rel=1e-6, abs=1e-6)
    assert r.margin_stderr[0] == 0 and r.margin_stderr[4] == pytest.approx(0, abs=1e-9)
    for j in (1, 2, 3):
        pair = mutual_information(model, x, CAPTIONS[0], CAPTIONS[j], samples=24, sampler="uniform", seed=5)
        assert r.standard_margins[j] == pytest.approx(pair.standard_value, rel=1e-6)
        assert r.standard_margin_stderr[j] == pytest.approx(pair.standard_stderr, rel=1e-6)
    with pytest.raises(ParameterError):
        score_captions(model, x, ["a red circle"], samples=4)
    with pytest.raises(ParameterError):
        score_captions(model, x, CAPTIONS, correct=4, samples=4)
    with pytest.raises(ParameterError):
        score_captions(model, x, ["a red circle", " "], samples=4)


def test_shapes_swap_items():
    a = shapes_attribute_items(6, seed=0)
    r = shapes_relation_items(6, seed=0)
    assert len(a) == 6 and len(r) == 6
    assert [i.id for i in shapes_attribute_items(3, seed=0)] == [i.id for i in a[:3]]
    for it in a:
        c = it.data
        assert len(c.captions) == 2 and c.correct == 0 and c.captions[0] != c.captions[1]
        assert sorted(c.captions[0].split()) == sorted(c.captions[1].split())  # same words, other binding
        assert c.group in ("color", "size", "shape") and c.image.shape == (32, 32, 3)
    for it in r:
        c = it.data
        assert len(c.captions) == 3 and len(set(c.captions)) == 3 and c.correct == 0
        assert c.group in ("left", "right", "above", "below") and f" {c.group} " in f" {c.captions[0]} "


def test_run_compositional_accuracy_and_resume(tmp_path):
    model, means = colour_shape_mixture()
    g = torch.Generator().manual_seed(2)
    items = []
    for comp, caption in enumerate(CAPTIONS):
        x = means[comp].float() + 0.05 ** 0.5 * torch.randn(means[comp].shape, generator=g)
        wrong = CAPTIONS[(comp + 1) % 4]
        case = CompositionalCase(x, (wrong, caption), 1, "colour" if comp % 2 else "shape")
        items.append(Item(item_id("c", comp), case, caption))
    items.append(Item(item_id("c", "bad"), CompositionalCase(means[0].float(), ("a red circle", "a green circle"), 0,
                                                           "x"), "unknown caption"))
    rep = run_compositional(items, out=str(tmp_path), dataset="planted", model=model, settings=Settings(samples=48))
    assert len(rep.summary.failed) == 1 and rep.summary.failed[0].error_type == "ConditionError"
    # the standard estimator ranks every true caption first; i_o prefers the contradicting one (see above)
    assert rep.standard_micro.value == 1.0 and rep.standard_micro.items == 4
    assert rep.standard_macro.value == 1.0 and rep.standard_macro.included == 2
    assert rep.micro.value == 0.0 and rep.macro.value == 0.0
    assert rep.chance == 0.5
    assert rep.standard_margin.mean > 10 and rep.standard_margin.sure_right == 1.0
    assert rep.margin.mean < -10 and rep.margin.sure_wrong == 1.0
    orth, std = rep.table.rows
    assert std[1] == 100.0 and std[3] == 100.0 and std[6] == 50.0 and orth[3] == 0.0
    again = run_compositional(items, out=str(tmp_path), dataset="planted", model=model, samples=48, progress=False)
    assert again.summary.directory == rep.summary.directory and again.standard_micro.value == 1.0


def test_cli_bench_compositional_shapes(tmp_path):
    from diffpid.cli import main
    from test_bench_localization import _random_shapes_model

    model = _random_shapes_model(tmp_path / "model")
    out = tmp_path / "out"
    args = ["bench", "compositional", "--dataset", "shapes-relation", "--model", str(model), "--items", "2",
            "--samples", "3", "--out", str(out), "--no-progress"]
    assert main(args) == 0
    doc = json.loads((out / "compositional-shapes-relation.json").read_text())
    assert doc["meta"]["items"] == 2 and doc["rows"][0]["chance %"] == pytest.approx(33.33)
    assert sum(g["items"] for g in doc["detail"]["groups"]) == 2
    assert main(["bench", "compositional", "--dataset", "vg-relation", "--out", str(out), "--no-progress"]) == 2


def test_margin_summary_by_hand():
    from diffpid.bench.compositional_run import margin_summary

    m = margin_summary([[0.0, 1.0, 3.0], [-2.0, 0.0], [0.0, 0.1, -1.0]],
                       [[0, 0.2, 0.2], [0.5, 0], [0, 0.2, 0.3]], [0, 1, 0])
    # average margins 2.0 (both sure: right), -2.0 (sure wrong), -0.45 (one undecided, one sure wrong)
    assert m.mean == pytest.approx((2.0 - 2.0 - 0.45) / 3)
    assert m.stderr == pytest.approx(np.std([2.0, -2.0, -0.45], ddof=1) / np.sqrt(3))
    assert m.sure_right == pytest.approx(1 / 3) and m.sure_wrong == pytest.approx(2 / 3)


def test_shapes_single_items_and_the_oracle_ranking():
    from diffpid.bench.compositional import shapes_single_items
    from diffpid.bench.shapes_oracle import ShapesOracle

    items = shapes_single_items(4, seed=0)
    assert len(items) == 4 and [i.id for i in shapes_single_items(2, seed=0)] == [i.id for i in items[:2]]
    for it in items:
        c = it.data
        assert len(set(c.captions)) == 4 and c.correct == 0 and c.group == c.captions[0].split()[-1]
        true = c.captions[0].split()
        for k, wrong in enumerate(c.captions[1:]):  # exactly one attribute changed: colour, size, shape
            w = wrong.split()
            assert [j for j in range(4) if w[j] != true[j]] == [(2, 1, 3)[k]]
    # the world's perfect model: the standard score always picks the true caption, i_o never does
    oracle = ShapesOracle()
    r = score_captions(oracle, items[0].data.image, items[0].data.captions, samples=16)
    assert r.standard_is_correct and not r.is_correct


def test_cli_compositional_oracle_needs_single_objects(tmp_path):
    from diffpid.cli import main

    out = tmp_path / "out"
    assert main(["bench", "compositional", "--dataset", "shapes-single", "--model", "shapes-oracle", "--items", "2",
                 "--samples", "4", "--out", str(out), "--no-progress"]) == 0
    doc = json.loads((out / "compositional-shapes-single-oracle.json").read_text())
    assert doc["rows"][1]["micro acc %"] == 100.0 and doc["rows"][0]["micro acc %"] == 0.0
    assert main(["bench", "compositional", "--dataset", "shapes-attribute", "--model", "shapes-oracle",
                 "--out", str(out), "--no-progress"]) == 2
