"""Evaluation sets of the shapes world: held-out captions and swap sets.

- :func:`held_out_captions`: complete two-object captions that training never draws
  (:func:`diffpid.shapes.captions.is_held_out`), for the generation-quality benchmark.
- :func:`swap_set` / :func:`swap_sets`: for a two-object scene, the correct caption and
  captions that only a model reading word order can reject: attributes swapped between
  the objects, the objects named in the other order (same relation word), and the
  relation word flipped (left/right, above/below).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from .captions import is_held_out
from .render import scene_for_caption
from .world import ARTICLE, COLORS, FRUIT_PROB, RELATIONS, SHAPES, SIZES, SYNONYM_PROB, ObjectQuery, Scene, ShapeObject

OPPOSITE = {"left": "right", "right": "left", "above": "below", "below": "above"}


def shape_word(shape: str, rng: random.Random) -> str:
    """A word for ``shape`` with the world's synonym and homonym probabilities."""
    if shape == "square":
        return "box" if rng.random() < SYNONYM_PROB else "square"
    if shape == "circle":
        return "orange" if rng.random() < FRUIT_PROB else "circle"
    return shape


def describe(objects: tuple[ShapeObject, ...] | tuple[ObjectQuery, ...], relation: str | None,
             rng: random.Random | None = None) -> str:
    """The complete caption (articles, "of" after left/right) of objects and a relation.

    Args:
        objects: one or two objects with every attribute set.
        relation: relation of the first to the second (``None`` for one object).
        rng: draws the synonym / fruit word; ``None`` uses "square" and "circle".
    """
    parts = []
    for o in objects:
        word = shape_word(o.shape, rng) if rng is not None else o.shape
        parts.append(f"{ARTICLE} {o.size} {o.color} {word}")
    if len(parts) == 1:
        return parts[0]
    join = f" {relation} of " if relation in ("left", "right") else f" {relation} "
    return parts[0] + join + parts[1]


def held_out_captions(n: int = 200, seed: int = 0) -> list[str]:
    """``n`` distinct held-out complete two-object captions (deterministic for a seed).

    Args:
        n: how many (at most the number of held-out combinations, about 1250).
        seed: which ones, and which synonyms they use.
    """
    return two_object_captions(n, seed, held_out=True)


def two_object_captions(n: int = 200, seed: int = 0, held_out: bool = True) -> list[str]:
    """``n`` distinct complete two-object captions, held out of training or drawn in it.

    Args:
        n: how many.
        seed: which ones, and which synonyms they use.
        held_out: the held-out combinations (never trained on) or the others.
    """
    singles = [ObjectQuery(size, color, shape) for size in SIZES for color in COLORS for shape in SHAPES]
    pool = [(a, b, r) for a, b in itertools.product(singles, singles) for r in RELATIONS
            if is_held_out((a, b), r) == held_out]
    rng = random.Random(seed)
    picks = rng.sample(pool, min(n, len(pool)))
    return [describe((a, b), r, rng) for a, b, r in picks]


@dataclass(frozen=True)
class SwapSet:
    """A scene with its correct caption and three wrong captions of the same words.

    Args:
        scene: the scene (two objects).
        correct: the caption that holds.
        attribute_swapped: colours swapped between the objects (sizes, then shapes, when
            the colours are equal); ``None`` if the objects are identical.
        order_swapped: the objects named in the other order with the same relation word.
        relation_flipped: the relation word replaced by its opposite.
    """

    scene: Scene
    correct: str
    attribute_swapped: str | None
    order_swapped: str
    relation_flipped: str


def swap_set(scene: Scene) -> SwapSet:
    """The :class:`SwapSet` of a two-object scene.

    Raises:
        ValueError: the scene has one object.
    """
    if len(scene.objects) != 2 or scene.relation is None:
        raise ValueError("swap sets need a two-object scene")
    a, b = scene.objects
    rel = scene.relation
    swapped = None
    for field in ("color", "size", "shape"):
        if getattr(a, field) != getattr(b, field):
            a2 = ShapeObject(**{**a.__dict__, field: getattr(b, field)})
            b2 = ShapeObject(**{**b.__dict__, field: getattr(a, field)})
            swapped = describe((a2, b2), rel)
            break
    return SwapSet(scene, describe((a, b), rel), swapped, describe((b, a), rel), describe((a, b), OPPOSITE[rel]))


def swap_sets(n: int = 200, seed: int = 0) -> list[SwapSet]:
    """``n`` swap sets on scenes of held-out complete captions (deterministic for a seed)."""
    return [swap_set(scene_for_caption(c, seed + i)) for i, c in enumerate(held_out_captions(n, seed))]
