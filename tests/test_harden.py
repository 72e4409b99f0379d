"""Nothing a user types deletes their files, crashes with a traceback, or gives a silently wrong result (issue 19).

The command-line cases run the real ``python -m diffpid`` in subprocesses (started together, so
the batch costs about one interpreter start) and assert the exit status, a one-line message on
stderr and that nothing was written or deleted. Most fail before a model is loaded: they pass
``--model`` a folder that does not exist, so a check made after loading would report that instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import diffpid
from diffpid.errors import (EXIT_FAILED_ITEMS, ConditionError, ImageError, ImageWarning, OutputExistsError,
                            OutputPathError, ParameterError)
from diffpid.models import images
from diffpid.report.save import _aside_name, remove_stale_partials, save_explanation, stale_partials

from report_fixtures import synthetic_explanation
from tiny_pipelines import pixel_folder, shapes_folder

SRC = str(Path(diffpid.__file__).resolve().parent.parent)
PROMPT = "a red cat on the table"
NO_MODEL = "/no/such/model/folder"


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), HF_HUB_OFFLINE="1",
                OMP_NUM_THREADS="1", DIFFPID_TEST_THREADS="1")


def run_all(commands: list[tuple[list[str], Path]], timeout: float = 300) -> list[subprocess.CompletedProcess]:
    """Run ``python -m diffpid ARGS`` in ``cwd`` for every ``(args, cwd)`` at once; their results in order."""
    procs = [subprocess.Popen([sys.executable, "-m", "diffpid", *args], cwd=cwd, env=_env(), text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for args, cwd in commands]
    out = []
    for (args, _), p in zip(commands, procs):
        stdout, stderr = p.communicate(timeout=timeout)
        out.append(subprocess.CompletedProcess(args, p.returncode, stdout, stderr))
    return out


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every path under ``root`` with its bytes (``None`` for folders)."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


@pytest.fixture
def sandbox(tmp_path: Path) -> Path:
    """A folder of the user's: files of their own, and a plain file."""
    (tmp_path / "thesis").mkdir()
    (tmp_path / "thesis" / "thesis.txt").write_text("three years of work")
    (tmp_path / "thesis" / "sub").mkdir()
    (tmp_path / "thesis" / "sub" / "data.csv").write_text("a,b\n1,2\n")
    (tmp_path / "notes.txt").write_text("not a folder")
    (tmp_path / "items.jsonl").write_text(json.dumps({"prompt": "a red cat", "words": ["red"]}) + "\n")
    return tmp_path


# ----- every command: one line, before any model is loaded, nothing written ----------------------------

EXPLAIN = ["explain", PROMPT, "--model", NO_MODEL, "--samples", "2", "--quiet"]
CASES = [
    # (args, cwd under the sandbox, expected part of the message)
    (EXPLAIN + ["--out", "thesis", "--overwrite"], ".", "--overwrite replaces only a previous diffpid report, "
                                                        "and thesis is not one (it holds no results.json"),
    (EXPLAIN + ["--out", ".", "--overwrite"], "thesis", "is the current folder; diffpid never replaces it"),
    (EXPLAIN + ["--out", "..", "--overwrite"], "thesis/sub", "is a folder above the current folder"),
    (EXPLAIN + ["--out", "/proc/x"], ".", "is on the system's virtual file system /proc"),
    (EXPLAIN + ["--out", "/sys/x"], ".", "is on the system's virtual file system /sys"),
    (EXPLAIN + ["--out", "notes.txt/x"], ".", "notes.txt is a file, not a folder"),
    (EXPLAIN + ["--seed", "99999999999999999999"], ".", "seed must be from 0 to 9223372036854775807"),
    (EXPLAIN + ["--device", "gpu0"], ".", "unknown device 'gpu0'; use cpu, cuda, cuda:N or mps"),
    (EXPLAIN + ["--pair", "red", "red"], ".", "the pair names 'red' twice"),
    (EXPLAIN + ["--samples", "0"], ".", "--samples: expected a positive whole number, got 0"),
    (["explain", "a red cat", "--model", NO_MODEL, "--pair", "red", "red cat"], ".", "overlap in the prompt"),
    (["run", "items.jsonl", "--out", "/proc/x", "--model", NO_MODEL], ".", "--out '/proc/x' is on the system's"),
    (["run", "items.jsonl", "--out", "o", "--seed", "99999999999999999999"], ".", "--seed: seed must be from 0 to"),
    (["bench", "synonyms", "--sampler", "foo", "--out", "o", "--model", NO_MODEL], ".", "argument --sampler: invalid choice: 'foo'"),
    (["bench", "localization", "--samples", "-1", "--out", "o"], ".", "--samples: expected a positive whole number"),
    (["bench", "bias", "--out", "notes.txt/o"], ".", "notes.txt is a file, not a folder"),
    (["train-shapes", "--out", "t", "--export", "notes.txt/m", "--steps", "1"], ".", "--export 'notes.txt/m'"),
]
if not torch.cuda.is_available():
    CASES.append((EXPLAIN + ["--device", "cuda"], ".", "device 'cuda' asks for a GPU but torch sees none"))


def _check_refused(args, message, rc, err) -> None:
    lines = err.strip().splitlines()
    assert rc == 2, (args, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("diffpid") and ": error: " in lines[0], (args, err)
    assert message in lines[0], (args, lines[0])
    assert "not a model folder" not in lines[0]  # refused before the model was looked at


@pytest.mark.parametrize("args, cwd, message", CASES, ids=[" ".join(c[0][:1] + c[0][-3:]) for c in CASES])
def test_bad_input_fails_in_one_line_before_the_model(sandbox, monkeypatch, capsys, args, cwd, message):
    """Every case through ``diffpid.cli.main`` in this process (the same code as the command, fast)."""
    from diffpid.cli import main

    before = snapshot(sandbox)
    monkeypatch.chdir(sandbox / cwd)
    try:
        rc = main(args)
    except SystemExit as exit:  # argparse
        rc = exit.code
    _check_refused(args, message, rc, capsys.readouterr().err)
    assert snapshot(sandbox) == before  # nothing written, nothing deleted


REAL = (0, 1, 2, 3, 5, 6, 8, 11)  # --overwrite of the user's folder, the current one, its parent; /proc; under a file; seed; pair; run


@pytest.mark.parametrize("which", [REAL, pytest.param(tuple(range(len(CASES))), marks=pytest.mark.slow)],
                         ids=["some", "all"])
def test_bad_input_real_command_writes_nothing(sandbox, which):
    """The real ``python -m diffpid`` (the default run takes the most dangerous cases; ``-m slow`` all of them)."""
    cases = [CASES[i] for i in which]
    before = snapshot(sandbox)
    results = run_all([(args, sandbox / cwd) for args, cwd, _ in cases])
    for (args, _, message), r in zip(cases, results):
        _check_refused(args, message, r.returncode, r.stderr)
    assert snapshot(sandbox) == before


# ----- 1. --overwrite replaces only a previous diffpid report --------------------------------------------

@pytest.fixture(scope="module")
def expl():
    return synthetic_explanation()


def test_overwrite_replaces_a_report_and_nothing_else(expl, tmp_path):
    out = save_explanation(expl, tmp_path / "report")
    (out / "report.html").write_text("previous")
    save_explanation(expl, out, overwrite=True)  # a previous report (every file it writes) is replaced
    assert (out / "report.html").read_text() != "previous"
    (out / "thesis.txt").write_text("mine")  # a report folder the user added a file to is not
    with pytest.raises(OutputPathError, match=r"it also holds thesis.txt, which is not part of a diffpid report"):
        save_explanation(expl, out, overwrite=True)
    (out / "thesis.txt").unlink()
    (out / "maps" / "data.csv").write_text("mine")
    with pytest.raises(OutputPathError, match=r"maps/data.csv"):
        save_explanation(expl, out, overwrite=True)
    (out / "maps" / "data.csv").unlink()
    results = json.loads((out / "results.json").read_text())
    (out / "results.json").write_text(json.dumps({**results, "schema": "someone-else/1"}))
    with pytest.raises(OutputPathError, match=r"no diffpid schema id"):
        save_explanation(expl, out, overwrite=True)
    (tmp_path / "link").symlink_to(out)
    with pytest.raises(OutputPathError, match=r"is a symbolic link"):
        save_explanation(expl, tmp_path / "link", overwrite=True)
    (tmp_path / "empty").mkdir()
    save_explanation(expl, tmp_path / "empty", overwrite=True)  # an empty folder loses nothing
    assert (tmp_path / "empty" / "results.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "link", "report"]  # nothing hidden left


def test_overwrite_never_touches_the_current_folder(expl, tmp_path, monkeypatch):
    out = save_explanation(expl, tmp_path / "report")  # even a report folder, when the user stands in it
    monkeypatch.chdir(out)
    for path in (".", out, out.parent, "/"):
        with pytest.raises(OutputPathError, match=r"current folder"):
            save_explanation(expl, path, overwrite=True)
    assert (out / "results.json").is_file()


# ----- 2. output paths: the package's own errors, never a raw OSError ------------------------------------

def test_save_raises_output_path_error(expl, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("x")
    for path, message in (("/proc/x", "virtual file system /proc"), ("/sys/x", "virtual file system /sys"),
                          (tmp_path / "notes.txt" / "out", "is a file, not a folder")):
        with pytest.raises(OutputPathError, match=message):
            save_explanation(expl, path)
    with pytest.raises(OutputExistsError, match=r"is not a diffpid report folder \(it is a file"):
        expl.save(tmp_path / "notes.txt")
    with pytest.raises(ParameterError, match=r"must be a folder path"):
        expl.save(5)
    # a failure of the disk during the write (full disk): OutputPathError, nothing left behind
    from diffpid.report import save as save_module

    def full(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(save_module.np, "savez_compressed", full)
    with pytest.raises(OutputPathError, match=r"cannot write the report to .*No space left on device"):
        expl.save(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_unwritable_folder_is_found_by_a_probe(tmp_path, monkeypatch):
    import tempfile

    from diffpid.output_paths import check_writable

    def refuse(*a, **k):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", refuse)  # what a read-only mount or a foreign folder does
    with pytest.raises(OutputPathError, match=r"nothing can be created in .*Permission denied"):
        check_writable(tmp_path / "a" / "b")
    monkeypatch.undo()
    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing


# ----- 3. images by their real range ---------------------------------------------------------------------

RAMP = np.arange(256)


def _rgb(image) -> np.ndarray:
    return np.asarray(images.to_rgb(image))


def test_sixteen_and_thirty_two_bit_grey_by_their_range(tmp_path):
    grey16 = np.tile((RAMP * 257).astype(np.uint16), (2, 1))  # 0..65535
    for name in ("g.png", "g.tif"):
        Image.fromarray(grey16).save(tmp_path / name)
        assert Image.open(tmp_path / name).mode == "I;16"
        out = _rgb(tmp_path / name)
        assert out.shape == (2, 256, 3) and np.array_equal(out[0, :, 0], RAMP) and (out[..., 0] == out[..., 2]).all()
    grey32 = np.tile(np.round(RAMP * (2**31 - 1) / 255).astype(np.int32), (2, 1))
    Image.fromarray(grey32).save(tmp_path / "g32.tif")
    assert Image.open(tmp_path / "g32.tif").mode == "I"
    assert np.array_equal(_rgb(tmp_path / "g32.tif")[1, :, 1], RAMP)
    # an in-memory mode I image whose values fit in 16 bits is 16-bit grey (how older Pillow opens 16-bit PNG)
    assert np.array_equal(_rgb(Image.fromarray((RAMP * 257).astype(np.int32)[None]))[0, :, 0], RAMP)
    with pytest.raises(ImageError, match=r"negative values"):
        images.to_rgb(Image.fromarray(np.array([[-5, 7]], dtype=np.int32)))
    assert np.array_equal(_rgb((RAMP * 257).astype(np.uint16)[None])[0, :, 0], RAMP)  # uint16 arrays too


def test_float_tiff_in_zero_one_or_refused(tmp_path):
    Image.fromarray((RAMP / 255).astype(np.float32)[None]).save(tmp_path / "f.tif")
    assert Image.open(tmp_path / "f.tif").mode == "F"
    assert np.array_equal(_rgb(tmp_path / "f.tif")[0, :, 0], RAMP)
    Image.fromarray(RAMP.astype(np.float32)[None]).save(tmp_path / "f255.tif")
    with pytest.raises(ImageError, match=r"values span \[0, 255\], not 0..1"):
        images.to_rgb(tmp_path / "f255.tif")
    with pytest.raises(ImageError, match=r"NaN or Inf"):
        images.to_rgb(Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32)))


def test_alpha_is_composited_onto_white_with_one_warning(monkeypatch):
    monkeypatch.setattr(images, "_warned", set())
    la = Image.fromarray(np.array([[[0, 128], [200, 255], [90, 0]]], dtype=np.uint8), "LA")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = _rgb(la)
        _rgb(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    # out = alpha * value + (1 - alpha) * 255: black at alpha 128 -> 127, opaque kept, transparent -> white
    assert out[0, :, 0].tolist() == [127, 200, 255]
    assert [str(w.message) for w in caught if w.category is ImageWarning] == [images.ALPHA_MESSAGE]  # once
    assert _rgb(Image.new("La", (1, 1), (64, 128)))[0, 0].tolist() == [191] * 3  # premultiplied: 64 + 127
    rgba = np.zeros((1, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)
    assert _rgb(rgba).tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_palette_cmyk_and_refused_modes():
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    p.putpixel((1, 0), 1)
    assert _rgb(p).tolist() == [[[0, 0, 0], [10, 20, 30]]]
    p.info["transparency"] = 1
    assert _rgb(p)[0, 1].tolist() == [255, 255, 255]
    assert _rgb(Image.new("CMYK", (1, 1), (0, 255, 255, 0)))[0, 0].tolist() == [255, 0, 0]
    assert _rgb(Image.new("1", (1, 1), 1))[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ImageError, match=r"mode 'LAB' are not supported"):
        images.to_rgb(Image.new("LAB", (2, 2)))


def test_tiny_images_warn_when_upscaled(monkeypatch):
    monkeypatch.setattr(images, "_warned", set())
    with pytest.warns(ImageWarning, match=r"1x1 pixels and is upscaled 32x to the model's 32x32"):
        t = images.image_tensor(Image.new("RGB", (1, 1), (255, 0, 0)), (32, 32))
    assert t.shape == (1, 3, 32, 32) and torch.allclose(t[0, 0], torch.ones(32, 32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        images.image_tensor(Image.new("RGB", (16, 16)), (32, 32))  # 2x: no warning


def test_cli_warns_about_alpha_in_one_line(tmp_path):
    Image.new("RGBA", (8, 8), (0, 0, 0, 128)).save(tmp_path / "a.png")
    (r,) = run_all([(["explain", PROMPT, "--model", NO_MODEL, "--image", "a.png", "--out", "o"], tmp_path)])
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[0] == f"diffpid: warning: {images.ALPHA_MESSAGE}"
    assert lines[1].startswith("diffpid: error: ") and "not a model folder" in lines[1] and len(lines) == 2


# ----- 4, 5, 9. the API: one-line errors that name the problem, before the model ----------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    (dict(prompt=5), ParameterError, "prompt must be a string, got int"),
    (dict(prompt="  "), ParameterError, "the prompt is empty"),
    (dict(seed=10**20), ParameterError, "seed must be a whole number from 0 to"),
    (dict(seed=-1), ParameterError, "seed must be a whole number"),
    (dict(device="gpu0"), ParameterError, "unknown device 'gpu0'"),
    (dict(samples=0), ParameterError, "samples must be a positive whole number"),
    (dict(words=["red", 3]), ParameterError, "words must hold words (strings), got int 3"),
    (dict(words=[]), ParameterError, "words is empty"),
    (dict(words="dog"), ConditionError, "'dog' is not a word of the prompt"),
    (dict(pair=("red", "red")), ConditionError, "the pair names 'red' twice"),
    (dict(pair="red cat"), ParameterError, "pair must be two words"),
    (dict(pair=("red", "cat", "table")), ParameterError, "a pair is two words, got 3"),
    (dict(pair=("red", "dog")), ConditionError, "'dog' is not a word of the prompt"),
    (dict(redundancy="max"), ParameterError, "redundancy"),
])
def test_explain_api_checks_before_loading(kwargs, error, message):
    from diffpid.explanation import explain

    prompt = kwargs.pop("prompt", PROMPT)
    with pytest.raises(error) as info:
        explain(prompt, model=NO_MODEL, **kwargs)  # a model would fail with ModelLoadError
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_names_the_device_not_the_folder():
    from diffpid.explanation import explain
    from diffpid.models.loading import load_model

    for call in (lambda: explain(PROMPT, model=NO_MODEL, device="cuda"),
                 lambda: load_model(pixel_folder(), device="cuda"), lambda: load_model(NO_MODEL, device="cuda:0")):
        with pytest.raises(ParameterError, match=r"device 'cuda(:0)?' asks for a GPU but torch sees none"):
            call()


def test_words_as_a_string_and_repeated_words():
    from diffpid.explanation import explain
    from diffpid.models.loading import load_model

    m = load_model(pixel_folder())
    e = explain(PROMPT, model=m, words="red", samples=2, attention=False)  # one word, not 'r', 'e', 'd'
    assert e.words == ("red",) and e.pair is None
    e = explain(PROMPT, model=m, words=["Red", "cat", "red"], samples=2, attention=False)
    assert e.words == ("red", "cat") and e.pair is not None  # the repeat is dropped, the two words decomposed


def test_cli_repeated_words_are_one_word(tmp_path, capsys):
    from diffpid.cli import main

    rc = main(["explain", PROMPT, "--model", pixel_folder(), "--words", "red", "red", "--samples", "2",
               "--no-attention", "--quiet", "--out", str(tmp_path / "o")])
    assert rc == 0 and "same word" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "results.json").read_text())["words"] == ["red"]


# ----- 6. punctuation with the embedded model --------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded():
    from diffpid.shapes.model import load_shapes_model

    return load_shapes_model(device="cpu")


def test_embedded_model_drops_punctuation_and_finds_words_as_written(embedded):
    from diffpid.prompts import token_span

    m = embedded
    written = "a big red circle, left of a small blue box."
    plain = "a big red circle left of a small blue box"
    assert m.encode_prompt(written).token_ids == m.encode_prompt(plain).token_ids
    assert torch.equal(m.encode_prompt(written).embeddings, m.encode_prompt(plain).embeddings)
    for word, index in (("circle", 4), ("left", 5), ("box", 10)):
        (i,) = token_span(written, word, m)
        t = m.tokenize(written)[i]
        assert i == index and written[t.start:t.end] == word
    with pytest.raises(ConditionError, match=r"outside the vocabulary of shapes: dog"):
        m.encode_prompt("a red dog.")


def test_word_level_tokenizers_with_punctuation_are_left_alone():
    from diffpid.shapes.model import build_tokenizer, drop_punctuation
    from tiny_pipelines import clip_tokenizer, word_tokenizer

    assert not drop_punctuation(word_tokenizer(words=("a", "red", ",", "cat")))  # knows ','
    assert not drop_punctuation(clip_tokenizer())  # not word-level: CLIP encodes ',' as a token
    assert build_tokenizer()("red, cat!").input_ids == build_tokenizer()("red cat").input_ids


def test_explain_a_punctuated_prompt_on_the_embedded_model(embedded):
    from diffpid.explanation import explain

    written = "a big red circle, left of a small blue box."
    e = explain(written, model=embedded, words=["red", "box"], samples=2, attention=False)
    plain = explain(written.replace(",", "").replace(".", ""), model=embedded, words=["red", "box"], samples=2,
                    attention=False)
    assert e.prompt == written and e.words == ("red", "box") and e.pair == ("red", "box")
    for w in e.words:  # the same encoded prompts, image and draws: the same numbers
        assert e.mi[w].value == plain.mi[w].value and e.cmi[w].value == plain.cmi[w].value


# ----- 7. stale partial folders of killed saves ----------------------------------------------------------------

def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_partial_folders_are_removed_and_live_ones_kept(expl, tmp_path):
    out = tmp_path / "out"
    name = _aside_name("out", "partial")  # .out.partial-<host>-<pid>-<random>: this process, alive
    host = name.split("-")[1]
    dead = tmp_path / f".out.partial-{host}-{_dead_pid()}-{'a' * 12}"
    live = tmp_path / name
    legacy = tmp_path / f".out.partial-{'b' * 12}"  # written by an older diffpid, no owner in the name
    foreign = tmp_path / f".out.partial-{host}-{_dead_pid()}-{'c' * 12}"
    other = tmp_path / f".other.partial-{host}-{_dead_pid()}-{'d' * 12}"
    for d in (dead, live, legacy, foreign, other):
        d.mkdir()
        (d / "results.json").write_text("{")
    (foreign / "thesis.txt").write_text("mine")  # holds something a report does not write: never removed
    (tmp_path / ".out.partial-notes").mkdir()  # not a name diffpid makes
    assert stale_partials(out) == [dead]
    assert set(stale_partials(out, now=time.time() + 7200)) == {dead, live, legacy}  # an hour old: stale
    save_explanation(expl, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".out.partial-notes", foreign.name, legacy.name, live.name, other.name, "out"])
    assert remove_stale_partials(out) == []


def test_the_next_run_cleans_up_before_loading(tmp_path):
    host = _aside_name("o", "partial").split("-")[1]
    partial = tmp_path / f".o.partial-{host}-{_dead_pid()}-{'e' * 12}"  # what a killed `explain --overwrite` leaves
    partial.mkdir()
    (partial / "maps.npz").write_bytes(b"half")
    (r,) = run_all([(["explain", PROMPT, "--model", NO_MODEL, "--out", "o"], tmp_path)])
    assert r.returncode == 2 and "not a model folder" in r.stderr
    assert not partial.exists() and list(tmp_path.iterdir()) == []


# ----- 8. failed items exit 3 ------------------------------------------------------------------------------------

def test_run_with_failed_items_exits_3(tmp_path):
    rows = [{"id": "ok", "prompt": "a red cat", "words": ["red"]},
            {"id": "bad-word", "prompt": "a red cat", "words": ["dog"]}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (r,) = run_all([(["run", "items.jsonl", "--out", "runs", "--model", pixel_folder(), "--samples", "2",
                      "--steps", "2", "--no-progress"], tmp_path)])
    assert r.returncode == EXIT_FAILED_ITEMS == 3, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("diffpid: 1 of 2 items failed; their reasons: `diffpid runs show runs/words-")
    assert last.endswith("/results.jsonl)")
    assert "1 done, 1 failed" in r.stdout


def test_bench_with_failed_items_exits_3(tmp_path, capsys, monkeypatch):
    from diffpid.cli import main

    cases = tmp_path / "cases.csv"
    cases.write_text("prompt,word_1,word_2,group\na red circle,red,circle,bias\na red circle,red,dog,bias\n"
                     "a blue box,blue,box,bias\n")
    monkeypatch.chdir(tmp_path)
    rc = main(["bench", "bias", "--cases", str(cases), "--model", shapes_folder(), "--samples", "2",
               "--resamples", "10", "--out", "bench", "--no-progress"])
    assert rc == 3
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "diffpid: 1 of 3 items failed; their reasons: `diffpid runs show bench`")


def test_every_item_failed_exits_3(tmp_path, capsys):
    from diffpid.cli import main

    cases = tmp_path / "cases.csv"
    cases.write_text("prompt,word_1,word_2,group\na red circle,red,dog,synonym\n")
    rc = main(["bench", "synonyms", "--cases", str(cases), "--model", "shapes-oracle", "--samples", "2",
               "--out", str(tmp_path / "o"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 3 and err[-1].startswith("diffpid: error: every synonyms case failed; see why with `diffpid runs")


@pytest.mark.parametrize("folder", ["sd", "shapes"])
def test_generation_shows_its_progress_and_restores_the_pipeline(folder, capsys):
    """Issue 19.11: generation under load printed nothing; it now shows a bar over its steps
    (pipelines and component-only models alike), and a pipeline's own bar setting is restored."""
    from diffpid.models.loading import load_model
    from tiny_pipelines import sd_folder

    m = load_model(sd_folder() if folder == "sd" else shapes_folder())
    before = dict(getattr(m.pipeline, "_progress_bar_config", {})) if m.pipeline is not None else None
    quiet = m.generate("a red circle" if folder == "shapes" else "a cat", seed=0, steps=3)
    assert "generating" not in capsys.readouterr().err
    loud = m.generate("a red circle" if folder == "shapes" else "a cat", seed=0, steps=3, progress=True)
    err = capsys.readouterr().err
    assert "generating" in err and "3/3" in err
    assert torch.equal(quiet.x, loud.x)  # the bar changes nothing but the terminal
    if m.pipeline is not None:
        assert m.pipeline._progress_bar_config == before
