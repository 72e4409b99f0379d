"""The empty caption's objects: the shapes and colours a shapes model draws for "" against the world's.

A perfect model draws, for the empty caption, the world's joint of shape and colour. The
pointwise information of a caption about an image is ``log p(x | caption) / p(x | "")``, so
a shape and colour the model's unconditional distribution draws too rarely get too much
information from every caption that names them, and the homonym study's controls differ by
colour for that reason (docs/embedded-model.md, "The empty caption's colours"). The model's
images and the world's scenes for the empty caption (the world blanks captions independently
of the scene) are read by the same shapes checker, so the two counts share its errors.

    python benchmarks/shapes_empty_colours.py                       # the shipped model
    python benchmarks/shapes_empty_colours.py --model RUN/model --n 256 --tag shapes_empty_colours-mine
"""

from __future__ import annotations

import collections
import json
import random

from diffpid.shapes.captions import sample_plan
from diffpid.shapes.check import find_blobs
from diffpid.shapes.model import generate_images
from diffpid.shapes.render import render_plans
from diffpid.shapes.world import COLORS, SHAPES

from shapes_quality import RESULTS, model_parser, open_model


def count(images) -> dict[str, dict[str, int]]:
    """Objects the shapes checker reads in ``images``, by shape and then colour."""
    by = {s: collections.Counter() for s in SHAPES}
    for image in images:
        for blob in find_blobs(image):
            by[blob.shape][blob.color] += 1
    return {s: {c: by[s][c] for c in COLORS} for s in SHAPES}


def world_images(n: int, seed: int):
    """``n`` scenes of the world's process for the empty caption, rendered."""
    rng = random.Random(seed)
    return render_plans([sample_plan(rng, empty=True) for _ in range(n)])[0]


def table(model: dict, world: dict) -> list[str]:
    """Per shape: the model's count of each colour, and the world's share of that colour in percent."""
    md = ["| shape | objects | " + " | ".join(COLORS) + " |", "|---|---|" + "---|" * len(COLORS)]
    for s in SHAPES:
        n, nw = sum(model[s].values()), sum(world[s].values())
        cells = [f"{model[s][c]} ({100 * world[s][c] / max(nw, 1):.0f}%)" for c in COLORS]
        md.append(f"| {s} | {n} | " + " | ".join(cells) + " |")
    return md


def main() -> None:
    ap = model_parser(__doc__.splitlines()[0], "shapes_empty_colours",
                      "training folder: count the EMA of its checkpoint.pt")
    ap.add_argument("--n", type=int, default=256, help="images the model draws for the empty caption")
    ap.add_argument("--world", type=int, default=2000, help="world scenes counted for the comparison")
    args = ap.parse_args()
    comps, source, step = open_model(args)
    model = count(generate_images(comps, [""] * args.n, seed=args.seed, guidance=1.0))
    world = count(world_images(args.world, args.seed))
    report = {"model": source, "training_steps": step, "images": args.n, "world_scenes": args.world,
              "seed": args.seed, "model_counts": model, "world_counts": world}
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# The empty caption's shapes and colours\n\nModel: {source}; {args.n} images of the empty caption "
          f"(no guidance), seed {args.seed}; objects read by the shapes checker. Each cell: the model's count, "
          f"and in brackets the share of that colour among the shape's objects in {args.world} of the world's "
          "empty-caption scenes read by the same checker. A perfect model's counts follow the brackets.\n"]
    md += table(model, world)
    (RESULTS / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
