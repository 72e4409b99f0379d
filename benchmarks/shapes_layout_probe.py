"""Layout probe of the shapes model: does its high-noise guess put each object where the caption says?

At high noise a denoiser's best guess of the clean image is the caption's mean scene
E[x0 | caption]. For "a red circle left of a blue box" that mean is red on the left and blue
on the right; for the same words in the other order ("a blue box left of a red circle") it
is the mirror image. This probe compares the model's guess with the world's mean scene of
the caption (rendered from the world itself), both centred per colour channel so that only
where the colours are counts, not how much of each:

- ``right``: correlation of the model's guess for the caption with the caption's mean scene;
- ``swapped``: the same for the guess from the order-swapped caption (same words, other order);
- ``binding = right - swapped``: exactly 0 for a model whose condition is a bag of words
  (a cross-attention reads its keys as a set); the world's own mean scenes give ``truth``.

It runs in seconds, so it tracks training far more cheaply than sampling
(``benchmarks/shapes_quality.py``). Results: ``benchmarks/results/<tag>.md`` and ``.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from shapes_quality import model_parser, open_model

from diffpid.shapes.model import encode_captions
from diffpid.shapes.training.loss import logsnr_table
from diffpid.shapes.render import scene_for_caption
from diffpid.shapes.sets import swap_sets

RESULTS = Path(__file__).resolve().parent / "results"


def centred(x: torch.Tensor) -> torch.Tensor:
    """Flattened ``(3, H, W)`` image with each channel's spatial mean removed."""
    return (x - x.mean(dim=(1, 2), keepdim=True)).flatten()


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = centred(a), centred(b)
    return float((a @ b) / (a.norm() * b.norm()).clamp_min(1e-12))


def mean_scene(caption: str, renders: int) -> torch.Tensor:
    return torch.stack([scene_for_caption(caption, s).image for s in range(renders)]).mean(0)


@torch.no_grad()
def guesses(components, captions: list[str], t: int, noises: torch.Tensor) -> torch.Tensor:
    """``(len(captions), 3, H, W)``: per caption, the mean over noise draws of the model's x0
    guess at timestep ``t`` on a black scene (one UNet call for all captions)."""
    a = components.scheduler.alphas_cumprod[t].float()
    x_t = (-a.sqrt() + (1 - a).sqrt() * noises).repeat(len(captions), 1, 1, 1)
    cond = encode_captions(components, [c for c in captions for _ in range(len(noises))])
    eps = components.unet(x_t, t, encoder_hidden_states=cond).sample
    x0 = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    return x0.view(len(captions), len(noises), *x0.shape[1:]).mean(1)


def main() -> None:
    ap = model_parser(__doc__.splitlines()[0], "shapes_layout_probe", "training folder: probe the EMA of its checkpoint.pt")
    ap.add_argument("--n", type=int, default=40, help="two-object captions (the swap sets' correct captions)")
    ap.add_argument("--renders", type=int, default=64, help="world scenes per caption for its mean scene")
    ap.add_argument("--noises", type=int, default=32, help="noise draws per caption")
    ap.add_argument("--logsnr", type=float, default=-3.0, help="noise level of the guess (nearest timestep)")
    args = ap.parse_args()
    comps, source, step = open_model(args)
    t = int((logsnr_table(comps) - args.logsnr).abs().argmin())
    noises = torch.randn(args.noises, 3, 32, 32, generator=torch.Generator().manual_seed(args.seed))

    rows = []
    for item in swap_sets(args.n, args.seed):
        truth = mean_scene(item.correct, args.renders)
        truth_swapped = mean_scene(item.order_swapped, args.renders)
        g_right, g_swapped = guesses(comps, [item.correct, item.order_swapped], t, noises)
        right, swapped = corr(g_right, truth), corr(g_swapped, truth)
        rows.append({"caption": item.correct, "swapped": item.order_swapped, "right": right,
                     "swapped_corr": swapped, "truth_swapped_corr": corr(truth_swapped, truth)})

    def stat(values: list[float]) -> dict:
        m = sum(values) / len(values)
        sd = math.sqrt(sum((v - m) ** 2 for v in values) / max(1, len(values) - 1))
        return {"mean": round(m, 4), "stderr": round(sd / math.sqrt(len(values)), 4)}

    report = {
        "model": source, "training_steps": step, "timestep": t, "logsnr": args.logsnr, "n": len(rows),
        "renders": args.renders, "noises": args.noises, "seed": args.seed,
        "right": stat([r["right"] for r in rows]), "swapped": stat([r["swapped_corr"] for r in rows]),
        "binding": stat([r["right"] - r["swapped_corr"] for r in rows]),
        "truth_binding": stat([1 - r["truth_swapped_corr"] for r in rows]),
        "items": rows,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = (f"# Shapes model layout probe\n\nModel: {source}; guess at timestep {t} "
          f"(log-SNR {args.logsnr}), {args.noises} noise draws, world mean scenes from {args.renders} renders, "
          f"{len(rows)} two-object captions (seed {args.seed}).\n\n"
          "| correlation with the caption's mean scene | mean | stderr |\n|---|---|---|\n"
          f"| guess from the caption (`right`) | {report['right']['mean']:.3f} | {report['right']['stderr']:.3f} |\n"
          f"| guess from the order-swapped caption (`swapped`) | {report['swapped']['mean']:.3f} | "
          f"{report['swapped']['stderr']:.3f} |\n"
          f"| **binding** = right - swapped (0 for a bag of words) | **{report['binding']['mean']:.3f}** | "
          f"{report['binding']['stderr']:.3f} |\n"
          f"| the world's own binding (1 - corr of the two mean scenes) | {report['truth_binding']['mean']:.3f} | "
          f"{report['truth_binding']['stderr']:.3f} |\n")
    (RESULTS / f"{args.tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
