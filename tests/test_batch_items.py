"""Batching across items (issue 21.2): several items' images share denoiser calls, each item's numbers unchanged.

- every backend's ``eps_rows`` (row ``i`` under its own condition) equals ``eps`` of that row alone;
- :func:`~diffpid.engine.estimate.estimate_jobs` gives each job the numbers of its solo run (fixed draws
  and precision targets), in fewer denoiser calls;
- dataset runs (``run_items`` with a group function, ``diffpid run --items-per-call``) store the same
  records as one item at a time, and a run interrupted inside a group or between its writes resumes
  to records identical to the bit to an uninterrupted run.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diffpid.engine.estimate import Difference, Job, estimate, estimate_jobs
from diffpid.models.base import batches_rows
from diffpid.models.mixture import GaussianMixture
from diffpid.plan import Plan, run_plans
from diffpid.runs.runner import Item, ItemResult, item_seed, run_items, shard_groups
from diffpid.runs.store import RunStore
from diffpid.runs.summary import collect, find_runs
from diffpid.settings import Settings
from test_runs import items_file  # noqa: F401  (fixture: the items of the end-to-end run tests)
from tiny_pipelines import pixel_folder, sd_folder, sdxl_folder, shapes_folder


def _mixture(cls=GaussianMixture) -> GaussianMixture:
    means = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * 2
    return cls(means, 0.05, labels={"y": [0, 1, 2, 0, 1, 2], "z": [0, 0, 0, 1, 1, 1]})


class _Counted(GaussianMixture):
    """The oracle counting its denoiser calls (both entry points, so it still batches rows)."""

    calls: list

    def eps(self, x_a, logsnr, conditions):
        self.calls.append(len(x_a) * len(conditions))
        return super().eps(x_a, logsnr, conditions)

    def eps_rows(self, x_a, logsnr, conditions):
        self.calls.append(len(x_a))
        return super().eps_rows(x_a, logsnr, conditions)


class _EpsOnly(GaussianMixture):
    """A subclass that alters ``eps`` only: rows must not bypass it."""

    def eps(self, x_a, logsnr, conditions):
        return super().eps(x_a, logsnr, conditions) * 1.5


def _jobs(m):
    x, _ = m.sample(4, generator=torch.Generator().manual_seed(1))
    c = [m.unconditional(), m.encode_prompt({"y": 1}), m.encode_prompt({"z": 1}), m.encode_prompt({"y": 1, "z": 1})]
    return [Job(x[:1], c[:2], [Difference(1, 0)], seed=11),
            Job(x[1:3], c, [Difference(1, 0), Difference(3, 2)], seed=12, targets=[1]),
            Job(x[3:], c[:3], [Difference(2, 0), Difference(1, 0)], seed=13)]


def _close(a, b, rtol=1e-6):
    np.testing.assert_array_equal(a.image_samples, b.image_samples)
    for ta, tb in zip(a.terms, b.terms, strict=True):
        for f in ("value", "stderr", "pixel_map", "standard_value", "standard_stderr"):
            np.testing.assert_allclose(getattr(ta, f), getattr(tb, f), rtol=rtol, atol=1e-9, err_msg=f)
        np.testing.assert_allclose(ta.curve.count, tb.curve.count)
    np.testing.assert_allclose(a.nll, b.nll, rtol=rtol)


@pytest.mark.parametrize("sampler,precision", [("adaptive", None), ("sobol", None), ("adaptive", 0.05)])
def test_jobs_equal_their_solo_runs_in_fewer_calls(sampler, precision):
    m = _mixture(_Counted)
    jobs = _jobs(m)
    kw = dict(samples=12, sampler=sampler, batch_size=64, precision=precision, max_samples=200)
    m.calls = []
    solo = [estimate(m, j.x, j.conditions, j.terms, seed=j.seed, targets=j.targets, **kw) for j in jobs]
    solo_calls = list(m.calls)
    m.calls = []
    shared = estimate_jobs(m, jobs, **kw)
    for a, b in zip(solo, shared, strict=True):
        _close(a, b)
    assert sum(m.calls) == sum(solo_calls)  # the same rows...
    assert len(m.calls) < len(solo_calls) and max(m.calls) <= 64  # ...in fewer calls
    if sampler == "sobol":  # one round: every call but the last is full (short of a whole pair of k <= 4 rows)
        assert all(c > 64 - 4 for c in m.calls[:-1]) and len(m.calls) <= -(-sum(m.calls) // 61)
    if precision is not None:  # the jobs stopped at their own sample counts
        assert len({int(r.image_samples.max()) for r in shared}) > 1


def test_a_model_that_overrides_only_eps_is_reached_through_eps():
    m = _mixture(_EpsOnly)
    assert not batches_rows(m) and batches_rows(_mixture()) and batches_rows(_mixture(_Counted))
    jobs = _jobs(m)
    solo = [estimate(m, j.x, j.conditions, j.terms, seed=j.seed, samples=16, batch_size=16) for j in jobs]
    for a, b in zip(solo, estimate_jobs(m, jobs, samples=16, batch_size=16), strict=True):
        _close(a, b)


def _check_rows(m, conds, x, a, atol=1e-4):
    rows = m.eps_rows(x, a, conds)
    assert rows.shape == (len(x), *m.data_shape) and rows.dtype == torch.float32
    for i in range(len(x)):
        one = m.eps(x[i:i + 1], a[i:i + 1], [conds[i]])[0, 0]
        torch.testing.assert_close(rows[i].cpu(), one.cpu(), rtol=1e-4, atol=atol)
    # and eps itself is the rows of every input under every condition, input-major
    both = m.eps(x[:2], a[:2], conds[:2])
    again = m.eps_rows(x[:2].repeat_interleave(2, 0), a[:2].repeat_interleave(2), conds[:2] * 2)
    torch.testing.assert_close(both.reshape(4, *m.data_shape).cpu(), again.cpu(), rtol=1e-4, atol=atol)


def test_eps_rows_of_the_oracles():
    from diffpid.models.flow import FlowGaussianMixture

    for m in (_mixture(), FlowGaussianMixture(_mixture())):
        assert batches_rows(m)
        c = [m.unconditional(), m.encode_prompt({"y": 1}), m.encode_prompt({"z": 1})]
        x, _ = _mixture().sample(5, generator=torch.Generator().manual_seed(2))
        a = torch.linspace(-4, 4, 5)
        _check_rows(m, [c[0], c[1], c[1], c[2], c[0]], x, a, atol=1e-6)


def test_eps_rows_of_the_shapes_oracle():
    from diffpid.bench.shapes_oracle import ShapesOracle

    m = ShapesOracle()
    assert batches_rows(m)
    c = [m.encode_prompt(p) for p in ("a red circle", "a big square", "")]
    x = torch.randn(4, *m.data_shape, generator=torch.Generator().manual_seed(0))
    _check_rows(m, [c[0], c[1], c[2], c[1]], x, torch.tensor([-3.0, 0.5, 2.0, 5.0]), atol=1e-5)


@pytest.mark.parametrize("folder", [sd_folder, sdxl_folder, pixel_folder, shapes_folder])
def test_eps_rows_of_the_unet_backends(folder):
    from diffpid import load_model

    m = load_model(folder(), device="cpu")
    assert batches_rows(m)
    prompts = ["a red cat", "a dog", ""] if m.has("text") else [{}, {}, {}]
    if "shapes" in folder.__name__:
        prompts = ["a red circle", "a blue square", ""]
    c = [m.encode_prompt(p) for p in prompts]
    x = torch.randn(4, *m.data_shape, generator=torch.Generator().manual_seed(0))
    _check_rows(m, [c[0], c[1], c[2], c[1]], x, torch.tensor([-3.0, 0.5, 2.0, 5.0]))


@pytest.mark.parametrize("family", ["sd3", "flux-dev", "qwenimage"])
def test_eps_rows_of_the_flow_backends(family):
    from diffpid import load_model
    from tiny_flow import flow_folder

    m = load_model(flow_folder(family))
    assert batches_rows(m)
    c = [m.encode_prompt(p) for p in ("a red cat on the table", "a dog", "")]
    x = torch.randn(3, *m.data_shape, generator=torch.Generator().manual_seed(0))
    _check_rows(m, [c[0], c[2], c[1]], x, torch.tensor([-2.0, 0.0, 3.0]))


# ----- dataset runs ------------------------------------------------------------------------------------------
SETTINGS = Settings(samples=12, sampler="adaptive", batch_size=64, progress=False)


def _oracle_items(m, n=11):
    x, _ = m.sample(n, generator=torch.Generator().manual_seed(3))
    labels = [{"y": 1}, {"z": 1}, {"y": 2, "z": 0}]
    items = [Item(f"item{i:02d}", (x[i], labels[: 1 + i % 3]), f"#{i}") for i in range(n)]
    items.append(Item("bad", (x[0], [{"w": 1}]), "bad"))  # an unknown label: fails alone
    return items


def _plan(labels):
    plan = Plan()
    for j, lab in enumerate(labels):
        plan.mi(j, lab)
    return plan


def _result(r, labels):
    return ItemResult({"mi": [float(r.mi[j].value) for j in range(len(labels))],
                       "se": [float(r.mi[j].stderr) for j in range(len(labels))]},
                      {"map": np.asarray(r.mi[0].pixel_map, dtype=np.float32)})


def _functions(m):
    def compute(item, seed):
        x, labels = item.data
        return _result(_plan(labels).run(m, x, SETTINGS.replace(seed=seed)), labels)

    def compute_group(items, seeds):
        from diffpid.errors import DiffpidError

        out, ready = [], []
        for it, s in zip(items, seeds):
            try:
                plan = _plan(it.data[1])
                [m.encode_prompt(c) for c in plan.conditions]
                ready.append((len(out), plan, it.data[0], s, it.data[1]))
                out.append(None)
            except DiffpidError as err:
                out.append(err)
        results = run_plans(m, [(p, x, s) for _, p, x, s, _ in ready], SETTINGS)
        for (at, _, _, _, labels), r in zip(ready, results):
            out[at] = _result(r, labels)
        return out

    return compute, compute_group


def _records(out: Path) -> list[dict]:
    (run,) = find_runs(out)
    store = RunStore(run)
    rows = []
    for rec in collect(run, include_failed=True):
        arrays = store.load_arrays(rec.id) if rec.arrays else {}
        rows.append((rec.id, rec.name, rec.status, rec.seed, json.dumps(rec.values, sort_keys=True), rec.error_type,
                     rec.error, {k: v.tobytes() for k, v in arrays.items()}))
    return rows


class _Stop(Exception):
    """Stands for a kill: not a DiffpidError, so it stops the run."""


def test_grouped_run_stores_the_records_of_an_ungrouped_one(tmp_path):
    m = _mixture(_Counted)
    items = _oracle_items(m)
    compute, group = _functions(m)
    kw = dict(parameters={"task": "oracle"}, seed=5, progress=False, log=lambda s: None)
    m.calls = []
    one = run_items(items, compute, out=tmp_path / "one", **kw)
    calls_one, rows = len(m.calls), sum(m.calls)
    m.calls = []
    grouped = run_items(items, compute, out=tmp_path / "grouped", compute_group=group, items_per_call=4, **kw)
    calls_grouped = len(m.calls)
    assert sum(m.calls) == rows and calls_one == 12 - 1  # one call per item alone (12 draws x k <= 4 conditions)
    assert one.directory.name == grouped.directory.name  # the group size is not a run parameter
    assert grouped.done == len(items) - 1 and [f.id for f in grouped.failed] == ["bad"]
    a, b = _records(tmp_path / "one"), _records(tmp_path / "grouped")
    assert [r[:4] + r[5:7] for r in a] == [r[:4] + r[5:7] for r in b]  # ids, names, status, seeds, errors
    for ra, rb in zip(a, b):
        if ra[2] == "done":
            va, vb = json.loads(ra[4]), json.loads(rb[4])
            np.testing.assert_allclose(va["mi"], vb["mi"], rtol=1e-6)
            np.testing.assert_allclose(va["se"], vb["se"], rtol=1e-6)
            np.testing.assert_allclose(np.frombuffer(ra[7]["map"], np.float32),
                                       np.frombuffer(rb[7]["map"], np.float32), rtol=1e-5, atol=1e-7)
    # three groups of 4, 4, 3 items, each a few full calls and one partly filled: 8 calls instead of 11
    assert calls_grouped <= 3 + rows // 64 < calls_one, (calls_grouped, calls_one)


@pytest.mark.parametrize("stop_at", ["engine", "writes"])
def test_a_grouped_run_interrupted_resumes_to_identical_records(tmp_path, monkeypatch, stop_at):
    m = _mixture(_Counted)
    m.calls = []
    items = _oracle_items(m)
    compute, group = _functions(m)
    kw = dict(parameters={"task": "oracle"}, seed=5, progress=False, log=lambda s: None, compute_group=group,
              items_per_call=4)
    run_items(items, compute, out=tmp_path / "ref", **kw)
    ref = _records(tmp_path / "ref")

    if stop_at == "engine":  # killed inside the second group's engine pass
        calls = {"n": 0}
        inner = group

        def dying(batch, seeds):
            calls["n"] += 1
            if calls["n"] == 2:
                raise _Stop()
            return inner(batch, seeds)

        kw["compute_group"] = dying
    else:  # killed between two records of one group
        writes = {"n": 0}
        original = RunStore.write

        def dying_write(self, rec, arrays=None):
            writes["n"] += 1
            if writes["n"] == 6:
                raise _Stop()
            return original(self, rec, arrays)

        monkeypatch.setattr(RunStore, "write", dying_write)
    with pytest.raises(_Stop):
        run_items(items, compute, out=tmp_path / "out", **kw)
    monkeypatch.undo()
    (run,) = find_runs(tmp_path / "out")
    stored = len(list((run / "results").glob("*.json")))
    assert 0 < stored < len(items)
    kw["compute_group"] = group
    m.calls = []
    again = run_items(items, compute, out=tmp_path / "out", **kw)
    assert again.done == len(items) - 1 and not again.remaining
    assert _records(tmp_path / "out") == ref  # to the bit: every item had the same companions


def test_groups_do_not_depend_on_what_is_stored_or_on_processes():
    ids = [f"{i:02d}" for i in range(10)]
    whole = shard_groups(ids, ids, 4, 0, 1)
    assert whole == [ids[0:4], ids[4:8], ids[8:]]
    assert shard_groups(ids, ["05", "09"], 4, 0, 1) == [ids[4:8], ids[8:]]
    two = shard_groups(ids, ids, 4, 0, 2) + shard_groups(ids, ids, 4, 1, 2)
    assert sorted(map(tuple, two)) == sorted(map(tuple, whole))
    assert item_seed(0, "05") == item_seed(0, "05")


def test_diffpid_run_groups_items_with_unchanged_numbers(tmp_path, monkeypatch):
    """`diffpid run` on the tiny pixel pipeline: items per call 1 and 4 store the same numbers; fewer UNet calls."""
    from PIL import Image

    from diffpid.models.diffusers import DiffusersModel
    from diffpid.runs.words import run_words

    rng = np.random.default_rng(0)
    rows = []
    for i, (prompt, words) in enumerate([("a red cat", ["cat"]), ("a blue dog with a ball", ["dog", "ball"]),
                                         ("the big tree", ["tree"]), ("a small green car", ["car", "green"]),
                                         ("a man and a woman", ["man"])]):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        rows.append({"id": f"img-{i}", "image": f"{i}.png", "prompt": prompt, "words": words})
    rows.append({"id": "missing-word", "image": "0.png", "prompt": "a red cat", "words": ["dog"]})
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    calls = []
    unet_rows = DiffusersModel._unet_rows

    def counted(self, x, t, conditions):
        calls.append(len(x))
        return unet_rows(self, x, t, conditions)

    monkeypatch.setattr(DiffusersModel, "_unet_rows", counted)
    kw = dict(model=pixel_folder(), samples=8, batch_size=64, maps=True, device="cpu", progress=False)
    one = run_words(items, tmp_path / "one", items_per_call=1, **kw)
    n_one, rows_one = len(calls), sum(calls)
    calls.clear()
    grouped = run_words(items, tmp_path / "grouped", items_per_call=4, **kw)
    assert len(calls) < n_one and sum(calls) == rows_one, (calls, n_one)
    assert one.directory.name == grouped.directory.name and grouped.done == 5 and len(grouped.failed) == 1
    a, b = _records(tmp_path / "one"), _records(tmp_path / "grouped")
    assert [r[:4] + r[5:7] for r in a] == [r[:4] + r[5:7] for r in b]
    for ra, rb in zip(a, b):
        if ra[2] != "done":
            continue
        for wa, wb in zip(json.loads(ra[4])["words"], json.loads(rb[4])["words"], strict=True):
            for key in ("mi", "mi_stderr", "cmi", "cmi_stderr", "cmi_standard"):
                assert wb[key] == pytest.approx(wa[key], rel=1e-4, abs=1e-6), key
        for name in ra[7]:
            np.testing.assert_allclose(np.frombuffer(rb[7][name], np.float32 if name != "image" else np.uint8),
                                       np.frombuffer(ra[7][name], np.float32 if name != "image" else np.uint8),
                                       rtol=1e-3, atol=1e-6)


def test_diffpid_run_grouped_kill9_then_resume_equals_an_uninterrupted_grouped_run(items_file, tmp_path):
    """`diffpid run --items-per-call 4` killed with SIGKILL mid-run, then run again: the records of a run
    that was never interrupted, to the bit."""
    from test_runs import _cli, _numbers, _results, killed_run

    _cli(items_file, tmp_path / "ref", "--items-per-call", "4")
    ref = _results(tmp_path / "ref")
    run = killed_run(items_file, tmp_path / "out", tmp_path / "ref", 1, "--items-per-call", "4")
    stored = len(list((run / "results").glob("*.json")))
    assert 1 <= stored < len(ref), "the kill must land midway"
    _cli(items_file, tmp_path / "out", "--items-per-call", "4")
    assert _numbers(_results(tmp_path / "out")) == _numbers(ref)
