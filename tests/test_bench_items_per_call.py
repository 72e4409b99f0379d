"""Benches with items per call (issue 21.2): several items' images share denoiser calls, each item's records unchanged.

On the tiny pixel pipeline, a bench run with ``items_per_call=3`` stores the records of the run one item
at a time (ids, seeds, failures; values and maps up to the float rounding of differently shaped UNet
calls) in fewer UNet calls over the same rows; a grouped ``diffpid bench bias`` killed with SIGKILL
mid-run resumes to the records of an uninterrupted grouped run, to the bit.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from diffpid.bench.compositional import CompositionalCase
from diffpid.bench.compositional_run import run_compositional
from diffpid.bench.intervention import InterventionCase
from diffpid.bench.intervention_run import run_intervention
from diffpid.bench.localization import LocalizationCase
from diffpid.bench.localization_run import run_localization
from diffpid.bench.pid_studies import PairCase
from diffpid.bench.pid_studies_run import run_pairs
from diffpid.models.diffusers import DiffusersModel
from diffpid.models.loading import load_model
from diffpid.runs.runner import Item, item_id
from diffpid.runs.store import RunStore
from diffpid.runs.summary import collect, find_runs
from diffpid.settings import Settings
from tiny_pipelines import pixel_folder

SETTINGS = Settings(samples=8, batch_size=64, seed=3, progress=False)
#: float rounding of differently shaped UNet calls (float32): values in nats, maps per pixel
VALUES = dict(rel=1e-4, abs=1e-5)
MAPS = dict(rtol=1e-3, atol=1e-5)


@pytest.fixture(scope="module")
def pixel():
    return load_model(pixel_folder(), device="cpu")


@pytest.fixture
def unet_calls(monkeypatch) -> list[int]:
    """The rows of every UNet call of the pixel pipeline (``eps`` and ``eps_rows`` both go through it)."""
    calls: list[int] = []
    rows = DiffusersModel._unet_rows

    def counted(self, x, t, conditions):
        calls.append(len(x))
        return rows(self, x, t, conditions)

    monkeypatch.setattr(DiffusersModel, "_unet_rows", counted)
    return calls


def _images(pixel, n: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(pixel.data_shape, generator=g) for _ in range(n)]


def _records(out) -> list[tuple]:
    (run,) = find_runs(out)
    store = RunStore(run)
    return [(rec.id, rec.name, rec.status, rec.seed, rec.error_type, rec.values,
             store.load_arrays(rec.id) if rec.arrays else {}) for rec in collect(run, include_failed=True)]


def _close(a, b, where: str = "") -> None:
    """JSON values equal, numbers within :data:`VALUES`."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            _close(u, v, f"{where}[{i}]")
    elif isinstance(a, float) and not isinstance(a, bool):
        if math.isnan(a):
            assert isinstance(b, float) and math.isnan(b), where
        else:
            assert b == pytest.approx(a, **VALUES), where
    else:
        assert a == b, where


def _same_records(one, grouped) -> int:
    """The grouped run's records are those of the one-by-one run; returns the number compared."""
    a, b = _records(one), _records(grouped)
    assert [r[:5] for r in a] == [r[:5] for r in b]  # ids, names, status, seeds, errors
    for ra, rb in zip(a, b):
        _close(ra[5], rb[5], ra[1])
        assert ra[6].keys() == rb[6].keys()
        for name in ra[6]:
            np.testing.assert_allclose(rb[6][name], ra[6][name], err_msg=f"{ra[1]} {name}", **MAPS)
    return len(a)


def _fewer_calls(run, unet_calls: list[int]) -> tuple[int, int]:
    """``run(1)`` then ``run(3)``: the same UNet rows in fewer calls. Returns both call counts."""
    run(1)
    one, rows = len(unet_calls), sum(unet_calls)
    unet_calls.clear()
    run(3)
    assert sum(unet_calls) == rows and len(unet_calls) < one, (len(unet_calls), one)
    print(f"UNet calls: {one} one by one, {len(unet_calls)} with 3 items per call ({rows} rows)")
    return one, len(unet_calls)


def test_pid_studies_group_cases_with_unchanged_records(pixel, tmp_path, unet_calls):
    words = [("a red cat on a table", "red", "cat", False), ("a red cat on a table", "cat", "table", True),
             ("a blue dog with a ball", "dog", "ball", False), ("the big tree", "big", "tree", False),
             ("a small green car", "green", "car", True), ("a man and a woman", "man", "woman", False),
             ("a red cat", "red", "dog", False)]  # fails alone: "dog" is not in the prompt
    cases = [PairCase(x, p, w1, w2, cond, group="g", key=f"{w1} {w2}", strength=0.1 * k)
             for k, (x, (p, w1, w2, cond)) in enumerate(zip(_images(pixel, len(words)), words))]
    masks = [(np.eye(16, dtype=bool), ~np.eye(16, dtype=bool))] * len(cases)  # stored with the image (uniqueness)

    def run(g: int):
        return run_pairs("pairs", cases, tmp_path / str(g), model=pixel, masks=masks, items_per_call=g,
                         settings=SETTINGS)

    _fewer_calls(run, unet_calls)
    assert _same_records(tmp_path / "1", tmp_path / "3") == 7
    assert [r[2] for r in _records(tmp_path / "3")].count("failed") == 1
    assert find_runs(tmp_path / "1")[0].name == find_runs(tmp_path / "3")[0].name  # not a run parameter


def test_compositional_groups_items_with_unchanged_records(pixel, tmp_path, unet_calls):
    captions = [("a red cat", "a blue cat", "a red dog"), ("a big tree", "a small tree"),
                ("a man and a woman", "a woman and a man", "a man", "a car"), ("a green car", "a green cat"),
                ("a dog with a ball", "a ball with a dog", "a dog")]
    items = [Item(item_id("c", k), CompositionalCase(x, caps, k % len(caps), f"g{k % 2}"), caps[0])
             for k, (x, caps) in enumerate(zip(_images(pixel, len(captions)), captions))]
    items.append(Item(item_id("c", "bad"), CompositionalCase(items[0].data.image, ("a cat",), 0, "g0"), "one caption"))
    items.append(Item(item_id("c", "bus"), CompositionalCase(items[1].data.image, ("a bus", "a cat"), 0, "g0"), "bus"))

    def run(g: int):
        return run_compositional(items, out=str(tmp_path / str(g)), dataset="t", model=pixel, items_per_call=g,
                                 settings=SETTINGS)

    _fewer_calls(run, unet_calls)
    assert _same_records(tmp_path / "1", tmp_path / "3") == 7
    assert [r[4] for r in _records(tmp_path / "3")].count(None) == 5  # the two bad items failed alone


def test_localization_groups_items_with_unchanged_records(pixel, tmp_path, unet_calls):
    rows = [("a red cat on a table", "cat"), ("a red cat on a table", "red"), ("a blue dog", "dog"),
            ("the big tree", "tree"), ("a small green car", "car"), ("a man", "woman")]  # the last fails
    mask = np.zeros((16, 16), dtype=bool)
    mask[4:12, 2:9] = True
    items = [Item(item_id("l", k), LocalizationCase(x, caption, word, mask), f"{caption}: {word}")
             for k, (x, (caption, word)) in enumerate(zip(_images(pixel, len(rows)), rows))]

    def run(g: int):
        return run_localization(items, out=str(tmp_path / str(g)), model=pixel, dataset="t", maps=True,
                                methods=("cmi", "mi", "whole_image"), items_per_call=g, settings=SETTINGS)

    _fewer_calls(run, unet_calls)
    assert _same_records(tmp_path / "1", tmp_path / "3") == 6


def test_intervention_groups_the_information_estimates(pixel, tmp_path, unet_calls):
    rows = [("a red cat on a table", "red"), ("a blue dog with a ball", "ball"), ("the big tree", "big"),
            ("a small green car", "green")]
    cases = [(f"case {k}", InterventionCase(x, caption, word))
             for k, (x, (caption, word)) in enumerate(zip(_images(pixel, len(rows)), rows))]

    def run(g: int):
        return run_intervention(cases, tmp_path / str(g), model=pixel, steps=2, attention=False, resamples=20,
                                items_per_call=g, settings=SETTINGS)

    _fewer_calls(run, unet_calls)
    assert _same_records(tmp_path / "1", tmp_path / "3") == 4


def test_grouped_bench_killed_then_resumed_equals_an_uninterrupted_run(tmp_path):
    """`diffpid bench bias --items-per-call 3` killed with SIGKILL mid-run, then run again: the records of
    an uninterrupted grouped run, to the bit (an item is always computed with the same companions)."""
    import subprocess
    import sys

    from PIL import Image
    from test_runs import _env, _numbers, _results, killed_command

    rng = np.random.default_rng(0)
    prompts = [("a red cat on a table", "red", "cat"), ("a blue dog with a ball", "dog", "ball"),
               ("the big tree", "big", "tree"), ("a small green car", "green", "car")]
    lines = ["prompt,word_1,word_2,image,strength"]
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        p, w1, w2 = prompts[i % len(prompts)]
        lines.append(f"{p},{w1},{w2},{i}.png,{i / 10}")
    (tmp_path / "cases.csv").write_text("\n".join(lines) + "\n")

    def argv(out):
        return ["-m", "diffpid", "bench", "bias", "--cases", str(tmp_path / "cases.csv"), "--model", pixel_folder(),
                "--samples", "16", "--resamples", "20", "--items-per-call", "3", "--device", "cpu", "--threads", "1",
                "--no-progress", "--out", str(out)]

    def complete(out):
        p = subprocess.run([sys.executable, *argv(out)], env=_env(), capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr[-3000:]
        return p

    complete(tmp_path / "ref")
    ref = _results(tmp_path / "ref")
    assert len(ref) == 10 and all(r["status"] == "done" for r in ref)
    run = killed_command(argv(tmp_path / "out"), tmp_path / "out", tmp_path / "ref", 1)
    stored = len(list((run / "results").glob("*.json")))
    assert 1 <= stored < len(ref), "the kill must land midway"
    assert f"{stored} stored, {10 - stored} to compute" in complete(tmp_path / "out").stdout
    assert _numbers(_results(tmp_path / "out")) == _numbers(ref)
    table = json.loads((tmp_path / "out" / "bias-file.json").read_text())
    assert table == json.loads((tmp_path / "ref" / "bias-file.json").read_text())
