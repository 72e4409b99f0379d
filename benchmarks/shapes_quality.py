"""Generation quality of the shapes model, judged by the world's geometry checker.

Generates one image per held-out complete two-object caption (never drawn in training)
and per one-object caption, reads each image back with
:func:`diffpid.shapes.check.check_caption_image` (colour, shape and size of every
named object, the relation, and no extra objects), and reports the pass rates with
binomial standard errors, plus a per-attribute breakdown. Writes
``benchmarks/results/shapes_quality.json``, a Markdown summary and a PNG grid.

    python benchmarks/shapes_quality.py                       # the shipped model
    python benchmarks/shapes_quality.py --checkpoint /work/train-shapes   # EMA of a run
"""

from __future__ import annotations

import argparse
import json
import math
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from diffpid.shapes.model import GENERATION, default_model_path, generate_images, load_components, to_uint8
from diffpid.runs.runner import training_step
from diffpid.shapes.world import COLORS, SHAPES, SIZES, parse_caption
from diffpid.shapes.check import check_caption_image
from diffpid.shapes.sets import held_out_captions, shape_word, two_object_captions

RESULTS = Path(__file__).resolve().parent / "results"


def single_captions(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"a {rng.choice(tuple(SIZES))} {rng.choice(tuple(COLORS))} {shape_word(rng.choice(SHAPES), rng)}"
            for _ in range(n)]


def model_under_test(model: str | None, checkpoint: str | None) -> tuple[Path, str, int | None]:
    """The folder to load for ``--model`` / ``--checkpoint`` (a training folder's EMA is
    exported to a temporary folder), a description of it and its training step.

    The description names the model and its lineage from ``training.json``
    (:func:`~diffpid.shapes.training.recipe.lineage_line`: the command that trained it), never
    a path of this machine (a folder is named by its last part)."""
    if checkpoint:
        from diffpid.shapes.training.train import Trainer

        trainer = Trainer.load(checkpoint)
        folder = Path(tempfile.mkdtemp()) / "model"
        trainer.export(folder)
        return folder, f"EMA of the run `{Path(checkpoint).name}` at step {trainer.step}, {_lineage(folder)}", trainer.step
    folder = Path(model) if model else default_model_path()
    name = "the shipped model" if folder.resolve() == default_model_path().resolve() else f"`{folder.name}`"
    return folder, f"{name}, {_lineage(folder)}", training_step(folder)


def _lineage(folder: Path) -> str:
    from diffpid.shapes.training.recipe import lineage_line

    try:
        record = json.loads((folder / "training.json").read_text())
    except (OSError, ValueError):
        record = {}
    return lineage_line(record if isinstance(record, dict) else {})


def model_parser(description: str, tag: str, checkpoint_help: str) -> argparse.ArgumentParser:
    """A parser with the arguments every shapes-model bench takes: ``--model`` / ``--checkpoint``
    (see :func:`model_under_test`), ``--seed``, ``--threads`` and ``--tag`` (result file name)."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--model", default=None, help="shapes model folder (default: the shipped one)")
    ap.add_argument("--checkpoint", default=None, help=checkpoint_help)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default=tag, help="name of the result files")
    return ap


def open_model(args: argparse.Namespace) -> tuple[Any, str, int | None]:
    """Set the thread count and load the model :func:`model_parser`'s arguments name:
    ``(components, description, training step)``."""
    torch.set_num_threads(args.threads)
    folder, source, step = model_under_test(args.model, args.checkpoint)
    return load_components(folder), source, step


def rate(oks: list[bool]) -> dict:
    if not oks:
        return {"n": 0, "pass_rate": None, "stderr": None}
    p = sum(oks) / len(oks)
    return {"n": len(oks), "pass_rate": round(p, 4), "stderr": round(math.sqrt(p * (1 - p) / len(oks)), 4)}


def attribute_rates(images: torch.Tensor, captions: list[str]) -> dict:
    """Per attribute: share of named objects whose attribute is right in some blob; ``count``:
    right number of objects; ``bound``: right count and every object drawn with all its
    attributes (relation ignored); ``relation_if_bound``: of the bound images, the share
    whose objects also stand in the named relation."""
    from diffpid.shapes.check import bindings, find_blobs, relation_holds

    hits = {"color": [], "shape": [], "size": [], "count": [], "bound": [], "relation_if_bound": []}
    for img, cap in zip(images, captions):
        parsed = parse_caption(cap)
        blobs = find_blobs(img)
        hits["count"].append(len(blobs) == len(parsed.objects))
        for q in parsed.objects:
            for f in ("color", "shape", "size"):
                hits[f].append(any(getattr(b, f) == getattr(q, f) for b in blobs))
        bound = bindings(parsed.objects, blobs)
        hits["bound"].append(bool(bound))
        if bound and parsed.relation is not None:
            hits["relation_if_bound"].append(any(relation_holds(parsed.relation, p[0], p[1]) for p in bound))
    return {k: rate(v) for k, v in hits.items() if v}


def grid(images: torch.Tensor, path: Path, cols: int = 20) -> None:
    if len(images) == 0:
        return
    cols = min(cols, len(images))
    im = to_uint8(images)
    rows = [np.concatenate(list(im[r * cols : (r + 1) * cols]), 1) for r in range(len(im) // cols)]
    g = np.concatenate(rows, 0)
    Image.fromarray(g).resize((g.shape[1] * 2, g.shape[0] * 2), Image.NEAREST).save(path)


def main() -> None:
    ap = model_parser(__doc__.splitlines()[0], "shapes_quality", "training folder: evaluate the EMA of its checkpoint.pt")
    ap.add_argument("--n", type=int, default=200, help="held-out two-object captions")
    ap.add_argument("--singles", type=int, default=100, help="one-object captions")
    ap.add_argument("--seen", type=int, default=100,
                    help="complete two-object captions of combinations drawn in training (the generalisation gap)")
    ap.add_argument("--scheduler", default=GENERATION["scheduler"], choices=("ddpm", "ddim", "dpm"))
    ap.add_argument("--steps", type=int, default=GENERATION["steps"])
    ap.add_argument("--guidance", type=float, default=GENERATION["guidance_scale"])
    args = ap.parse_args()
    comps, source, step = open_model(args)

    pairs = held_out_captions(args.n, args.seed)
    singles = single_captions(args.singles, args.seed)
    t0 = time.time()
    imgs_pairs = generate_images(comps, pairs, args.seed, args.steps, args.guidance, args.scheduler)
    imgs_single = generate_images(comps, singles, args.seed + 1, args.steps, args.guidance, args.scheduler)
    seen = two_object_captions(args.seen, args.seed + 2, held_out=False)
    imgs_seen = generate_images(comps, seen, args.seed + 2, args.steps, args.guidance, args.scheduler)
    seconds = time.time() - t0
    ok_pairs = [check_caption_image(i, c).ok for i, c in zip(imgs_pairs, pairs)]
    ok_single = [check_caption_image(i, c).ok for i, c in zip(imgs_single, singles)]
    ok_seen = [check_caption_image(i, c).ok for i, c in zip(imgs_seen, seen)]
    report = {
        "model": source, "training_steps": step, "solver": f"{args.scheduler} {args.steps} steps",
        "guidance": args.guidance, "seed": args.seed,
        "held_out_two_object": rate(ok_pairs), "one_object": rate(ok_single), "seen_two_object": rate(ok_seen),
        "held_out_attributes": attribute_rates(imgs_pairs, pairs),
        "generation_seconds": round(seconds, 1), "threads": args.threads,
        "failures": [c for c, ok in zip(pairs, ok_pairs) if not ok][:20],
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    grid(imgs_pairs[:100], RESULTS / f"{args.tag}_held_out.png")
    grid(imgs_single[:100], RESULTS / f"{args.tag}_one_object.png")
    hp, so, se = report["held_out_two_object"], report["one_object"], report["seen_two_object"]

    def row(name: str, r: dict) -> str:
        if not r["n"]:
            return f"| {name} | 0 | - | - |\n"
        return f"| {name} | {r['n']} | {r['pass_rate']:.3f} | {r['stderr']:.3f} |\n"

    md = (f"# Shapes model generation quality\n\nModel: {source}; {report['solver']}, "
          f"guidance {args.guidance}, seed {args.seed}.\n\n"
          f"| set | n | pass rate | stderr |\n|---|---|---|---|\n"
          + row("held-out two-object captions", hp) + row("one-object captions", so)
          + row("two-object captions of combinations seen in training", se) + "\n"
          "Held-out per-attribute rates (a named attribute found on some object; count = right number of objects): "
          + ", ".join(f"{k} {v['pass_rate']:.3f}" for k, v in report["held_out_attributes"].items()) + "\n\n"
          f"Checker: `diffpid.shapes.check.check_caption_image`. Images: `{args.tag}_held_out.png`, "
          f"`{args.tag}_one_object.png` (first 100 of each, row-major in caption order).\n")
    (RESULTS / f"{args.tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
