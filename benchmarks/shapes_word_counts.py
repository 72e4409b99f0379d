"""How many objects the shapes model draws for a lone word, against the world.

In the world a one-word caption ("red", "a red", "circle", the fruit "orange") always describes
one object, while the empty caption's scenes have one object 40% of the time: a perfect model's
information of a lone word about a one-object scene includes `-log 0.4 = 0.92` nats for the
count alone (docs/embedded-model.md, "The homonym"). The PID studies give each word alone as a
prompt without its article ("orange", "circle"; the full prompt "a orange circle" is the joint),
a form the world draws rarely (the article is dropped a tenth of the time: a bare "red" once in
4,000 scenes), so the probe asks both forms. The model draws without guidance (its own
conditional, the one the information estimators integrate); the world's scenes for the same
caption are drawn by the world's process; both are read by the shapes checker.

    python benchmarks/shapes_word_counts.py --model RUN/model --n 42 --tag shapes_word_counts-RUN
"""

from __future__ import annotations

import collections
import json

from diffpid.shapes.check import find_blobs
from diffpid.shapes.model import generate_images
from diffpid.shapes.render import scene_for_caption

from shapes_quality import RESULTS, model_parser, open_model

PROMPTS = ("a red", "a blue", "a green", "a orange", "a circle", "red", "blue", "green", "orange", "circle", "")
"""The homonym study's words as it uses them (with the article: "a red", the fruit "a orange", "a circle"),
the same words bare (no article: a tenth of the world's one-word captions), and the empty caption (the prior)."""


def tally(images) -> dict:
    """Images by the number of objects the checker reads, and the objects' shapes and colours."""
    objects, shapes, colours = collections.Counter(), collections.Counter(), collections.Counter()
    for image in images:
        blobs = find_blobs(image)
        objects[len(blobs)] += 1
        shapes.update(b.shape for b in blobs)
        colours.update(b.color for b in blobs)
    return {"objects": {str(k): v for k, v in sorted(objects.items())},
            "shapes": dict(shapes.most_common()), "colours": dict(colours.most_common())}


def world_images(prompt: str, n: int, seed: int):
    """``n`` of the world's scenes for ``prompt``, rendered."""
    return [scene_for_caption(prompt, seed=seed + i).image for i in range(n)]


def one_share(counts: dict) -> str:
    """``"k of n"`` images with exactly one object."""
    return f"{counts['objects'].get('1', 0)} of {sum(counts['objects'].values())}"


def table(report: dict) -> list[str]:
    md = ["| prompt | model: one object | world: one object | model: objects per image | model: shapes | model: colours |",
          "|---|---|---|---|---|---|"]
    for p, row in report["prompts"].items():
        m, w = row["model"], row["world"]
        md.append(f'| "{p}" | {one_share(m)} | {one_share(w)} | '
                  + ", ".join(f"{k}: {v}" for k, v in m["objects"].items()) + " | "
                  + ", ".join(f"{k} {v}" for k, v in m["shapes"].items()) + " | "
                  + ", ".join(f"{k} {v}" for k, v in m["colours"].items()) + " |")
    return md


def main() -> None:
    ap = model_parser(__doc__.splitlines()[0], "shapes_word_counts", "training folder: probe the EMA of its checkpoint.pt")
    ap.add_argument("--n", type=int, default=42, help="images per prompt")
    ap.add_argument("--prompts", nargs="+", default=list(PROMPTS),
                    help='prompts to probe (default: the homonym study\'s words with and without their article, and "")')
    args = ap.parse_args()
    comps, source, step = open_model(args)
    report = {"model": source, "training_steps": step, "images": args.n, "seed": args.seed, "prompts": {}}
    for p in args.prompts:
        model = tally(generate_images(comps, [p] * args.n, seed=args.seed, guidance=1.0))
        report["prompts"][p] = {"model": model, "world": tally(world_images(p, args.n, args.seed))}
        print(p, model["objects"], flush=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [f"# Objects drawn for a lone word\n\nModel: {source}; {args.n} images per prompt (no guidance), "
          f"seed {args.seed}; objects read by the shapes checker, in the model's images and in as many of the "
          "world's scenes for the same prompt. A one-word caption, with or without its article, is one object in "
          "the world; the empty caption's scenes have one 40% of the time. The PID studies give a word alone "
          "without its article.\n"] + table(report)
    (RESULTS / f"{args.tag}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
