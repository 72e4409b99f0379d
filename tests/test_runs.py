"""Dataset-scale runs: kill -9 and resume, damaged records, sharding with accelerate, parameters, failures.

End-to-end tests run ``python -m diffpid run`` in subprocesses (one torch thread each) on
the tiny pixel-space pipeline with 8 samples per item, and compare with a single
uninterrupted run and with the information functions called directly.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from diffpid.errors import ParameterError
from diffpid.runs.store import CorruptRecord, ItemRecord, RunStore
from diffpid.runs.runner import Item, ItemResult, item_id, item_seed, run_items, shard
from diffpid.runs.summary import collect, find_runs, summarize
from diffpid.runs.words import read_items
from tiny_pipelines import pixel_folder

PROMPTS = [
    ("a red cat on the table", ["cat", "red"]),
    ("a blue dog with a ball", ["dog", "ball"]),
    ("a small green car", ["car"]),
    ("the big tree", ["tree"]),
    ("a man and a woman", ["man", "woman"]),
]
SAMPLES = 8


def _env() -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DIFFPID_TEST_THREADS="1", HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def items_file(tmp_path_factory) -> Path:
    """10 items with images, 1 generated image, 1 unreadable image, 1 word not in its prompt."""
    from PIL import Image

    root = tmp_path_factory.mktemp("items")
    (root / "img").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(10):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / "img" / f"{i}.png")
        prompt, words = PROMPTS[i % len(PROMPTS)]
        rows.append({"id": f"img-{i}", "image": f"img/{i}.png", "prompt": prompt, "words": words})
    rows.insert(3, {"id": "generated", "prompt": "a red car", "words": ["car"]})
    (root / "img" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rows.append({"id": "broken-image", "image": "img/broken.png", "prompt": "a cat", "words": ["cat"]})
    rows.append({"id": "missing-word", "image": "img/0.png", "prompt": "a red cat", "words": ["dog"]})
    path = root / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _run_cmd(items: Path, out: Path, *extra: str) -> list[str]:
    return ["-m", "diffpid", "run", str(items), "--out", str(out), "--model", pixel_folder(), "--samples",
            str(SAMPLES), "--steps", "2", "--maps", "--device", "cpu", "--threads", "1", "--no-progress", *extra]


def _cli(items: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, *_run_cmd(items, out, *extra)], env=_env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 3, p.stderr[-3000:]  # the item file has two bad items: a run with failed items exits 3
    assert "diffpid: 2 of 13 items failed; their reasons: `diffpid runs show " in p.stderr
    return p


def _results(out: Path) -> list[dict]:
    (run,) = find_runs(out)
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def _numbers(rows: list[dict]) -> list[tuple]:
    """What must not depend on interruption or sharding: ids, status, seeds, values, errors, arrays."""
    return [(r["id"], r["name"], r["status"], r["seed"], json.dumps(r["values"], sort_keys=True), r["error_type"],
             r["error"], sorted(r["arrays"].items())) for r in rows]


@pytest.fixture(scope="module")
def reference(items_file, tmp_path_factory) -> Path:
    """An uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("reference")
    _cli(items_file, out)
    return out


def _wait_for_records(results: Path, count: int, proc: subprocess.Popen, timeout: float = 120.0) -> int:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        n = len(list(results.glob("*.json"))) if results.is_dir() else 0
        if n >= count:
            return n
        if proc.poll() is not None:
            raise AssertionError(f"the run ended before {count} items were stored: {proc.stderr.read()[-2000:]}")
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} items stored after {timeout} s")


def killed_command(argv: list[str], out: Path, reference: Path, records: int) -> Path:
    """The run folder of ``python ARGV`` (a dataset command writing into ``out``) killed with SIGKILL once
    ``records`` items are stored in the folder of the same name as the run in ``reference``."""
    proc = subprocess.Popen([sys.executable, *argv], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    (ref_run,) = find_runs(reference)
    try:
        _wait_for_records(out / ref_run.name / "results", records, proc)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    (run,) = find_runs(out)
    return run


def killed_run(items: Path, out: Path, reference: Path, records: int, *extra: str) -> Path:
    """The run folder of ``diffpid run`` killed with SIGKILL once ``records`` items are stored."""
    return killed_command(_run_cmd(items, out, *extra), out, reference, records)


def test_kill9_then_resume_equals_single_run(items_file, reference, tmp_path):
    ref = _results(reference)
    n = len(ref)
    assert n == 13 and [r["name"] for r in ref] == [it.name for it in read_items(items_file)]  # item order
    out = tmp_path / "out"
    run = killed_run(items_file, out, reference, 3)
    partial = summarize(run)
    assert 3 <= partial.done + len(partial.failed) < n, "the kill must land midway"
    assert not (run / "results.jsonl").exists()
    p = _cli(items_file, out)
    assert f"{n - len(partial.remaining)} stored, {len(partial.remaining)} to compute" in p.stdout
    rows = _results(out)
    assert _numbers(rows) == _numbers(ref)  # nothing lost, nothing duplicated, same numbers
    assert len({r["id"] for r in rows}) == n and len(list((run / "results").glob("*.json"))) == n
    assert not [q for q in run.rglob("*.tmp")]
    # a third invocation finds everything stored
    from diffpid.runs.words import run_words

    again = run_words(items_file, out, model=pixel_folder(), samples=SAMPLES, steps=2, maps=True, progress=False)
    assert again.directory == run and again.done == n - 2 and not again.remaining
    assert _numbers(_results(out)) == _numbers(ref)


def test_damaged_records_are_detected_and_redone(items_file, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (run,) = find_runs(out)
    ref = _results(reference)
    done = [r for r in ref if r["status"] == "done"]
    a, b, c = done[0]["id"], done[1]["id"], done[2]["id"]
    rec = run / "results" / f"{a}.json"
    rec.write_bytes(rec.read_bytes()[: len(rec.read_bytes()) // 2])  # truncated record
    body = json.loads((run / "results" / f"{b}.json").read_text())
    body["values"]["words"][0]["mi"] += 1.0  # edited without its checksum
    (run / "results" / f"{b}.json").write_text(json.dumps(body))
    npz = run / "maps" / f"{c}.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncated arrays
    (run / "results" / f".{a}.json.999.tmp").write_bytes(b'{"half": ')  # a writer killed mid-write
    store = RunStore(run)
    for i in (a, b, c):
        with pytest.raises(CorruptRecord):
            store.read(i)
    s = summarize(run)
    assert set(s.corrupt) == {a, b, c} and set(s.remaining) == {a, b, c} and s.done == len(done) - 3
    p = _cli(items_file, out)
    assert "(3 damaged records redone)" in p.stdout
    assert _numbers(_results(out)) == _numbers(ref)
    assert not (run / "results" / f".{a}.json.999.tmp").exists()


def test_values_equal_the_information_functions(items_file, reference):
    """Stored MI/CMI and maps are those of mutual_information / conditional_mutual_information at the item seed."""
    from diffpid import conditional_mutual_information, load_model, mutual_information

    (run,) = find_runs(reference)
    model = load_model(pixel_folder(), device="cpu")
    items = {it.id: it for it in read_items(items_file)}
    rows = [r for r in _results(reference) if r["status"] == "done"]
    for r in (rows[0], next(r for r in rows if r["values"]["generated"])):
        it = items[r["id"]]
        assert r["seed"] == item_seed(0, it.id)
        if it.data.path is None:
            x = model.generate(it.data.prompt, seed=r["seed"], steps=2).x
        else:
            x = model.encode_image(it.data.path)
        arrays = RunStore(run).load_arrays(r["id"])
        for w in r["values"]["words"]:
            mi = mutual_information(model, x, w["word"], "", samples=SAMPLES, seed=r["seed"])
            cmi = conditional_mutual_information(model, x, it.data.prompt, word=w["word"], samples=SAMPLES,
                                                 seed=r["seed"])
            assert w["mi"] == pytest.approx(float(mi.value[0]), rel=1e-5)
            assert w["mi_stderr"] == pytest.approx(float(mi.stderr[0]), rel=1e-5)
            assert w["cmi"] == pytest.approx(float(cmi.value[0]), rel=1e-5)
            assert w["cmi_standard"] == pytest.approx(float(cmi.standard_value[0]), rel=1e-4, abs=1e-6)
            np.testing.assert_allclose(arrays[f"cmi/{w['word']}"], cmi.pixel_map[0], rtol=1e-4, atol=1e-7)
            assert arrays[f"mi/{w['word']}"].sum() == pytest.approx(w["mi"], rel=1e-4)


def test_failed_items_are_recorded_with_reasons(reference, capsys):
    from diffpid.cli import main

    (run,) = find_runs(reference)
    s = summarize(run)
    assert s.done == 11 and not s.remaining
    reasons = {r.name: (r.error_type, r.error) for r in s.failed}
    assert reasons["broken-image"][0] == "ImageError" and "broken.png" in reasons["broken-image"][1]
    assert reasons["missing-word"][0] == "ConditionError" and "'dog' is not a word" in reasons["missing-word"][1]
    assert main(["runs", "show", str(reference)]) == 0
    shown = capsys.readouterr().out
    assert "11 done, 2 failed, 0 remaining of 13 items" in shown and "failed missing-word: ConditionError" in shown
    assert "samples=8" in shown


def test_two_accelerate_processes_equal_one(items_file, reference, tmp_path):
    out = tmp_path / "out"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "--main_process_port", str(port)]
    p = subprocess.run(launch + _run_cmd(items_file, out), env=_env(), capture_output=True, text=True, timeout=300)
    # two items fail, so every rank exits 3 and the launcher reports failed children and exits non-zero
    assert p.returncode != 0 and "diffpid: 2 of 13 items failed; their reasons: " in p.stderr, p.stderr[-3000:]
    assert "on 2 processes" in p.stdout
    rows = _results(out)
    assert _numbers(rows) == _numbers(_results(reference))
    assert {r["rank"] for r in rows} == {0, 1} and {r["world"] for r in rows} == {2}


# ----- the runner and the store, without a model -------------------------------------------------

def _square(item: Item, seed: int) -> ItemResult:
    if item.data < 0:
        raise ParameterError("negative input; pass a non-negative number")
    return ItemResult({"square": item.data**2, "seed": seed}, {"row": np.arange(item.data, dtype=np.int64)})


def _items(values) -> list[Item]:
    return [Item(item_id("square", v), v, f"v{v}") for v in values]


def test_changed_parameters_start_a_new_run(tmp_path):
    items = _items([3, 1, 2])
    s1 = run_items(items, _square, out=tmp_path, parameters={"samples": 8, "seed": 0}, seed=0, progress=False)
    s2 = run_items(items, _square, out=tmp_path, parameters={"samples": 16, "seed": 0}, seed=0, progress=False)
    s3 = run_items(items, _square, out=tmp_path, parameters={"samples": 8, "seed": 1}, seed=1, progress=False)
    assert len({s1.directory, s2.directory, s3.directory}) == 3 and len(find_runs(tmp_path)) == 3
    assert json.loads((s2.directory / "run.json").read_text())["parameters"] == {"samples": 16, "seed": 0}
    again = run_items(items, _square, out=tmp_path, parameters={"seed": 0, "samples": 8}, seed=0, progress=False)
    assert again.directory == s1.directory  # same parameters in another order: the same run
    recs = collect(s1.directory)
    assert [r.values["square"] for r in recs] == [9, 1, 4]  # item order, not id order
    assert [r.seed for r in recs] == [item_seed(0, it.id) for it in items]
    assert [r.seed for r in collect(s3.directory)] == [item_seed(1, it.id) for it in items]
    assert item_seed(0, items[0].id) != item_seed(1, items[0].id)
    np.testing.assert_array_equal(RunStore(s1.directory).load_arrays(items[0].id)["row"], [0, 1, 2])


def test_user_errors_fail_the_item_and_bugs_stop_the_run(tmp_path):
    items = _items([2, -1, 5])
    s = run_items(items, _square, out=tmp_path, parameters={"k": 1}, seed=0, progress=False)
    assert s.done == 2 and [(r.name, r.error_type) for r in s.failed] == [("v-1", "ParameterError")]
    assert "non-negative" in s.failed[0].error

    def buggy(item: Item, seed: int) -> ItemResult:
        if item.data == 5:
            raise ZeroDivisionError("a bug")
        return _square(item, seed)

    with pytest.raises(ZeroDivisionError):
        run_items(_items([2, 5, 7]), buggy, out=tmp_path, parameters={"k": 2}, seed=0, progress=False)
    (run,) = [d for d in find_runs(tmp_path) if json.loads((d / "run.json").read_text())["parameters"] == {"k": 2, "seed": 0}]
    assert RunStore(run).read(item_id("square", 5)) is None  # a bug is not recorded as a result
    s = run_items(_items([2, 5, 7]), _square, out=tmp_path, parameters={"k": 2}, seed=0, progress=False)
    assert s.done == 3 and not s.failed
    retried = run_items(items, _square, out=tmp_path, parameters={"k": 1}, seed=0, progress=False, retry_failed=True)
    assert len(retried.failed) == 1
    with pytest.raises(ParameterError, match="pass one seed"):
        run_items(items, _square, out=tmp_path, parameters={"k": 1, "seed": 3}, seed=0, progress=False)
    with pytest.raises(ParameterError, match="same item"):
        run_items(_items([1, 1]), _square, out=tmp_path, parameters={"k": 3}, seed=0, progress=False)


def test_shard_is_a_deterministic_partition():
    ids = [item_id("x", i) for i in range(23)]
    parts = [shard(ids, r, 4) for r in range(4)]
    assert sorted(sum(parts, [])) == sorted(ids) and sum(len(p) for p in parts) == 23
    assert parts[1] == sorted(ids)[1::4] and shard(list(reversed(ids)), 1, 4) == parts[1]
    assert [len(p) for p in parts] == [6, 6, 6, 5]
    with pytest.raises(ParameterError):
        shard(ids, 4, 4)


def test_store_roundtrip_checksums_and_lock(tmp_path):
    store = RunStore(tmp_path / "run")
    store.create()
    values = {"v": [1.5, -2.25e-7], "f": np.float32(0.1), "a": np.arange(2)}
    store.write(ItemRecord("abc", "first", "done", values, None, None, 7, 0.1, 0, 1, "cpu", {}),
                {"m": np.eye(3, dtype=np.float32)})
    back = store.read("abc")
    assert back.values == {"v": [1.5, -2.25e-7], "f": float(np.float32(0.1)), "a": [0, 1]} and set(back.arrays) == {"m"}
    np.testing.assert_array_equal(store.load_arrays("abc")["m"], np.eye(3))
    store.write(ItemRecord("abd", None, "done", 1, None, None, 0, 0.0, 0, 1, "cpu", {}), {"m": np.zeros(3)})
    os.replace(store.arrays_path("abd"), store.arrays_path("abc"))  # arrays of another item
    with pytest.raises(CorruptRecord, match="do not match"):
        store.read("abc")
    os.replace(store.record_path("abd"), store.record_path("abe"))  # a record under another id
    with pytest.raises(CorruptRecord, match="holds item"):
        store.read("abe")
    assert store.read("zzz") is None
    (store.results / ".abc.json.1.tmp").write_text("{")
    assert [p.name for p in store.remove_temporaries()] == [".abc.json.1.tmp"]
    handle = store.lock()
    with pytest.raises(ParameterError, match="another process"):
        store.lock()
    handle.close()
    store.lock().close()


def test_item_files_jsonl_and_csv(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "items.jsonl").write_text(
        '{"image": "a.png", "prompt": "a red cat", "words": ["Cat"]}\n\n{"prompt": "the big tree"}\n')
    (tmp_path / "items.csv").write_text('id,image,prompt,words\nx,a.png,a red cat,cat\ny,,the big tree,\n')
    j, c = read_items(tmp_path / "items.jsonl"), read_items(tmp_path / "items.csv")
    assert [it.id for it in j] == [it.id for it in c]
    assert j[0].data.words == ("cat",) and j[1].data.words == ("big", "tree") and j[1].data.path is None
    assert [it.name for it in c] == ["x", "y"] and [it.name for it in j] == ["line 1", "line 3"]
    Image.fromarray(np.ones((4, 4, 3), np.uint8)).save(tmp_path / "a.png")  # new image content: a new item
    assert read_items(tmp_path / "items.jsonl")[0].id != j[0].id
    (tmp_path / "bad.jsonl").write_text('{"prompt": "a cat"}\n{"prompt": "a dog"\n')
    with pytest.raises(ParameterError, match="line 2"):
        read_items(tmp_path / "bad.jsonl")
    (tmp_path / "noprompt.jsonl").write_text('{"image": "a.png"}\n')
    with pytest.raises(ParameterError, match="no prompt"):
        read_items(tmp_path / "noprompt.jsonl")


def test_run_words_parameters_name_the_run(items_file, tmp_path):
    """Changing samples, seed or sampler of `diffpid run` gives a new run folder; the old one is untouched."""
    from diffpid.runs.words import run_words

    small = tmp_path / "items.jsonl"
    small.write_text("".join(line.replace('"img/', f'"{items_file.parent}/img/') + "\n"
                             for line in items_file.read_text().splitlines()[:2]))
    common = dict(model=pixel_folder(), steps=2, progress=False)
    first = run_words(small, tmp_path / "out", samples=2, seed=0, **common)
    before = {p.name: p.read_bytes() for p in (first.directory / "results").iterdir()}
    others = [run_words(small, tmp_path / "out", samples=3, seed=0, **common),
              run_words(small, tmp_path / "out", samples=2, seed=1, **common),
              run_words(small, tmp_path / "out", samples=2, seed=0, sampler="sobol", **common)]
    assert len({first.directory, *(o.directory for o in others)}) == 4
    assert all(o.done == 2 for o in [first, *others])
    assert {p.name: p.read_bytes() for p in (first.directory / "results").iterdir()} == before
    params = [summarize(o.directory).parameters for o in others]
    assert [(q["samples"], q["seed"], q["sampler"]) for q in params] == [(3, 0, "adaptive"), (2, 1, "adaptive"),
                                                                         (2, 0, "sobol")]
    a, b = collect(first.directory)[0], collect(others[0].directory)[0]
    assert a.id == b.id and a.seed == b.seed and a.values["words"][0]["mi"] != b.values["words"][0]["mi"]


def test_model_key_names_the_training_step(tmp_path):
    """A retrained shapes checkpoint starts new runs (`diffpid run` and the benches share the key)."""
    from diffpid.bench.common import model_key as bench_key
    from diffpid.runs.words import model_key

    folder = tmp_path / "shapes"
    shutil.copytree(pixel_folder(), folder)
    assert model_key(str(folder)) == str(folder)
    (folder / "training.json").write_text(json.dumps({"steps": 1234}))
    assert model_key(str(folder)) == f"{folder}@step1234" == bench_key(str(folder))
    (folder / "training.json").write_text("{broken")
    assert model_key(str(folder)) == str(folder)
    assert model_key("some/hub-id") == "some/hub-id" and model_key(None).startswith("embedded:shapes@step")
