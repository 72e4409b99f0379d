"""Estimator efficiency: RMSE against a long reference run as a function of denoiser calls.

Compares the published scheme (i.i.d. truncated logistic levels, one eps per level,
loc 1, scale 2, clip 3: sampler ``published``) with the Sobol sampler and the default
(``adaptive``) on two kinds of problems:

- ``mixtures``: Gaussian mixtures with overlapping, image-shaped components (exact
  denoiser); for each problem and fixed image the reference is a run of ``--reference``
  samples, each budget repeated over ``--reps`` seeds;
- ``trained``: the embedded shapes model (a trained network), CMI of a word in a
  two-object caption, image value and pixel map; the reference is a run of
  ``--trained-reference`` samples of the default sampler, and a budget of ``n`` calls is
  repeated ``max(4, --trained-reps * 100 / n)`` times (the trained network costs about
  30 rows/s on one loaded CPU thread).

Each part's numbers are kept in the JSON file beside the table, so ``--part trained``
reruns only that part and the table shows both.

    python benchmarks/estimator_efficiency.py [--part mixtures|trained|all] [--reps 16] [--threads 2]

Run by hand (mixtures: minutes on 2 CPU cores; trained: about 30 minutes per problem on one
thread); not a test. Trained-network problems are kept as they finish
(``<out>.trained-problems.json``), so an interrupted run resumes.
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
SAMPLERS = ["published", "sobol", "adaptive", "neyman"]
TRAINED_BUDGETS = [100, 300]
TRAINED_SAMPLERS = ["published", "adaptive", "neyman"]
TRAINED = [("CMI of 'red' in 'a red circle left of a blue box'", "a red circle left of a blue box", "red"),
           ("CMI of 'triangle' in 'a small green triangle above a big orange circle'",
            "a small green triangle above a big orange circle", "triangle")]


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


def run(model, x, conds, sampler, n, seed, batch_size=4096):
    r = estimate(model, x, list(conds), [Difference(0, 1)], samples=n, sampler=sampler, seed=seed, batch_size=batch_size)
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


def part_mixtures(args) -> dict:
    """Relative RMSEs on the Gaussian-mixture problems (image level and pixel maps), pooled over problems."""
    img = {s: np.zeros(len(BUDGETS)) for s in SAMPLERS}
    pix = {s: np.zeros(len(BUDGETS)) for s in SAMPLERS}
    probs = problems()
    rows = []
    t0 = time.time()
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
    return {"image": {s: np.sqrt(v).tolist() for s, v in img.items()},
            "pixel": {s: np.sqrt(v).tolist() for s, v in pix.items()}, "budgets": BUDGETS, "problems": rows,
            "note": f"{len(probs)} problem/image pairs, {args.reps} seeds per budget, {args.reference}-sample reference, "
                    f"{time.time() - t0:.0f} s on {args.threads} CPU threads"}


def part_trained(args) -> dict:
    """Relative RMSEs on the embedded shapes model, pooled over its problems."""
    import diffpid

    model = diffpid.load_shapes_model()
    t0 = time.time()
    img = {s: np.zeros(len(TRAINED_BUDGETS)) for s in TRAINED_SAMPLERS}
    pix = {s: np.zeros(len(TRAINED_BUDGETS)) for s in TRAINED_SAMPLERS}
    rows = []
    # per-problem results survive an interrupted run (keyed by everything that determines them)
    done_path = Path(args.out).with_suffix(".trained-problems.json")
    done = json.loads(done_path.read_text()) if done_path.exists() else {}
    for name, prompt, word in TRAINED:
        key = json.dumps([name, args.trained_reference, args.trained_reps, TRAINED_BUDGETS, TRAINED_SAMPLERS])
        if key not in done:
            done[key] = trained_problem(model, prompt, word, name, args, t0)
            done_path.write_text(json.dumps(done, indent=1))
        line = done[key]
        for s in TRAINED_SAMPLERS:
            for j, n in enumerate(TRAINED_BUDGETS):
                img[s][j] += line[f"{s}@{n}"]["image_mse"] / len(TRAINED)
                pix[s][j] += line[f"{s}@{n}"]["pixel_mse"] / len(TRAINED)
        rows.append(line)
    reps = [max(4, int(round(args.trained_reps * 100 / n))) for n in TRAINED_BUDGETS]
    return {"image": {s: np.sqrt(v).tolist() for s, v in img.items()},
            "pixel": {s: np.sqrt(v).tolist() for s, v in pix.items()}, "budgets": TRAINED_BUDGETS, "problems": rows,
            "note": f"{len(TRAINED)} problems, repetitions {', '.join(map(str, reps))} at "
                    f"{', '.join(map(str, TRAINED_BUDGETS))} calls, {args.trained_reference}-sample reference of the "
                    f"adaptive sampler, {sum(r.get('seconds', 0) for r in rows) / 60:.0f} min on {args.threads} CPU "
                    "thread (the machine's other core ran other jobs)"}


def trained_problem(model, prompt: str, word: str, name: str, args, t0: float) -> dict:
    """Reference and per-budget relative squared errors of one problem on the trained network."""
    from diffpid.prompts import remove_words

    t1 = time.time()
    x = model.generate(prompt, seed=0).x[0][None]
    conds = (model.encode_prompt(prompt), model.encode_prompt(remove_words(prompt, [word])))
    r = estimate(model, x, list(conds), [Difference(0, 1)], samples=args.trained_reference,
                 sampler=make_sampler("adaptive"), seed=12345, batch_size=128)
    ref, ref_map, ref_se = r.terms[0].value[0], r.terms[0].pixel_map[0], r.terms[0].stderr[0]
    print(f"{name}: reference {ref:.4f} +- {ref_se:.4f} nats ({time.time() - t0:.0f}s)", flush=True)
    line = {"problem": name, "reference": float(ref), "reference_stderr": float(ref_se)}
    for s in TRAINED_SAMPLERS:
        for j, n in enumerate(TRAINED_BUDGETS):
            reps = max(4, int(round(args.trained_reps * 100 / n)))
            vals = [run(model, x, conds, make_sampler(s), n, 1000 * j + k, batch_size=128) for k in range(reps)]
            e_img = float(np.mean([(v - ref) ** 2 for v, _ in vals]) / ref**2)
            e_pix = float(np.mean([((mp - ref_map) ** 2).sum() for _, mp in vals]) / (ref_map**2).sum())
            line[f"{s}@{n}"] = {"rel_rmse": math.sqrt(e_img), "image_mse": e_img, "pixel_mse": e_pix, "reps": reps}
        print(f"{name}: {s} done ({time.time() - t0:.0f}s)", flush=True)
    line["seconds"] = time.time() - t1
    return line


def table(part: dict) -> list[str]:
    budgets = part["budgets"]
    names = list(part["image"])
    out = []
    for label, key in [("image value, relative RMSE", "image"), ("pixel map, relative L2 error", "pixel")]:
        t = {s: np.array(v) for s, v in part[key].items()}
        out += [f"### {label}", "", "| sampler | " + " | ".join(f"{n} calls" for n in budgets) + " |",
                "|---|" + "---|" * len(budgets)]
        out += [f"| {s} | " + " | ".join(f"{v:.4f}" for v in t[s]) + " |" for s in names]
        out += ["", "Calls the sampler needs to match the published scheme's error at each budget (fewer is better):", "",
                "| sampler | " + " | ".join(f"published@{n}" for n in budgets) + " |", "|---|" + "---|" * len(budgets)]
        for s in names[1:]:
            need = [calls_to_reach(t["published"][j], budgets, t[s]) for j in range(len(budgets))]
            out.append(f"| {s} | " + " | ".join(f"{c:.0f} ({n / c:.1f}x fewer)" for c, n in zip(need, budgets)) + " |")
        out.append("")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=["mixtures", "trained", "all"], default="all")
    p.add_argument("--reps", type=int, default=16)
    p.add_argument("--reference", type=int, default=1 << 16)
    p.add_argument("--trained-reps", type=int, default=16, help="repetitions at 100 calls (fewer at larger budgets)")
    p.add_argument("--trained-reference", type=int, default=1 << 13)
    p.add_argument("--trained-budgets", default=",".join(map(str, TRAINED_BUDGETS)), help="comma-separated calls")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "estimator_efficiency.md"))
    args = p.parse_args()
    TRAINED_BUDGETS[:] = [int(v) for v in args.trained_budgets.split(",")]
    torch.set_num_threads(args.threads)
    store = Path(args.out).with_suffix(".json")
    parts = json.loads(store.read_text()) if store.exists() else {}
    if "image" in parts:  # the file of an earlier version held the mixtures alone
        parts = {"mixtures": parts}
    if args.part in ("mixtures", "all"):
        parts["mixtures"] = part_mixtures(args)
    if args.part in ("trained", "all"):
        parts["trained"] = part_trained(args)
    out = ["# Estimator efficiency", "",
           "Relative RMSE of the orthogonal pointwise MI/CMI (image value) and relative L2 error of its pixel map "
           "against a long reference run, root mean over the problems of the squared relative errors. "
           "Budget = samples per condition = denoiser calls per condition. Produced by "
           "`python benchmarks/estimator_efficiency.py` (`--part mixtures` or `--part trained` reruns one part).", ""]
    if "mixtures" in parts:
        out += ["## Gaussian mixtures (exact denoiser)", "", parts["mixtures"].get("note", ""), ""] + table(parts["mixtures"])
    if "trained" in parts:
        tr = parts["trained"]
        out += ["## Trained network: the embedded shapes model", "", tr["note"] + ".", "",
                "| problem | reference (nats) | " + " | ".join(f"{s}@{n}" for s in tr["image"] for n in tr["budgets"])
                + " |", "|---|---|" + "---|" * (len(tr["image"]) * len(tr["budgets"]))]
        for row in tr["problems"]:
            out.append(f"| {row['problem']} | {row['reference']:.3f} +- {row['reference_stderr']:.3f} | "
                       + " | ".join(f"{row[f'{s}@{n}']['rel_rmse']:.3f}" for s in tr["image"] for n in tr["budgets"])
                       + " |")
        out += [""] + table(tr)
    out.append(f"torch {torch.__version__}.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(out) + "\n")
    store.write_text(json.dumps(parts, indent=1))
    print("\n".join(out))


if __name__ == "__main__":
    main()
