"""Word senses of the shapes model: what colour it draws for a bare shape word, and how far
apart its text encoder puts words the parse pretraining may have merged.

The world draws a circle named by "circle", "a circle" or the fruit "orange" in each of
the 7 colours 1/7 of the time; a model that gives such a prompt one colour has merged the
word with something else (docs/embedded-model.md, "The homonym"). The encoder distance is
``|h1 - h2| / mean |h|`` of the word's last hidden state in the two captions.

    python benchmarks/shapes_word_probe.py                              # the shipped model
    python benchmarks/shapes_word_probe.py --checkpoint /work/train-shapes --n 21
    python benchmarks/shapes_word_probe.py --encoder-only --checkpoint /work/train-shapes
"""

from __future__ import annotations

import collections
import json

import torch

from diffpid.shapes.model import encode_captions, generate_images
from diffpid.shapes.world import COLORS

from shapes_quality import RESULTS, model_parser, open_model

PAIRS = ((("a orange", "orange"), ("a circle", "circle")), (("a big orange", "orange"), ("a big circle", "circle")),
         (("a box", "box"), ("a square", "square")), (("a circle", "circle"), ("a square", "square")),
         (("a orange", "orange"), ("a orange circle", "orange")))
"""(caption, word) pairs compared: the fruit and the circle, the synonyms, two shapes, the fruit and the colour."""
PROMPTS = ("circle", "a circle", "orange", "a orange", "a red", "a blue")


def drawn_colour(image: torch.Tensor) -> str:
    """The palette colour most of the image's lit pixels are nearest to (``"none"`` for a blank image)."""
    palette = torch.tensor([COLORS[c] for c in COLORS]) * 2 - 1
    px = image.reshape(3, -1).T
    lit = px[(px + 1).sum(1) > 1.0]
    if len(lit) == 0:
        return "none"
    nearest = ((lit[:, None, :] - palette[None]) ** 2).sum(-1).argmin(1)
    return list(COLORS)[int(torch.mode(nearest).values)]


def encoder_distances(comps) -> dict[str, float]:
    out = {}
    with torch.no_grad():
        for (a, wa), (b, wb) in PAIRS:
            h = encode_captions(comps, [a, b])
            ha, hb = h[0, a.split().index(wa) + 1], h[1, b.split().index(wb) + 1]  # token 0 is BOS
            out[f'"{wa}" of "{a}" vs "{wb}" of "{b}"'] = round(float((ha - hb).norm() / ((ha.norm() + hb.norm()) / 2)), 3)
    return out


def main() -> None:
    ap = model_parser(__doc__.splitlines()[0], "shapes_word_probe", "training folder: probe the EMA of its checkpoint.pt")
    ap.add_argument("--n", type=int, default=42, help="images per prompt")
    ap.add_argument("--encoder-only", action="store_true", help="only the encoder distances (seconds)")
    args = ap.parse_args()
    comps, source, step = open_model(args)
    report = {"model": source, "training_steps": step, "encoder_distance": encoder_distances(comps), "colours": {}}
    if not args.encoder_only:
        for p in PROMPTS:
            images = generate_images(comps, [p] * args.n, seed=args.seed)
            report["colours"][p] = dict(collections.Counter(drawn_colour(i) for i in images).most_common())
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Shapes model word senses\n\nModel: {source}; seed {args.seed}, {args.n} images per prompt, "
          "the generation defaults.\n", "| encoder states | relative distance |", "|---|---|"]
    md += [f"| {k} | {v} |" for k, v in report["encoder_distance"].items()]
    if report["colours"]:
        md += ["", "| prompt | colour of the drawn object (world: 1/7 each) |", "|---|---|"]
        md += [f'| "{p}" | {", ".join(f"{c} {k}" for c, k in v.items())} |' for p, v in report["colours"].items()]
    (RESULTS / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
