"""Where the estimator's variance lives on a trained network, and what each variance-reduction idea gives.

On the embedded shapes model (issue 21, item 4), for a few measured values (CMI of a word in
a two-object caption, MI of a caption), draw ``--samples`` noise levels uniformly over the
default sampler's log-SNR range with i.i.d. ``eps`` and record the orthogonal integrand
``||e(x_a|y) - e(x_a|ref)||^2`` of every draw (and its pixel map). From these draws:

1. the split of the integrand's variance into *between levels* (what a level sampler can
   remove) and *within a level* (the spread over ``eps``), in 32 bins;
2. the per-call variance, relative to the published scheme, of the ideal level samplers:
   importance sampling with the optimal piecewise density, and stratification with the
   Neyman allocation (the bound of any level sampler);
3. antithetic pairs ``(eps, -eps)`` at one level (the first ``--antithetic`` draws are
   evaluated at ``-eps`` as well): their correlation and variance per call;
4. control variates with known mean from the noise itself: low-frequency DCT coefficients
   of ``eps`` (linear and quadratic), and its projection on the image, fitted per bin on
   half the draws and evaluated on the other half;
5. the package's level samplers (published, sobol, adaptive, and the adaptive variants
   below) emulated on the recorded draws: a draw at level ``a`` returns one of the 8
   recorded draws nearest in ``a``, so each emulated estimator is unbiased for the same
   integral and its error is measured over ``--reps`` repetitions.

    python benchmarks/variance_sources.py [--samples 4096] [--antithetic 1024] [--threads 1]

Run by hand (about 10 minutes per case on one loaded CPU thread); not a test. The draws are
cached in ``--cache`` so the analyses can be rerun without the model.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch

from diffpid.engine.channel import AdaptiveSampler, logistic_weight, make_sampler, noisy

CASES = [("CMI of 'red' in 'a red circle left of a blue box'", "a red circle left of a blue box", "red"),
         ("CMI of 'triangle' in 'a small green triangle above a big orange circle'",
          "a small green triangle above a big orange circle", "triangle"),
         ("MI of 'a pink circle' (against the empty prompt)", "a pink circle", None)]
BUDGETS = [100, 300, 1000]
NEIGHBOURS = 8


def collect(model, prompt: str, word: str | None, n: int, n_anti: int, seed: int, lo: float, hi: float) -> dict:
    from diffpid.prompts import remove_words

    x = model.generate(prompt, seed=0).x[0][None]
    ref = remove_words(prompt, [word]) if word else ""
    conds = [model.encode_prompt(prompt), model.encode_prompt(ref)]
    g = torch.Generator().manual_seed(seed)
    a = lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)
    eps = torch.randn(n, *model.data_shape, generator=g)

    def integrand(idx: slice, sign: float) -> torch.Tensor:
        e = sign * eps[idx]
        xa = noisy(x.expand(len(e), *x.shape[1:]), a[idx].float(), e)
        p = model.eps(xa, a[idx].float(), conds)
        return ((p[:, 0] - p[:, 1]) ** 2).sum(1)  # (n, H, W) map

    maps = torch.cat([integrand(slice(i, i + 64), 1.0) for i in range(0, n, 64)])
    anti = torch.cat([integrand(slice(i, min(i + 64, n_anti)), -1.0).flatten(1).sum(1) for i in range(0, n_anti, 64)])
    return {"a": a.numpy(), "f": maps.flatten(1).sum(1).double().numpy(), "maps": maps.numpy(),
            "anti": anti.double().numpy(), "eps_lowfreq": lowfreq(eps, 4).numpy(),
            "eps_image": (eps.flatten(1) @ unit_image(x)).numpy()}


def unit_image(x: torch.Tensor) -> torch.Tensor:
    d = (x[0] - x[0].mean((1, 2), keepdim=True)).flatten()
    return d / d.norm()


def lowfreq(eps: torch.Tensor, k: int) -> torch.Tensor:
    """The k x k lowest 2-D DCT-II coefficients of every channel of eps (orthonormal: i.i.d. N(0, 1))."""
    h = eps.shape[-1]
    i = torch.arange(h, dtype=torch.float64)
    basis = torch.stack([torch.cos(math.pi * (i + 0.5) * j / h) * (math.sqrt(1 / h) if j == 0 else math.sqrt(2 / h))
                         for j in range(k)]).float()
    return torch.einsum("nchw,ih,jw->ncij", eps, basis, basis).flatten(1)


def analyse(d: dict, lo: float, hi: float) -> dict:
    a, f = d["a"], d["f"]
    width = hi - lo
    value = 0.5 * width * f.mean()
    bins = 32
    b = np.clip(((a - lo) / width * bins).astype(int), 0, bins - 1)
    groups = [f[b == k] for k in range(bins)]
    within = sum(((g - g.mean()) ** 2).sum() for g in groups) / len(f)
    I = width * f.mean()
    pub = make_sampler("published")
    weight = logistic_weight(torch.from_numpy(a), pub.loc, pub.scale, pub.clip).numpy()
    var_pub = width * np.mean(weight * f ** 2) - I ** 2
    dw = width / bins
    var_is = (sum(np.sqrt(np.mean(g ** 2)) for g in groups) * dw) ** 2 - I ** 2
    var_ney = (sum(g.std() for g in groups) * dw) ** 2
    n_anti = len(d["anti"])
    fa, fm = f[:n_anti], d["anti"]
    pair = 0.5 * (fa + fm)
    out = {"value": value, "within_share": within / f.var(), "ideal_is": var_is / var_pub, "neyman": var_ney / var_pub,
           "anti_corr": float(np.corrcoef(fa, fm)[0, 1]), "anti_ratio": float(2 * pair.var() / fa.var())}
    # control variates: fitted per bin (8 bins) on the first half, evaluated on the second
    z = d["eps_lowfreq"].astype(np.float64)
    n_ch = z.shape[1] // 16
    k2 = z.reshape(len(z), n_ch, 4, 4)[:, :, :2, :2].reshape(len(z), -1)
    zi = d["eps_image"].astype(np.float64)[:, None]
    for name, feats in [("lowfreq2", k2), ("lowfreq2_quad", np.concatenate([k2, k2 ** 2 - 1], 1)),
                        ("lowfreq4", z), ("image", np.concatenate([zi, zi ** 2 - 1], 1))]:
        before = after = 0.0
        b8 = np.clip(((a - lo) / width * 8).astype(int), 0, 7)
        for k in range(8):
            idx = np.where(b8 == k)[0]
            tr, te = idx[: len(idx) // 2], idx[len(idx) // 2:]
            beta, *_ = np.linalg.lstsq(feats[tr], f[tr] - f[tr].mean(), rcond=None)
            before += f[te].var() * len(te)
            after += (f[te] - feats[te] @ beta).var() * len(te)
        out[f"cv_{name}"] = after / before
    return out


def emulate(d: dict, samplers: dict, reps: int, seed: int = 0) -> dict:
    """Relative RMSE of each sampler's image value and pixel map at each budget, on the recorded draws."""
    order = np.argsort(d["a"])
    a_pop, f_pop = d["a"][order], d["f"][order]
    m_pop = d["maps"][order].reshape(len(order), -1).astype(np.float64)
    rng = np.random.default_rng(seed)

    def neighbours(a: np.ndarray) -> np.ndarray:
        j = np.searchsorted(a_pop, a)
        return np.clip(j + rng.integers(-NEIGHBOURS // 2, NEIGHBOURS // 2, size=len(a)), 0, len(a_pop) - 1)

    # the emulated integrand is the mean of the window around a, integrated over the sampler's range
    lo, hi = make_sampler("sobol").range
    grid = np.linspace(lo, hi, 24001)
    j = np.searchsorted(a_pop, grid)
    win = [np.clip(j + s, 0, len(a_pop) - 1) for s in range(-NEIGHBOURS // 2, NEIGHBOURS // 2)]
    truth = np.trapezoid(np.mean([f_pop[w] for w in win], 0), grid)
    truth_map = np.trapezoid(np.mean([m_pop[w] for w in win], 0), grid, axis=0)

    def levels(sampler, run_seed: int, start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        idx = torch.arange(start, start + n)
        u = sampler.uniforms(run_seed, torch.full_like(idx, 0), idx)
        a, w = sampler.levels(u, torch.zeros_like(idx))
        return a.double().numpy(), w.double().numpy()

    out = {}
    for name, s in samplers.items():
        errs, perrs = {n: [] for n in BUDGETS}, {n: [] for n in BUDGETS}
        edges = s.edges().numpy() if isinstance(s, AdaptiveSampler) else None
        for r in range(reps):
            for n in BUDGETS:
                seed_r = 1_000_003 * r + n
                if isinstance(s, AdaptiveSampler):
                    m = s.pilot_size(n)
                    a, w = levels(s, seed_r, 0, m)
                    i = neighbours(a)
                    bi = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, s.bins - 1)
                    count = np.maximum(np.bincount(bi, None, s.bins), 1)
                    fi = f_pop[i] / max(abs(np.mean(w * f_pop[i])), 1e-30)
                    first = torch.tensor(np.bincount(bi, fi, s.bins) / count)[None]
                    second = torch.tensor(np.bincount(bi, fi ** 2, s.bins) / count)[None]
                    moment = s.pilot_score(first, second)
                    main = s.fit(moment, start=m)
                    if n > m:
                        a2, w2 = levels(main, seed_r, m, n - m)
                        i2 = neighbours(a2)
                        a, w, i = np.concatenate([a, a2]), np.concatenate([w, w2]), np.concatenate([i, i2])
                else:
                    a, w = levels(s, seed_r, 0, n)
                    i = neighbours(a)
                est = np.mean(w * f_pop[i])
                est_map = (w[:, None] * m_pop[i]).mean(0)
                errs[n].append((est - truth) ** 2)
                perrs[n].append(((est_map - truth_map) ** 2).sum())
        out[name] = {"image": [math.sqrt(np.mean(errs[n])) / truth for n in BUDGETS],
                     "pixel": [math.sqrt(np.mean(perrs[n]) / (truth_map ** 2).sum()) for n in BUDGETS]}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=4096)
    p.add_argument("--antithetic", type=int, default=1024)
    p.add_argument("--reps", type=int, default=1000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cache", default="benchmarks/results/.variance_sources")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "variance_sources.md"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    lo, hi = make_sampler().range
    model = None
    samplers = {"published": make_sampler("published"), "sobol": make_sampler("sobol"),
                "adaptive": make_sampler("adaptive")}
    samplers.update(extra_samplers())
    rows = []
    collected = 0.0  # seconds the draws took (nan when a cache predates the record)
    for label, prompt, word in CASES:
        path = Path(args.cache) / f"{(word or 'mi').replace(' ', '_')}-{args.samples}-{args.antithetic}-{args.seed}.npz"
        if path.exists():
            d = dict(np.load(path))
        else:
            if model is None:
                import diffpid

                model = diffpid.load_shapes_model()
            t1 = time.time()
            d = collect(model, prompt, word, args.samples, args.antithetic, args.seed, lo, hi)
            d["seconds"] = np.array(time.time() - t1)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, **d)
        collected += float(d.get("seconds", np.nan))
        rows.append((label, analyse(d, lo, hi), emulate(d, samplers, args.reps)))
        print(f"{label}: {time.time() - t0:.0f}s", flush=True)
    text = render(rows, args, collected)
    Path(args.out).write_text(text)
    print(text)


def extra_samplers() -> dict:
    """The Neyman allocation alone (default pilot), and the ``neyman`` sampler (also a 10% pilot)."""
    return {"adaptive, Neyman allocation": AdaptiveSampler(allocation="neyman"), "neyman": make_sampler("neyman")}


def ratio(base: list[float], other: list[float]) -> list[float]:
    """Calls the published scheme needs per call of the other sampler for the same error (errors ~ 1/sqrt(n))."""
    return [(b / o) ** 2 for b, o in zip(base, other)]


def render(rows, args, seconds: float) -> str:
    out = ["# Variance sources on a trained network", "",
           f"Embedded shapes model, {args.samples} draws per value at uniform log-SNR levels (i.i.d. eps), "
           f"{args.antithetic} of them also at -eps. Produced by `python benchmarks/variance_sources.py` "
           + (f"(the draws took {seconds / 60:.0f} min on {args.threads} CPU thread)." if seconds == seconds else
              "(the draws were read from the cache of an earlier run)."), "",
           "## Where the variance is, and the bound of any level sampler", "",
           "| value | nats | within-level share of the variance | ideal importance density | Neyman-stratified levels |",
           "|---|---|---|---|---|"]
    for label, an, _ in rows:
        out.append(f"| {label} | {an['value']:.2f} | {an['within_share']:.0%} | {1 / an['ideal_is']:.1f}x fewer calls "
                   f"| {1 / an['neyman']:.1f}x fewer calls |")
    out += ["", "Ideal samplers know the per-level moments exactly; 'x fewer calls' is against the published "
            "scheme (i.i.d. truncated logistic levels), per call.", "",
            "## Ideas on the spread over eps", "",
            "| value | antithetic pairs: correlation, variance per call | control variates: within-level variance left "
            "(low-frequency eps 2x2, +squares, 4x4; eps on the image) |", "|---|---|---|"]
    for label, an, _ in rows:
        out.append(f"| {label} | {an['anti_corr']:+.2f}, {an['anti_ratio']:.2f}x | "
                   f"{an['cv_lowfreq2']:.2f}, {an['cv_lowfreq2_quad']:.2f}, {an['cv_lowfreq4']:.2f}; "
                   f"{an['cv_image']:.2f} |")
    out += ["", "A ratio above 1 means more variance than without the idea (cross-fitted, so an idea that explains "
            "nothing costs its fitted noise).", "",
            f"## Level samplers emulated on the recorded draws ({args.reps} repetitions)", ""]
    for kind, head in [("image", "image value, relative RMSE"), ("pixel", "pixel map, relative L2 error")]:
        out += [f"### {head}", "", "| value | sampler | " + " | ".join(f"{n} calls" for n in BUDGETS) + " |",
                "|---|---|" + "---|" * len(BUDGETS)]
        for label, _, em in rows:
            base = em["published"][kind]
            for name, r in em.items():
                cells = [f"{e:.3f}" + ("" if name == "published" else f" ({x:.1f}x)")
                         for e, x in zip(r[kind], ratio(base, r[kind]))]
                out.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
        out.append("")
    out.append("(Nx) = the published scheme needs N times the calls for the same error.")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
