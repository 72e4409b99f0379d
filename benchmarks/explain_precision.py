"""Time and samples of ``diffpid.explain`` on the embedded model: a fixed budget against precision targets.

    python benchmarks/explain_precision.py s64 p20 p15 [p10]
Each run explains "a big red circle left of a small blue box" (seed 0, one torch thread) and
records wall time, samples of the word run and of the decomposition run, whether the target was
met and the largest relative standard error of the words' CMI and MI. Results are appended to
``benchmarks/results/explain_precision.jsonl``; docs/estimator.md quotes them.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import diffpid
from diffpid.report.results import precision_met

PROMPT = "a big red circle left of a small blue box"
RUNS = {"s64": ("64 samples", dict(samples=64)), "p20": ("precision 0.2", dict(samples=32, precision=0.2)),
        "p15": ("precision 0.15", dict(samples=32, precision=0.15)),
        "p10": ("precision 0.1", dict(samples=32, precision=0.1))}


def main() -> None:
    out = Path(__file__).parent / "results" / "explain_precision.jsonl"
    for name in sys.argv[1:] or ["s64", "p20", "p15"]:
        label, kw = RUNS[name]
        t = time.perf_counter()
        e = diffpid.explain(PROMPT, seed=0, threads=1, progress=False, **kw)
        seconds = time.perf_counter() - t
        row = dict(run=label, seconds=round(seconds, 1), samples_words=int(e.mi[e.words[0]].samples),
                   samples_pid=int(e.pid.samples), pair=list(e.pair), met=precision_met(e),
                   max_rel_cmi=round(max(float(e.cmi[w].stderr / e.cmi[w].value) for w in e.words), 3),
                   max_rel_mi=round(max(float(e.mi[w].stderr / e.mi[w].value) for w in e.words), 3),
                   cmi={w: [round(float(e.cmi[w].value), 3), round(float(e.cmi[w].stderr), 3)] for w in e.words},
                   load_average=[round(v, 1) for v in os.getloadavg()])
        print(json.dumps(row), flush=True)
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
