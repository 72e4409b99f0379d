"""Where along the noise levels the homonym study's informations come from.

For circles the model draws for "a COLOUR circle" (COLOUR: the homonym "orange" and the
controls red, blue, green), the orthogonal MI of the colour word, of "circle" and of the
caption (each against the empty caption, as the study's PID takes them) is split into
log-SNR bands: ``1/2 int E||e(x_a|C) - e(x_a)||^2 da`` over each band. A perfect model's
information about a single object is settled once the noise no longer hides its colour and
shape: at log-SNR ``a`` an object pixel that differs by 1 between two colours stands
``exp(a/2)`` noise deviations clear (1.6 at ``a = 1``), and a small object has about 50 of
them, so above ``a = 1`` the colour and shape are known from the noisy image alone and a
perfect model's conditional and unconditional denoisers agree. What a trained model adds
in the high bands is the difference of two imperfect denoisers, not information. The study's synergy
``S = m12 - max(m1, m2)`` (minimum-MI redundancy) takes it in whenever the caption's excess
is larger than the larger word's (docs/embedded-model.md, "The homonym").

    python benchmarks/shapes_homonym_levels.py                         # the shipped model
    python benchmarks/shapes_homonym_levels.py --model RUN/model --images 6 --samples 64 --tag T
"""

from __future__ import annotations

import json

import numpy as np

from diffpid.bench.pid_studies import PairCase, pair_data
from diffpid.models.loading import load_model
from diffpid.plan import Plan
from diffpid.settings import Settings

from shapes_quality import RESULTS, model_parser, model_under_test

BANDS = ((-np.inf, -2.0), (-2.0, 1.0), (1.0, 4.0), (4.0, np.inf))
COLOURS = ("orange", "red", "blue", "green")
PERFECT = {"word": 2.87, "circle": 2.31, "caption": 4.25}
"""A perfect model's informations of a single circle (nats; the fruit "orange" alone: 2.31)."""


def band_name(lo: float, hi: float) -> str:
    return f"< {hi:g}" if lo == -np.inf else (f">= {lo:g}" if hi == np.inf else f"{lo:g} to {hi:g}")


def split(curve) -> list[float]:
    """``1/2 int`` of one image's orthogonal integrand over each band of :data:`BANDS` (nats).

    The curve's bin means integrate to the estimate only when every bin has draws: with 64
    samples the bands add up to within about 5% of the total; the table shows both."""
    a, m = curve.logsnr, curve.mean
    width = float(np.diff(a).mean())
    return [0.5 * float(np.nansum(np.where((a >= lo) & (a < hi), m, 0.0))) * width for lo, hi in BANDS]


def main() -> None:
    ap = model_parser(__doc__.splitlines()[0], "shapes_homonym_levels", "training folder: the EMA of its checkpoint.pt")
    ap.add_argument("--images", type=int, default=6, help="circles per colour (default 6)")
    ap.add_argument("--samples", type=int, default=64, help="estimator draws per image (default 64)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    folder, source, step = model_under_test(args.model, args.checkpoint)
    model = load_model(folder, device="cpu")
    settings = Settings(samples=args.samples, seed=args.seed)
    report = {"model": source, "training_steps": step, "images": args.images, "samples": args.samples,
              "bands": [band_name(*b) for b in BANDS], "colours": {}}
    for colour in COLOURS:
        caption = f"a {colour} circle"
        rows = {"word": [], "circle": [], "caption": []}
        for i in range(args.images):
            x = pair_data(model, PairCase(image=None, prompt=caption, word_1=colour, word_2="circle"), args.seed + i)
            result = Plan().mi("word", colour).mi("circle", "circle").mi("caption", caption).run(model, x[0], settings)
            for name, rows_of in rows.items():
                info = result.mi[name]
                rows_of.append([*split(info.curve), float(info.value)])
        means = {k: np.mean(v, axis=0) for k, v in rows.items()}
        synergy = [c[-1] - max(w[-1], s[-1]) for w, s, c in zip(rows["word"], rows["circle"], rows["caption"])]
        report["colours"][colour] = {k: [round(float(x), 3) for x in v] for k, v in means.items()}
        report["colours"][colour]["synergy"] = round(float(np.mean(synergy)), 3)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    head = " | ".join(f"log-SNR {b}" for b in report["bands"])
    md = [f"# Homonym study: informations by noise level\n\nModel: {source}; {args.images} circles per colour drawn "
          f"by the model, {args.samples} samples, seed {args.seed}; orthogonal estimator against the empty caption "
          f"(nats). Perfect model, totals: colour word {PERFECT['word']} (the fruit \"orange\" alone "
          f"{PERFECT['circle']}), \"circle\" {PERFECT['circle']}, caption {PERFECT['caption']}; synergy log 4 = 1.39 "
          "(log 7 = 1.95 for orange).\n", f"| caption | term | {head} | bands' sum | total | synergy |",
          "|---|---|" + "---|" * len(BANDS) + "---|---|---|"]
    for colour, r in report["colours"].items():
        for k, label in (("word", f'"{colour}"'), ("circle", '"circle"'), ("caption", "caption")):
            v = r[k]
            md.append(f"| a {colour} circle | {label} | " + " | ".join(f"{x:.2f}" for x in v[:-1])
                      + f" | {sum(v[:-1]):.2f} | {v[-1]:.2f} | {r['synergy'] if k == 'caption' else ''} |")
    (RESULTS / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
