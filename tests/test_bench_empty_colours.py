"""benchmarks/shapes_empty_colours.py: the counts of the empty caption's objects by shape and colour."""

import collections
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from shapes_empty_colours import count, table, world_images  # noqa: E402

from diffpid.shapes.captions import sample_plan  # noqa: E402


def test_world_counts_are_the_objects_of_the_world_scenes():
    """The checker reads every object of a ground-truth render, so the counts of the world's
    empty-caption scenes are exactly the tally of the objects their plans drew."""
    n, seed = 60, 3
    rng = random.Random(seed)
    plans = [sample_plan(rng, empty=True) for _ in range(n)]
    assert all(p.caption == "" for p in plans)
    truth = collections.Counter((o.shape, o.color) for p in plans for o in p.objects)
    counts = count(world_images(n, seed))
    got = collections.Counter({(s, c): k for s, row in counts.items() for c, k in row.items() if k})
    assert got == truth
    assert sum(truth.values()) > n  # some scenes have two objects


def test_table_gives_the_model_counts_and_the_world_shares():
    model = {s: {c: 0 for c in ("red", "orange", "yellow", "green", "blue", "pink", "white")}
             for s in ("circle", "square", "triangle", "diamond")}
    world = {s: dict(row) for s, row in model.items()}
    model["circle"]["blue"] = 3
    world["circle"]["red"], world["circle"]["blue"] = 3, 1
    rows = table(model, world)
    assert rows[2] == "| circle | 3 | 0 (75%) | 0 (0%) | 0 (0%) | 0 (0%) | 3 (25%) | 0 (0%) | 0 (0%) |"
    assert rows[3].startswith("| square | 0 | 0 (0%)")
