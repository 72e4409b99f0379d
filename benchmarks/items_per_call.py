"""Items per second of per-word MI/CMI with and without batching across items (``diffpid run --items-per-call``).

On the embedded shapes model: ``--items`` captions of the shapes world (their images generated
first, not timed), per-word MI and CMI of each at ``--samples`` draws and batch ``--batch-sizes``, computed

- one item at a time (:func:`diffpid.runs.words.word_information`, what ``--items-per-call 1`` does),
- in groups of ``G`` items sharing denoiser calls (:func:`diffpid.runs.words.word_information_group`).

Group sizes are interleaved over ``--repeats`` and the minimum time of each is kept (the machine
is shared). Denoiser calls are counted; every grouped value is checked against its one-at-a-time
value.

    python benchmarks/items_per_call.py --threads 2
Writes ``benchmarks/results/items_per_call.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from diffpid.explanation import resolve_model
from diffpid.models.diffusers import DiffusersModel
from diffpid.runs.words import word_information, word_information_group
from diffpid.settings import Settings

OUT = Path(__file__).parent / "results"
CAPTIONS = [
    ("a red circle", ["red", "circle"]), ("a big blue square", ["big", "blue", "square"]),
    ("a green triangle left of a red circle", ["green", "triangle", "red", "circle"]),
    ("a small yellow square", ["small", "yellow", "square"]), ("a blue circle above a red square", ["blue", "above"]),
    ("a red triangle", ["red", "triangle"]), ("a big green circle", ["big", "green"]),
    ("a small blue triangle right of a yellow circle", ["small", "blue", "right", "yellow"]),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=16)
    ap.add_argument("--samples", type=int, nargs="+", default=[32, 128])
    ap.add_argument("--groups", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    m = resolve_model(None, device=args.device)
    items = []
    for i in range(args.items):
        prompt, words = CAPTIONS[i % len(CAPTIONS)]
        items.append((m.generate(prompt, seed=i, steps=20).x, prompt, words, 1000 + i))
    calls: list[int] = []
    unet_rows = DiffusersModel._unet_rows

    def counted(self, x, t, conditions):
        calls.append(len(x))
        return unet_rows(self, x, t, conditions)

    DiffusersModel._unet_rows = counted
    rows = []
    for samples, batch in [(s, b) for b in args.batch_sizes for s in args.samples]:
        settings = Settings(samples=samples, batch_size=batch, progress=False)
        best: dict[int, float] = {}
        n_calls: dict[int, int] = {}
        values: dict[int, list] = {}
        for _ in range(args.repeats):
            for g in args.groups:
                calls.clear()
                t0 = time.perf_counter()
                if g == 1:
                    out = [word_information(m, x, p, ws, settings.replace(seed=s)) for x, p, ws, s in items]
                else:
                    out = [r for lo in range(0, len(items), g)
                           for r in word_information_group(m, items[lo:lo + g], settings)]
                dt = time.perf_counter() - t0
                best[g] = min(best.get(g, float("inf")), dt)
                n_calls[g] = len(calls)
                values[g] = [[(w.mi.value, w.cmi.value) for w in info] for info in out]
        ref = np.array([v for item in values[args.groups[0]] for w in item for v in w], dtype=float)
        for g in args.groups:
            got = np.array([v for item in values[g] for w in item for v in w], dtype=float)
            rows.append(dict(samples=samples, batch_size=batch, items_per_call=g, items=len(items), seconds=round(best[g], 2),
                             items_per_s=round(len(items) / best[g], 3), denoiser_calls=n_calls[g],
                             max_rel_diff=float(np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-12)))))
            print(rows[-1], flush=True)
    OUT.mkdir(exist_ok=True)
    meta = dict(device=args.device, threads=args.threads, cpu=platform.processor() or platform.machine(),
                load_average=os.getloadavg(), torch=torch.__version__, model=m.name, data_shape=list(m.data_shape))
    (OUT / "items_per_call.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = ["# Items per call: per-word MI/CMI on the embedded shapes model", "",
             f"{args.items} items (shapes captions of 2-4 words), {args.threads} thread(s) on {args.device}; "
             f"minimum of {args.repeats} interleaved repeats; load average at the end {meta['load_average']} "
             "(a shared machine: other jobs ran beside it, times are rough). Calls are UNet calls; the last "
             "column compares every MI/CMI value with its one-item-at-a-time value.", "",
             "| batch | samples | items per call | denoiser calls | seconds | items/s | speed-up | max rel. diff vs 1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        base = next(q for q in rows if q["samples"] == r["samples"] and q["batch_size"] == r["batch_size"]
                    and q["items_per_call"] == args.groups[0])
        lines.append(f"| {r['batch_size']} | {r['samples']} | {r['items_per_call']} | {r['denoiser_calls']} | {r['seconds']} | "
                     f"{r['items_per_s']} | {base['seconds'] / r['seconds']:.2f}x | {r['max_rel_diff']:.1e} |")
    (OUT / "items_per_call.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
