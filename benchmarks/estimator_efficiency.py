"""Estimator efficiency: RMSE against the exact value as a function of denoiser calls.

Compares the published scheme (i.i.d. truncated logistic levels, one eps per level,
loc 1, scale 2, clip 3: sampler ``published``) with the Sobol sampler and the default
(``adaptive``), on Gaussian mixtures with overlapping, image-shaped components where
the exact denoiser is known. For each problem and fixed image, the reference value is a
run of 2^17 samples; each budget is repeated over independent seeds.

    python benchmarks/estimator_efficiency.py [--reps 16] [--out benchmarks/results/estimator_efficiency.md]

Run by hand (minutes on 2 CPU cores); not a test.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from diffpid.engine.channel import make_sampler
from diffpid.engine.estimate import Difference, estimate
from diffpid.models.mixture import GaussianMixture

BUDGETS = [100, 300, 1000, 3000]
SAMPLERS = ["published", "sobol", "adaptive"]


def problems(seed: int = 0):
    """Hard mixtures: smooth random image means that overlap, two labels per component."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for name, k, shape, scale, var in [
        ("image 3x16x16, 8 overlapping components", 8, (3, 16, 16), 0.75, 0.05),
        ("image 3x32x32, 16 components, broad", 16, (3, 32, 32), 0.5, 0.1),
    ]:
        base = torch.randn(k, *shape, generator=g) * scale / 3
        means = torch.nn.functional.avg_pool2d(base, 5, 1, 2) * 3
        labels = {"y": [i % 4 for i in range(k)], "z": [(i // 4) % 2 for i in range(k)]}
        m = GaussianMixture(means, var, labels=labels)
        x, comp = m.sample(3, generator=g)
        for i in range(len(x)):
            lab = {n: int(v[comp[i]]) for n, v in m.labels.items()}
            mi = (m.encode_prompt({"y": lab["y"]}), m.unconditional())
            cmi = (m.encode_prompt(lab), m.encode_prompt({"z": lab["z"]}))
            out.append((f"{name}: MI of y, image {i}", m, x[i : i + 1], mi))
            out.append((f"{name}: CMI of y given z, image {i}", m, x[i : i + 1], cmi))
    return out


def run(model, x, conds, sampler, n, seed):
    r = estimate(model, x, list(conds), [Difference(0, 1)], samples=n, sampler=sampler, seed=seed, batch_size=4096)
    return r.terms[0].value[0], r.terms[0].pixel_map[0]


def calls_to_reach(target: float, budgets, rmse) -> float:
    """Log-log interpolation of the budget at which ``rmse`` falls to ``target``."""
    lb, lr = np.log(budgets), np.log(rmse)
    if target >= rmse[0]:
        slope = (lr[1] - lr[0]) / (lb[1] - lb[0])
        return float(np.exp(lb[0] + (math.log(target) - lr[0]) / slope))
    for i in range(len(budgets) - 1):
        if rmse[i] >= target >= rmse[i + 1]:
            t = (math.log(target) - lr[i]) / (lr[i + 1] - lr[i])
            return float(np.exp(lb[i] + t * (lb[i + 1] - lb[i])))
    slope = (lr[-1] - lr[-2]) / (lb[-1] - lb[-2])
    return float(np.exp(lb[-1] + (math.log(target) - lr[-1]) / slope))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=16)
    p.add_argument("--reference", type=int, default=1 << 16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "estimator_efficiency.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    # rel_rmse[sampler][budget] collects relative squared errors over problems
    img = {s: np.zeros(len(BUDGETS)) for s in SAMPLERS}
    pix = {s: np.zeros(len(BUDGETS)) for s in SAMPLERS}
    probs = problems()
    rows = []
    for name, model, x, conds in probs:
        ref, ref_map = run(model, x, conds, make_sampler("sobol"), args.reference, 12345)
        line = {"problem": name, "reference": ref}
        for s in SAMPLERS:
            for j, n in enumerate(BUDGETS):
                vals = [run(model, x, conds, make_sampler(s), n, 1000 * j + r) for r in range(args.reps)]
                e_img = np.mean([(v - ref) ** 2 for v, _ in vals]) / ref**2
                e_pix = np.mean([((mp - ref_map) ** 2).sum() for _, mp in vals]) / (ref_map**2).sum()
                img[s][j] += e_img / len(probs)
                pix[s][j] += e_pix / len(probs)
                line[f"{s}@{n}"] = math.sqrt(e_img)
        rows.append(line)
        print(f"{name}: reference {ref:.4f} nats ({time.time() - t0:.0f}s)", flush=True)

    img = {s: np.sqrt(v) for s, v in img.items()}
    pix = {s: np.sqrt(v) for s, v in pix.items()}
    out = ["# Estimator efficiency", "",
           f"Relative RMSE (root mean over {len(probs)} problem/image pairs of the squared relative error) of the "
           f"orthogonal pointwise MI/CMI against a {args.reference}-sample reference, {args.reps} seeds per budget. "
           "Budget = samples per condition = denoiser calls per condition. Produced by "
           "`python benchmarks/estimator_efficiency.py`.", ""]
    for label, table in [("Image level", img), ("Pixel level (relative L2 error of the map)", pix)]:
        out += [f"## {label}", "", "| sampler | " + " | ".join(f"{n} calls" for n in BUDGETS) + " |",
                "|---|" + "---|" * len(BUDGETS)]
        for s in SAMPLERS:
            out.append(f"| {s} | " + " | ".join(f"{v:.4f}" for v in table[s]) + " |")
        out.append("")
        out.append("Calls the sampler needs to match the published scheme's error at each budget (fewer is better):")
        out.append("")
        out.append("| sampler | " + " | ".join(f"published@{n}" for n in BUDGETS) + " |")
        out.append("|---|" + "---|" * len(BUDGETS))
        for s in SAMPLERS[1:]:
            need = [calls_to_reach(table["published"][j], BUDGETS, table[s]) for j in range(len(BUDGETS))]
            out.append(f"| {s} | " + " | ".join(f"{c:.0f} ({n / c:.1f}x fewer)" for c, n in zip(need, BUDGETS)) + " |")
        out.append("")
    out.append(f"Total time {time.time() - t0:.0f} s on {args.threads} CPU threads, torch {torch.__version__}.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(out) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"image": {s: v.tolist() for s, v in img.items()},
                                                               "pixel": {s: v.tolist() for s, v in pix.items()},
                                                               "budgets": BUDGETS, "problems": rows}, indent=1))
    print("\n".join(out))


if __name__ == "__main__":
    main()
