"""Metrics of the benchmarks against hand-computed values."""

import json
import math

import numpy as np
import pytest
import torch

from diffpid.bench.metrics import (
    THRESHOLDS, accuracy, best_threshold, iou, iou_sweep, macro_accuracy, normalize_map, resize_map,
)
from diffpid.bench.tables import ResultTable, to_markdown, write_table
from diffpid.errors import ParameterError, ShapeError


def test_thresholds_are_the_papers_sweep():
    assert len(THRESHOLDS) == 50
    assert THRESHOLDS[0] == pytest.approx(0.1) and THRESHOLDS[-1] == pytest.approx(0.5)
    assert np.diff(THRESHOLDS) == pytest.approx(np.full(49, 0.4 / 49))


def test_normalize_map_min_max_and_constant():
    m = np.array([[2.0, 4.0], [6.0, 10.0]])
    assert normalize_map(m) == pytest.approx(np.array([[0.0, 0.25], [0.5, 1.0]]))
    assert (normalize_map(np.full((3, 3), 7.5)) == 1).all()  # whole image predicted
    with pytest.raises(ShapeError):
        normalize_map(np.array([[np.nan, 1.0]]))


def test_resize_map_bilinear_matches_torch_and_hand_values():
    m = np.array([[0.0, 1.0], [2.0, 3.0]])
    r = resize_map(m, (4, 4))
    ref = torch.nn.functional.interpolate(torch.tensor(m)[None, None], size=(4, 4), mode="bilinear",
                                          align_corners=False)[0, 0].numpy()
    assert r == pytest.approx(ref)
    # align_corners=False: output pixel 1 of 4 sits at input coordinate 0.25 -> 0.25 of the way
    assert r[0, 0] == pytest.approx(0.0) and r[0, 1] == pytest.approx(0.25) and r[1, 1] == pytest.approx(0.75)
    assert resize_map(m, (2, 2)) == pytest.approx(m)


def test_iou_by_hand():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 pixels
    b[1:3, 1:3] = True  # 4 pixels, 1 shared
    assert iou(a, b) == pytest.approx(1 / 7)
    assert iou(a, a) == 1.0
    assert iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == 1.0
    with pytest.raises(ShapeError):
        iou(a, np.zeros((3, 3), bool))


def test_iou_sweep_by_hand():
    # map values 0, 0.2, 0.4, 1 after normalisation; mask = the two top pixels
    m = np.array([[0.0, 1.0], [2.0, 5.0]])
    mask = np.array([[False, False], [True, True]])
    t = [0.1, 0.3, 0.5]
    # 0.1: {0.2, 0.4, 1} -> inter 2, union 3;  0.3: {0.4, 1} -> 1;  0.5: {1} -> 1/2
    assert iou_sweep(m, mask, t) == pytest.approx([2 / 3, 1.0, 0.5])
    # strictly above: a pixel equal to the threshold is out
    assert iou_sweep(np.array([[0.0, 0.5], [1.0, 1.0]]), mask, [0.5]) == pytest.approx([1.0])


def test_iou_sweep_upsamples_the_map_to_the_mask():
    m = np.array([[0.0, 0.0], [0.0, 1.0]])  # bottom-right block of a 2x2 map
    mask = np.zeros((8, 8), bool)
    mask[4:, 4:] = True
    ious = iou_sweep(m, mask)
    up = normalize_map(resize_map(m, (8, 8)))
    manual = [iou(up > t, mask) for t in THRESHOLDS]
    assert ious == pytest.approx(manual)
    assert max(ious) == pytest.approx(1.0)  # some threshold cuts exactly the 4x4 quadrant


def test_whole_image_baseline_is_mask_area_fraction():
    mask = np.zeros((10, 10), bool)
    mask[:3, :5] = True
    assert iou_sweep(np.zeros((5, 5)), mask) == pytest.approx(np.full(50, 0.15))


def test_best_threshold_picks_the_single_best_column():
    ious = np.array([[0.2, 0.6, 0.1], [0.4, 0.2, 0.9], [0.3, 0.4, 0.5]])
    r = best_threshold(ious, [0.1, 0.2, 0.3])
    assert r.per_threshold == pytest.approx([0.3, 0.4, 0.5])
    assert r.index == 2 and r.threshold == pytest.approx(0.3) and r.miou == pytest.approx(0.5)
    assert r.stderr == pytest.approx(np.std([0.1, 0.9, 0.5], ddof=1) / math.sqrt(3))
    assert r.items == 3
    with pytest.raises(ShapeError):
        best_threshold(ious, [0.1, 0.2])
    with pytest.raises(ParameterError):
        best_threshold(np.zeros((0, 3)), [0.1, 0.2, 0.3])


def test_accuracy_and_macro_accuracy_by_hand():
    a = accuracy([True, False, True, True])
    assert (a.value, a.correct, a.items) == (0.75, 3, 4)
    assert a.stderr == pytest.approx(math.sqrt(0.75 * 0.25 / 4))
    assert math.isnan(accuracy([]).value)
    correct = [True, True, False, False, True, True]
    groups = ["on", "on", "on", "under", "under", "by"]
    m = macro_accuracy(correct, groups)
    assert m.value == pytest.approx((2 / 3 + 1 / 2 + 1) / 3) and m.included == 3
    names = [g.group for g in m.groups]
    assert names == ["by", "on", "under"]
    m2 = macro_accuracy(correct, groups, exclude=["by"])
    assert m2.value == pytest.approx((2 / 3 + 1 / 2) / 2)
    se = math.sqrt((2 / 3) * (1 / 3) / 3 + 0.25 / 2) / 2
    assert m2.stderr == pytest.approx(se)
    m3 = macro_accuracy(correct, groups, min_count=3)
    assert m3.value == pytest.approx(2 / 3) and m3.included == 1
    assert math.isnan(macro_accuracy(correct, groups, min_count=10).value)
    with pytest.raises(ShapeError):
        macro_accuracy([True], ["a", "b"])


def test_write_table_markdown_and_json(tmp_path):
    t = ResultTable("Localization, shapes", ("method", "mIoU", "threshold"),
                    (("cmi", 0.41234, 0.3), ("whole image", float("nan"), None)),
                    notes=("a note",), meta={"samples": 16, "seed": 0})
    md, js = write_table(tmp_path / "out", "loc", t, extra={"curve": np.arange(3.0)})
    text = md.read_text()
    assert "| cmi | 0.4123 | 0.30 |" in text and "| whole image | - | - |" in text
    assert "samples: 16; seed: 0" in text and "- a note" in text
    doc = json.loads(js.read_text())
    assert doc["rows"][0] == {"method": "cmi", "mIoU": 0.41234, "threshold": 0.3}
    assert doc["rows"][1]["mIoU"] is None and doc["detail"]["curve"] == [0.0, 1.0, 2.0]
    assert to_markdown(t).startswith("### Localization, shapes")
    with pytest.raises(ParameterError):
        ResultTable("x", ("a", "b"), (("only one",),))
