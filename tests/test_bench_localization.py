"""Localization bench: planted maps, shared engine runs, the shapes items, resumable runs, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bench_models import RegionModel, box
from diffpid.bench.localization import LocalizationCase, localize, resize_mask
from diffpid.bench.localization_run import run_localization, shapes_items
from diffpid.bench.metrics import THRESHOLDS, iou_sweep
from diffpid.errors import ConditionError, ParameterError
from diffpid.information import conditional_mutual_information
from diffpid.plan import Plan
from diffpid.prompts import remove_words
from diffpid.runs.runner import Item, item_id
from diffpid.settings import Settings
from tiny_pipelines import pixel_folder

RED, CAT, TABLE = box(0, 4, 0, 4), box(4, 8, 2, 6), box(0, 2, 4, 8)


def region_model() -> RegionModel:
    return RegionModel({"red": RED, "cat": CAT, "table": TABLE})


def test_planted_regions_are_found_exactly():
    m = region_model()
    x = torch.zeros(1, 8, 8)
    case = LocalizationCase(x, "a red cat on the table", "cat", CAT)
    r = localize(m, case, methods=("cmi", "mi", "whole_image"), samples=16)
    # the CMI integrand is 1 inside the cat's region and 0 elsewhere: the map is the region
    cmi = r.maps[0].map
    assert (cmi[~CAT] == 0).all() and (cmi[CAT] > 0).all()
    assert np.allclose(cmi[CAT], cmi[CAT][0])
    assert r.ious("cmi") == pytest.approx(np.ones(50))
    assert r.ious("mi") == pytest.approx(np.ones(50))
    assert r.ious("whole_image") == pytest.approx(np.full(50, CAT.mean()))
    assert r.cmi == pytest.approx(cmi.sum(), rel=1e-5) and r.cmi > 0 and r.mi > 0
    # a wrong mask scores 0: the map is not the mask
    wrong = localize(m, LocalizationCase(x, "a red cat on the table", "cat", TABLE), methods=("cmi",), samples=8)
    assert wrong.ious("cmi") == pytest.approx(np.zeros(50))
    with pytest.raises(ConditionError):
        localize(m, LocalizationCase(x, "a red cat", "dog", CAT), methods=("cmi",), samples=4)
    with pytest.raises(ParameterError):
        localize(m, case, methods=("saliency",))


def test_resize_mask_nearest():
    m = box(0, 4, 0, 4)
    up = resize_mask(m, (16, 16))
    assert up.shape == (16, 16) and up[:8, :8].all() and not up[8:].any() and not up[:, 8:].any()
    assert resize_mask(m, None) is not None and (resize_mask(m, None) == m).all()


def test_localize_on_a_diffusers_model_shares_the_engine_run():
    model_path = pixel_folder()
    from diffpid.models.loading import load_model

    model = load_model(model_path)
    rng = np.random.default_rng(0)
    image = (rng.random((16, 16, 3)) * 255).astype(np.uint8)
    mask = np.zeros((16, 16), bool)
    mask[3:9, 5:12] = True
    caption = "a red cat on the table"
    case = LocalizationCase(image, caption, "cat", mask)
    settings = Settings(samples=6, seed=3)
    r = localize(model, case, steps=3, settings=settings)
    assert [m.method for m in r.maps] == ["cmi", "mi", "attention", "attention_info", "whole_image"]
    for mm in r.maps:
        assert mm.ious.shape == (50,)
        assert mm.ious == pytest.approx(iou_sweep(mm.map, mask, THRESHOLDS))
    assert r.maps[2].map.shape == (16, 16) and r.maps[3].map.shape == (16, 16)
    assert r.ious("whole_image") == pytest.approx(np.full(50, mask.mean()))
    # CMI, MI and attention_info are one plan: the same plan run without attention gives the same values
    x = model.encode_image(image)[0]
    ref = Plan().cmi("cat", caption, remove_words(caption, ["cat"])).mi("cat", "cat", "").run(model, x, settings)
    assert r.cmi == pytest.approx(ref.cmi["cat"].value, rel=1e-6) and r.mi == pytest.approx(ref.mi["cat"].value,
                                                                                             rel=1e-6)
    assert r.maps[0].map == pytest.approx(ref.cmi["cat"].pixel_map.astype(np.float32), rel=1e-5)
    assert r.maps[1].map == pytest.approx(ref.mi["cat"].pixel_map.astype(np.float32), rel=1e-5)
    # common random numbers: the CMI estimated on its own with the same seed differs only by rounding
    alone = conditional_mutual_information(model, x, caption, word="cat", settings=settings)
    assert r.cmi == pytest.approx(alone.value, rel=1e-5)
    # keywords are the same settings
    again = localize(model, case, methods=("cmi", "mi"), samples=6, seed=3)
    assert (again.cmi, again.mi) == (r.cmi, r.mi)


def test_shapes_items_masks_and_determinism():
    items = shapes_items(12, seed=0)
    assert len(items) == 12 and len({i.id for i in items}) == 12
    again = shapes_items(5, seed=0)
    assert [i.id for i in again] == [i.id for i in items[:5]]
    from diffpid.shapes.render import sample_scenes

    scenes = sample_scenes(12, 0)
    first = items[0].data
    s = scenes[0]
    assert first.caption == s.caption
    j = [w.text for w in s.words].index(first.word)
    same = [k for k, w in enumerate(s.words) if w.text == first.word]
    expect = np.zeros((32, 32), bool)
    for k in same:
        expect |= s.masks[k].numpy()
    assert (first.mask == expect).all() and first.mask.any() and j in same
    for it in items:
        c = it.data
        assert c.word in c.caption.split() and c.mask.shape == (32, 32) and c.mask.any()
        assert c.image.shape == (32, 32, 3) and c.image.dtype == np.uint8
    assert shapes_items(3, seed=1)[0].id != items[0].id


def test_run_localization_resumes_and_scores(tmp_path):
    m = region_model()
    x = torch.zeros(1, 8, 8)
    cases = [LocalizationCase(x, "a red cat on the table", "cat", CAT),
             LocalizationCase(x, "a red cat on the table", "red", RED),
             LocalizationCase(x, "the table", "table", TABLE),
             LocalizationCase(x, "a red cat", "dog", CAT)]  # fails: no such word
    items = [Item(item_id("t", k), c, f"case {k}") for k, c in enumerate(cases)]
    rep = run_localization(items, out=str(tmp_path), model=m, dataset="planted", methods=("cmi", "whole_image"),
                           samples=8, progress=False)
    assert rep.summary.done == 3 and len(rep.summary.failed) == 1
    by = {s.method: s.sweep for s in rep.scores}
    assert by["cmi"].miou == pytest.approx(1.0) and by["cmi"].items == 3
    assert by["whole_image"].miou == pytest.approx(np.mean([CAT.mean(), RED.mean(), TABLE.mean()]))
    rows = {r[0]: r for r in rep.table.rows}
    assert rows["CMI"][1] == pytest.approx(100.0) and rows["whole image"][4] == 14.9
    again = run_localization(items[:3], out=str(tmp_path), model=m, dataset="planted", methods=("cmi", "whole_image"),
                             samples=8, progress=False)
    assert again.summary.directory == rep.summary.directory and again.scores[0].sweep.miou == pytest.approx(1.0)


def _random_shapes_model(path):
    from diffpid.shapes.model import ShapesConfig, build_components, save_components

    cfg = ShapesConfig(channels=(8, 16, 16), text_hidden=16, text_layers=1, text_heads=2, attention_head_dim=8,
                       norm_groups=4)
    return save_components(build_components(cfg), path, extra={"steps": 7})


def test_cli_bench_localization_shapes(tmp_path):
    from diffpid.cli import main

    model = _random_shapes_model(tmp_path / "model")
    out = tmp_path / "out"
    args = ["bench", "localization", "--model", str(model), "--items", "2", "--samples", "3", "--steps", "2",
            "--out", str(out), "--no-progress"]
    assert main(args) == 0
    doc = json.loads((out / "localization-shapes.json").read_text())
    assert doc["meta"]["training_steps"] == 7 and doc["meta"]["items"] == 2
    methods = [r["method"] for r in doc["rows"]]
    assert methods[0] == "CMI" and methods[-1] == "whole image" and len(methods) == 5
    curve = doc["detail"]["miou_per_threshold"]["cmi"]
    assert len(curve) == 50 and max(curve) == pytest.approx(doc["rows"][0]["mIoU %"] / 100, abs=5e-5)
    assert "| CMI |" in (out / "localization-shapes.md").read_text()
    assert main(args) == 0  # resumed: nothing left to compute
    assert main(["bench", "localization", "--model", str(model), "--methods", "cmi,bogus", "--items", "1",
                 "--out", str(out), "--no-progress"]) == 2


def test_oracle_items_and_perfect_colour_maps(tmp_path):
    from diffpid.bench.localization_run import oracle_items
    from diffpid.bench.shapes_oracle import ShapesOracle

    items = oracle_items(6, seed=0)
    assert len(items) == 6 and [i.id for i in oracle_items(3, seed=0)] == [i.id for i in items[:3]]
    size, colour, shape = (it.data for it in items[:3])
    assert size.caption == colour.caption == shape.caption and size.caption.split()[1:] == [size.word, colour.word,
                                                                                           shape.word]
    oracle = ShapesOracle()
    assert any(torch.equal(colour.image, m.float()) for m in oracle.means)
    # the exact denoiser: a colour word changes the prediction only on its object's pixels
    r = localize(oracle, colour, methods=("cmi", "whole_image"), samples=16)
    assert r.ious("cmi").max() == pytest.approx(1.0)
    assert r.ious("whole_image") == pytest.approx(np.full(50, colour.mask.mean()))


def test_cli_bench_localization_oracle(tmp_path):
    from diffpid.cli import main

    out = tmp_path / "out"
    assert main(["bench", "localization", "--model", "shapes-oracle", "--items", "3", "--samples", "4", "--out",
                 str(out), "--no-progress"]) == 0
    doc = json.loads((out / "localization-shapes-oracle.json").read_text())
    assert [r["method"] for r in doc["rows"]] == ["CMI", "MI", "whole image"]
    assert main(["bench", "localization", "--model", "shapes-oracle", "--dataset", "coco-it", "--items", "3",
                 "--out", str(out), "--no-progress"]) == 2
