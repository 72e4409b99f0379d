"""``diffpid explain`` end to end on the tiny pixel-space model, and its bad-input handling.

Bad input must fail with one line on stderr, a non-zero exit status, and no output folder
(or the existing one untouched), before anything is computed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jsonschema
import numpy as np
import pytest

from diffpid.cli import main
from diffpid.report.results import results_schema

from tiny_pipelines import pixel_path, sd_path  # noqa: F401  (fixtures)

PROMPT = "a red cat on the table"


@pytest.fixture(scope="module")
def explained(pixel_path):  # noqa: F811
    from diffpid.explanation import explain
    from diffpid.models.loading import load_model

    model = load_model(pixel_path)
    return explain(PROMPT, model=model, samples=4, batch_size=64, attention=False, seed=1)


def test_explain_then_save_end_to_end(explained, tmp_path):
    e = explained
    assert e.words == ("red", "cat", "table") and e.pair is not None
    path = e.save(tmp_path / "r")
    data = json.loads((path / "results.json").read_text())
    jsonschema.validate(data, results_schema())
    for w in e.words:
        assert data["mi"][w]["value"] == e.mi[w].value and data["cmi"][w]["stderr"] == e.cmi[w].stderr
    assert data["pid"]["synergy"]["value"] == e.pid.synergy.value
    assert data["map_shape"] == list(e.mi["red"].pixel_map.shape) == [16, 16]
    with np.load(path / "maps.npz") as z:
        assert np.array_equal(z["cpid/redundancy"], e.cpid.redundancy.pixel_map)
        assert np.array_equal(z["image"], e.image)
    html = (path / "report.html").read_text()
    assert html.count('class="map raw"') == 2 * 3 + 2 * 4 and html.count('class="word-row"') == 3
    assert "<script src" not in e.to_html() and "http" not in e.to_html()
    assert data["model_identity"]["class"] == "DiffusersModel" and data["model_identity"]["dtype"] == "float32"
    assert data["generation"] == data["model_identity"]["generation"] and data["generation"]["steps"] >= 1
    assert data["precision"]["samples"]["words"] == 4


def test_latent_model_with_attention(sd_path, tmp_path):  # noqa: F811
    from diffpid.explanation import explain
    from diffpid.models.loading import load_model

    e = explain("a red cat", model=load_model(sd_path), samples=2, attention=True)
    path = e.save(tmp_path / "sd")
    data = json.loads((path / "results.json").read_text())
    jsonschema.validate(data, results_schema())
    assert data["image_shape"] == [32, 32, 3] and data["map_shape"] == [16, 16]  # 16x16 latents under a 32 px image
    assert data["attention"] == ["red", "cat"]
    with np.load(path / "maps.npz") as z:
        for w in ("red", "cat"):
            assert np.array_equal(z[f"attention/{w}"], e.attention[w])
    # the shared attention scale ends at the largest 99th percentile of the maps; the true maximum is kept
    scale = data["color_scales"]["attention"]
    assert scale["vmax"] == pytest.approx(max(float(np.percentile(a, 99)) for a in e.attention.values()))
    assert scale["true_max"] == max(float(a.max()) for a in e.attention.values())
    html = (path / "report.html").read_text()
    assert html.count('<img class="map raw" data-key="attention/') == 2


def run_cli(argv, capsys):
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_writes_the_report(pixel_path, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "deep" / "out"
    rc, stdout, err = run_cli(["explain", PROMPT, "--model", pixel_path, "--samples", "2", "--precision", "off", "--quiet",
                               "--words", "red", "cat", "--pair", "red", "cat", "--out", str(out)], capsys)
    assert rc == 0, err
    assert f"report: {out / 'report.html'}" in stdout
    assert "\nPID   R(red,cat) = " in stdout and "\nCPID  R(red,cat) = " in stdout and "S(red,cat) = " in stdout
    assert [ln.split()[0] for ln in stdout.splitlines()[1:3]] == ["red", "cat"]
    data = json.loads((out / "results.json").read_text())
    assert data["words"] == ["red", "cat"] and data["pair"] == ["red", "cat"]
    assert data["parameters"]["samples"] == 2 and data["parameters"]["attention"] is True
    assert data["attention"] == ["red", "cat"] and "attention" in data["color_scales"]
    assert (out / "maps" / "attention_cat.png").is_file()
    # the same command again is refused, then allowed with --overwrite
    rc, _, err = run_cli(["explain", PROMPT, "--model", pixel_path, "--samples", "2", "--precision", "off", "--no-attention", "--quiet",
                          "--out", str(out)], capsys)
    assert rc == 2 and "exists; pass --overwrite" in err
    rc, _, err = run_cli(["explain", PROMPT, "--model", pixel_path, "--samples", "2", "--precision", "off", "--no-attention", "--quiet",
                          "--out", str(out), "--overwrite", "--words", "table"], capsys)
    assert rc == 0, err
    assert json.loads((out / "results.json").read_text())["words"] == ["table"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["out"]


def test_cli_default_out_is_the_prompt_slug(pixel_path, tmp_path, capsys, monkeypatch):  # noqa: F811
    monkeypatch.chdir(tmp_path)
    rc, stdout, err = run_cli(["explain", "A red  Cat", "--model", pixel_path, "--samples", "2", "--precision", "off", "--no-attention",
                               "--quiet"], capsys)
    assert rc == 0, err
    assert (tmp_path / "diffpid-out" / "a-red-cat" / "report.html").is_file()


@pytest.mark.parametrize("extra,message", [
    (["--pair", "red", "dog"], "'dog' is not a word of the prompt"),
    (["--words", "red", "bird"], "'bird' is not a word of the prompt"),
    (["--image", "NOT_AN_IMAGE"], "cannot read the image"),
    (["--model", "/no/such/model/folder"], "is not a model folder"),
    (["--samples", "0"], "argument --samples: expected a positive whole number, got 0"),
    (["--seed", "99999999999999999999"], "argument --seed: seed must be from 0 to"),
    (["--device", "gpu0"], "unknown device 'gpu0'"),
])
def test_cli_bad_input_one_line_no_output(pixel_path, tmp_path, capsys, extra, message):  # noqa: F811
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"this is not a PNG")
    extra = [str(bad) if a == "NOT_AN_IMAGE" else a for a in extra]
    argv = ["explain", PROMPT, "--model", pixel_path, "--samples", "2", "--precision", "off", "--no-attention", "--quiet",
            "--out", str(tmp_path / "out")] + extra
    rc, stdout, err = run_cli(argv, capsys)
    assert rc == 2
    assert message in err and err.startswith("diffpid: error: ") and len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.png"]  # nothing written


def test_cli_checks_the_output_before_loading_the_model(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    rc, _, err = run_cli(["explain", PROMPT, "--model", "/no/such/model", "--out", str(out)], capsys)
    assert rc == 2 and "exists and is not a diffpid report folder" in err  # refused before the model is looked at
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_python_m_diffpid_explain_exit_status(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "diffpid", "explain", PROMPT, "--out", str(out)],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == f"diffpid: error: {out} exists; pass --overwrite (overwrite=True) to replace it"


def test_cli_analyses_a_given_image(pixel_path, tmp_path, capsys):  # noqa: F811
    from PIL import Image

    pixels = np.zeros((40, 24, 3), dtype=np.uint8)
    pixels[:, :12] = (200, 30, 30)
    Image.fromarray(pixels).save(tmp_path / "in.png")
    out = tmp_path / "out"
    rc, stdout, err = run_cli(["explain", PROMPT, "--model", pixel_path, "--image", str(tmp_path / "in.png"),
                               "--samples", "2", "--precision", "off", "--no-attention", "--quiet", "--words", "red", "--out", str(out)], capsys)
    assert rc == 0, err
    data = json.loads((out / "results.json").read_text())
    assert data["seed"] is None and data["pair"] is None and data["image_shape"] == [16, 16, 3]
    assert "given image" in (out / "report.html").read_text()
