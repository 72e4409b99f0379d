"""Every estimator subcommand has the same settings flags with their defaults; --version; --threads; the demo."""

from __future__ import annotations

import argparse
import math
import re

import pytest
import torch

import diffpid
from diffpid.cli import build_parser, main
from diffpid.settings import Settings

FLAGS = ("--samples", "--precision", "--max-samples", "--sampler", "--batch-size", "--seed", "--device", "--dtype",
         "--threads", "--no-progress")
"""The settings flags, in the order ``add_settings_arguments`` registers them."""

SAMPLES = {("demo",): 256, ("explain",): 32, ("run",): 64, ("bench", "localization"): 32,
           ("bench", "compositional"): 100, ("bench", "intervention"): 32, ("bench", "bias"): 32,
           ("bench", "synonyms"): 32, ("bench", "homonyms"): 32, ("bench", "uniqueness"): 32, ("serve",): 16}
"""Each estimator subcommand and its default number of samples (everything else is the package default)."""

PRECISION = {("explain",): 0.15}
"""Commands whose default is a precision target (``samples`` is then the first round)."""


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _command(path: tuple[str, ...]) -> argparse.ArgumentParser:
    p = build_parser()
    for name in path:
        p = _subparsers(p)[name]
    return p


def test_every_estimator_command_is_listed():
    top = _subparsers(build_parser())
    estimators = {(n,) for n in top if n not in ("train-shapes", "runs", "bench")}
    estimators |= {("bench", n) for n in _subparsers(top["bench"])}
    assert estimators == set(SAMPLES)  # a new estimator command must join the table above


@pytest.mark.parametrize("path", sorted(SAMPLES), ids=" ".join)
def test_same_settings_flags_and_defaults(path):
    p = _command(path)
    by_flag = {o: a for a in p._actions for o in a.option_strings}
    assert all(f in by_flag for f in FLAGS), [f for f in FLAGS if f not in by_flag]
    d = Settings(samples=SAMPLES[path], precision=PRECISION.get(path))
    expected = {"samples": d.samples, "precision": d.precision, "max_samples": d.max_samples, "sampler": d.sampler,
                "batch_size": d.batch_size, "seed": d.seed, "device": d.device, "dtype": d.dtype,
                "threads": d.threads, "progress": True}
    assert {by_flag[f].dest: by_flag[f].default for f in FLAGS} == expected
    text = re.sub(r"\s+", " ", p.format_help())
    for f in FLAGS:  # each flag appears in --help once, in the one settings group
        assert len(re.findall(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text.split("estimator settings")[1])) >= 1
    assert f"(default {SAMPLES[path]})" in text and "(default 64)" in text
    assert f"(default {PRECISION.get(path, 'off')})" in text and f"(default {Settings().sampler})" in text
    assert "(default 4096)" in text and "(default 0)" in text
    assert text.count("estimator settings (the same for every command)") == 1
    assert not [a for a in p._actions if a.option_strings == ["--cpu"]]


def test_settings_flags_parse_the_same_everywhere():
    extra = {("run",): ["items.jsonl", "--out", "o"], ("explain",): ["a red cat"]}
    flags = ["--samples", "5", "--sampler", "sobol", "--batch-size", "3", "--seed", "7", "--device", "cpu",
             "--dtype", "bf16", "--threads", "1", "--no-progress", "--precision", "0.2", "--max-samples", "99"]
    want = Settings(samples=5, sampler="sobol", batch_size=3, seed=7, device="cpu", dtype="bfloat16", threads=1,
                    progress=False, precision=0.2, max_samples=99)
    from diffpid.settings import settings_from_args

    for path in SAMPLES:
        need = extra.get(path, ["--out", "o"] if path[0] == "bench" else [])
        args = build_parser().parse_args([*path, *need, *flags])
        assert settings_from_args(args) == want, path


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"diffpid {diffpid.__version__}"


def test_a_usage_error_is_one_line(capsys):
    assert main(["bench", "bias", "--out", "o", "--samples", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("diffpid: error: argument --samples") and len(err.strip().splitlines()) == 1
    assert main(["run", "items.jsonl", "--out", "o", "--cpu"]) == 2  # --cpu is --device cpu now
    assert "unrecognized arguments: --cpu" in capsys.readouterr().err


def test_demo_takes_the_settings_and_threads(capsys):
    """--threads takes effect; the estimates are within 4 standard errors of the exact log p(x|y)/p(x)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2 if before == 1 else 1)
    try:
        assert main(["demo", "--images", "2", "--samples", "64", "--threads", str(before), "--no-progress"]) == 0
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)
    out = capsys.readouterr().out
    rows = re.findall(r"i_o = (\S+) \+- (\S+) .* exact log p\(x\|y\)/p\(x\) = (\S+)", out)
    assert len(rows) == 2
    for value, stderr, exact in rows:
        assert abs(float(value) - float(exact)) < 4 * float(stderr) + 1e-3
        assert float(exact) == pytest.approx(math.log(4), abs=0.05)  # well-separated components
    assert main(["demo", "--device", "cuda:0"]) == 2  # the exact mixture runs on the CPU
    err = capsys.readouterr().err  # no GPU here: the device check; with one: the demo's own refusal
    assert "runs in float64 on the CPU" in err or "asks for a GPU" in err
