"""The front of the house: Settings, Plan, the public API, and that the redesign changed no number."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import diffpid
from diffpid.errors import ConditionError, ParameterError
from diffpid.models.mixture import GaussianMixture
from diffpid.plan import Plan
from diffpid.settings import Settings, add_settings_arguments, settings_from_args

REFERENCE = Path(__file__).parent / "data" / "explain_reference.json"
REFERENCE_MODEL = Path(__file__).parent / "data" / "lineage-shapes"
"""The embedded model's weights the reference was recorded with (shipped until 2026-12-06, when the
from-scratch weights replaced them; the same files as the package's assets of that time)."""


@pytest.fixture(scope="module")
def reference_explanation():
    ref = json.loads(REFERENCE.read_text())
    model = diffpid.load_shapes_model(REFERENCE_MODEL, device="cpu")
    return ref, diffpid.explain(ref["prompt"], model=model, samples=ref["samples"], seed=ref["seed"])


def test_explain_values_unchanged_by_the_redesign(reference_explanation):
    """Values recorded with the code before the redesign (tests/data/explain_reference.json), on the weights
    they were recorded with (tests/data/lineage-shapes)."""
    ref, e = reference_explanation
    assert list(e.words) == ref["words"] and list(e.pair) == ref["pair"]
    assert int(np.asarray(e.image, dtype=np.int64).sum()) == ref["image_sum"]
    for kind in ("mi", "cmi"):
        for w, (value, stderr) in ref[kind].items():
            got = getattr(e, kind)[w]
            assert got.value == pytest.approx(value, rel=1e-4, abs=1e-6), (kind, w)
            assert got.stderr == pytest.approx(stderr, rel=1e-4, abs=1e-6), (kind, w)
    # an atom is a sum of terms of up to ~11 nats: float32 kernels that differ between CPUs move it by ~3e-5
    # (the CPID synergy, -0.224, on the 2026-12-07 machine), so it is held to 1e-4 of the largest term
    scale = max(abs(v) for kind in ("mi", "cmi") for v, _ in ref[kind].values())
    for kind in ("pid", "cpid"):
        for atom, value in ref[kind].items():
            assert getattr(getattr(e, kind), atom).value == pytest.approx(value, rel=1e-4, abs=1e-4 * scale), (kind, atom)
    for w, total in ref["attention_sum"].items():
        assert float(np.asarray(e.attention[w]).sum()) == pytest.approx(total, rel=1e-4)


def test_explain_is_the_package_function_and_saves(tmp_path, reference_explanation):
    assert callable(diffpid.explain) and diffpid.explain.__module__ == "diffpid.explanation"
    _, e = reference_explanation
    folder = e.save(tmp_path / "report")
    assert (Path(folder) / "report.html").exists() and (Path(folder) / "results.json").exists()


def test_settings_defaults_live_in_one_place_and_are_validated():
    s = Settings()
    assert (s.samples, s.sampler, s.batch_size, s.seed) == (64, "adaptive", 64, 0)
    assert Settings.of(s, samples=8, seed=None).samples == 8  # None keeps the field
    assert Settings(dtype="bf16").dtype == "bfloat16"
    for bad in (dict(seed=10**20), dict(seed=-1), dict(samples=0), dict(batch_size=2.5), dict(device="gpu0"),
                dict(dtype="fp64"), dict(sampler="nope"), dict(precision=1.5), dict(threads=0)):
        with pytest.raises(ParameterError):
            Settings(**bad)
    with pytest.raises(ParameterError, match="unknown setting"):
        Settings.of(None, sample=3)
    if not torch.cuda.is_available():
        with pytest.raises(ParameterError, match="GPU"):
            Settings(device="cuda").torch_device()


def test_settings_flags_round_trip():
    p = argparse.ArgumentParser()
    add_settings_arguments(p)
    args = p.parse_args(["--samples", "5", "--seed", "7", "--dtype", "bf16", "--device", "cpu", "--sampler", "sobol",
                         "--batch-size", "3", "--precision", "0.2", "--no-progress"])
    s = settings_from_args(args)
    assert s == Settings(samples=5, seed=7, dtype="bfloat16", device="cpu", sampler="sobol", batch_size=3,
                         precision=0.2, progress=False)
    with pytest.raises(SystemExit):
        p.parse_args(["--seed", "99999999999999999999"])
    before = torch.get_num_threads()
    try:
        settings_from_args(p.parse_args(["--threads", "1"]))
        assert torch.get_num_threads() == 1  # --threads takes effect
    finally:
        torch.set_num_threads(before)


def _mixture():
    torch.manual_seed(0)
    means = torch.zeros(4, 2, 4, 4)
    for i in range(4):
        means[i, i % 2] = 0.6 * (1 + i // 2)
    return GaussianMixture(means, 0.05, labels={"a": [0, 0, 1, 1], "b": [0, 1, 0, 1]})


def test_plan_deduplicates_conditions_and_matches_single_measures():
    model = _mixture()
    x, _ = model.sample(1, generator=torch.Generator().manual_seed(3))
    plan = Plan().mi("a", {"a": 0}).mi("b", {"b": 1}).pid({"a": 0}, {"b": 1}, name="ab")
    assert len(plan.conditions) == 4  # {}, a, b, a+b: the unconditional and the sources are shared
    s = Settings(samples=16, seed=5)
    r = plan.run(model, x[0], s)
    # the same numbers as the one-measure entry points on the same seed (same draws)
    alone = diffpid.mutual_information(model, x[0], {"a": 0}, settings=s)
    assert r.mi["a"].value == pytest.approx(alone.value, rel=1e-9)
    p = diffpid.pid(model, x[0], {"a": 0}, {"b": 1}, settings=s)
    assert r.pid["ab"].synergy.value == pytest.approx(p.synergy.value, rel=1e-9)
    assert r.pid["ab"].mi_1.value == pytest.approx(r.mi["a"].value, rel=1e-9)  # one number per quantity
    with pytest.raises(ConditionError, match="no mi"):
        r.mi["c"]
    with pytest.raises(ParameterError, match="already"):
        plan.mi("a", {"a": 1})
    with pytest.raises(ParameterError, match="no measurements"):
        Plan().run(model, x[0])


def test_public_surface_is_small():
    assert len(diffpid.__all__) <= 24
    for name in diffpid.__all__:
        assert hasattr(diffpid, name), name
