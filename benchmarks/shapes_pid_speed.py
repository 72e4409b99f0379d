"""Wall time of one full PID and one full CPID of a prompt on the shipped shapes model (CPU).

The issue's bar: one full PID analysis (four conditions, default samples) of one prompt
on the CPU in under 10 seconds. Times, on a world scene of the prompt, the model load,
:func:`diffpid.pid` with the default 128 samples (plain PID of two words, and CPID given
the rest of the prompt), best and median of ``--repeats`` runs each after one warm-up,
and writes ``benchmarks/results/shapes_pid_speed.{json,md}``.

    python benchmarks/shapes_pid_speed.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

import diffpid
from diffpid.shapes.model import default_model_path
from diffpid.runs.runner import training_step
from diffpid.shapes.render import scene_for_caption

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompt", default="a big red circle left of a small blue box")
    ap.add_argument("--words", nargs=2, default=["red", "circle"])
    ap.add_argument("--samples", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    load_s, model = timed(diffpid.load_shapes_model)
    x = scene_for_caption(args.prompt, seed=0).image
    y1, y2 = args.words
    rows = {}
    for name, conditional in (("PID", False), ("CPID", True)):
        def run(conditional=conditional):
            return diffpid.pid(model, x, y1, y2, prompt=args.prompt, conditional=conditional, samples=args.samples)

        run()  # warm-up: caches the prompt encodings and the kernels
        times, result = [], None
        for _ in range(args.repeats):
            s, result = timed(run)
            times.append(s)
        rows[name] = {"best_s": round(min(times), 2), "median_s": round(statistics.median(times), 2),
                      "redundancy": round(result.redundancy.value, 4), "synergy": round(result.synergy.value, 4)}
    report = {"model": "the embedded shapes model", "training_steps": training_step(default_model_path()),
              "prompt": args.prompt, "words": args.words, "samples": args.samples, "threads": args.threads,
              "load_s": round(load_s, 2), "runs": rows, "bar_s": 10.0}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shapes_pid_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    md = (f"# PID speed on the shipped shapes model (CPU)\n\n"
          f"Prompt \"{args.prompt}\", words {y1!r} and {y2!r}, {args.samples} samples (the default), "
          f"{args.threads} threads, training step {report['training_steps']}; model load {load_s:.2f} s.\n\n"
          "| analysis | best s | median s | bar |\n|---|---|---|---|\n"
          + "".join(f"| {k} (4 conditions) | {v['best_s']:.2f} | {v['median_s']:.2f} | < 10 s |\n" for k, v in rows.items())
          + "\nThe CPID conditions on the rest of the prompt; the first run of each (not timed) encodes the prompts.\n")
    (RESULTS / "shapes_pid_speed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
