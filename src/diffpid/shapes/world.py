"""The shapes world: 32x32 scenes of one or two coloured shapes with captions and masks.

Every scene is drawn from an explicit generative process, so each caption word has a
ground-truth meaning (its object's pixels) and the phenomena below have known strengths.

Vocabulary (20 words)
    article   a
    size      small, big                   (half-extent 4 and 7 pixels)
    colour    red, orange, yellow, green, blue, pink, white   (black background)
    shape     circle, square, box, triangle, diamond, orange
    relation  left, right, above, below, of

Grammar (one article form, "a", so that removing any word leaves a caption of the grammar)
    object   := [a] [size] [colour] [shape]           (at least one content word)
    caption  := object
              | object ("left" | "right") ["of"] object
              | object ("above" | "below") object
              | object ["of"] object                    (relation left open)
              | ""                                      (empty: the unconditional caption)
    e.g. "a red circle", "a big blue square left of a small yellow triangle", "big box".
    The first-named object stands in the relation to the second: "A left of B" means the
    centre of A is left of the centre of B, and the horizontal offset dominates the vertical.

How a training caption is drawn (constants below give the probabilities)
    1. one or two objects (TWO_OBJECT_PROB); the caption is complete with FULL_PROB, else
       each content word (size, colour, shape of each object, the relation) is kept with
       KEEP_PROB (an object always keeps at least one); articles are kept with
       ARTICLE_PROB, "of" after left/right with OF_PROB; a caption that leaves the relation
       open joins the objects with "of" half of the time, and the second object keeps its
       article whenever nothing else separates the two objects.
    2. attributes the caption names are uniform; attributes it leaves out come from the
       world's priors (uniform, except the planted colour bias); then the layout.
    3. with EMPTY_PROB the whole caption is replaced by "" (classifier-free dropout), so
       the empty caption stands for the marginal over all scenes.
    Removing any one word from a complete caption leaves a caption this process also draws,
    with the images that caption describes: the partial captions used by CMI are
    in-distribution (removing the shape word after the colour "orange" leaves the fruit).

Planted phenomena and their strengths
    synonyms   "square" and "box" name the same shape, each used with probability 1/2.
    bias       a triangle whose colour the caption leaves out is red with probability
               TRIANGLE_RED_PROB = 0.9 (else one of the six other colours, uniform); every
               other shape's unnamed colour is uniform over the seven colours.
    homonym    "orange" is the colour when the next word is a shape word ("orange circle",
               "orange orange") and the fruit otherwise ("a big orange", "a orange left of a
               box"): a circle of any colour. Circles are called "orange" with FRUIT_PROB.
               A named colour without a named shape is never orange (a lone "orange" is the
               fruit).
    binding    two-object captions bind each adjective to its own object and the relation
    and order  to the order of the objects: "a red circle left of a blue box" and "a blue
               circle left of a red box" / "a blue box left of a red circle" differ only in
               word order (see :mod:`diffpid.shapes.sets` for the swap sets).

Held-out captions: complete two-object captions whose attribute combination hashes into
a 1/HELD_OUT_MODULUS bucket are never drawn for training
(:func:`diffpid.shapes.captions.is_held_out`; the caption process itself is
:func:`diffpid.shapes.captions.sample_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import ConditionError

SIZE = 32
ARTICLE = "a"
SIZES = {"small": 4.0, "big": 7.0}
COLORS = {
    "red": (1.0, 0.0, 0.0), "orange": (1.0, 0.5, 0.0), "yellow": (1.0, 1.0, 0.0), "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0), "pink": (1.0, 0.0, 1.0), "white": (1.0, 1.0, 1.0),
}
"""Colour name to RGB in [0, 1]; images are in [-1, 1] on a black background."""
SHAPES = ("circle", "square", "triangle", "diamond")
SHAPE_WORDS = {"circle": "circle", "square": "square", "box": "square", "triangle": "triangle",
               "diamond": "diamond", "orange": "circle"}
"""Shape word to the shape it names ("box" is a synonym of "square", "orange" the fruit is a circle)."""
RELATIONS = ("left", "right", "above", "below")
VOCABULARY = (ARTICLE, "small", "big", "red", "orange", "yellow", "green", "blue", "pink", "white", "circle",
              "square", "box", "triangle", "diamond", "left", "right", "above", "below", "of")

EMPTY_PROB = 0.12
TWO_OBJECT_PROB = 0.6
FULL_PROB = 0.35
KEEP_PROB = 0.7
ARTICLE_PROB = 0.9
OF_PROB = 0.9
TRIANGLE_RED_PROB = 0.9
SYNONYM_PROB = 0.5
FRUIT_PROB = 0.25
HELD_OUT_MODULUS = 10
GAP = 2.0
MARGIN = 1.0


@dataclass(frozen=True)
class ShapeObject:
    """One object of a scene.

    Args:
        shape: one of :data:`SHAPES`.
        color: one of :data:`COLORS`.
        size: ``"small"`` or ``"big"``.
        cx, cy: centre in pixels (x right, y down; the image spans ``[0, 32]``).
    """

    shape: str
    color: str
    size: str
    cx: float
    cy: float

    @property
    def radius(self) -> float:
        return SIZES[self.size]


@dataclass(frozen=True)
class CaptionWord:
    """A word of a caption and what it refers to.

    Args:
        text: the word.
        role: ``"article"``, ``"size"``, ``"color"``, ``"shape"``, ``"relation"`` or ``"of"``.
        obj: index of the object it belongs to, ``-1`` for relation words and "of".
    """

    text: str
    role: str
    obj: int


@dataclass(frozen=True)
class Scene:
    """A rendered scene with its caption.

    Args:
        image: ``(3, 32, 32)`` float image in [-1, 1].
        caption: the caption (``""`` for the unconditional caption).
        words: the caption's words in order, with roles.
        masks: ``(n_words, 32, 32)`` bool; a size, colour or shape word's mask is its object's
            pixels, other words (article, relation, "of") have empty masks.
        objects: the objects, in caption order.
        relation: the relation of object 0 to object 1 (``None`` for one object).
        object_masks: ``(n_objects, 32, 32)`` bool pixels of each object.
    """

    image: torch.Tensor
    caption: str
    words: tuple[CaptionWord, ...]
    masks: torch.Tensor
    objects: tuple[ShapeObject, ...]
    relation: str | None
    object_masks: torch.Tensor


@dataclass(frozen=True)
class ObjectQuery:
    """What a caption says about one object (``None``: left open)."""

    size: str | None = None
    color: str | None = None
    shape: str | None = None


@dataclass(frozen=True)
class ParsedCaption:
    """A caption read by the grammar: the objects it names and the relation (or ``None``)."""

    objects: tuple[ObjectQuery, ...]
    relation: str | None


@dataclass(frozen=True)
class Plan:
    """Everything the generative process decided for one scene before rendering.

    Args:
        objects: the objects (attributes and layout).
        relation: relation of object 0 to object 1, ``None`` for one object.
        words: the caption words (empty for the unconditional caption).
    """

    objects: tuple[ShapeObject, ...]
    relation: str | None
    words: tuple[CaptionWord, ...]

    @property
    def caption(self) -> str:
        return " ".join(w.text for w in self.words)


def check_caption(caption: str) -> list[str]:
    """Split a caption into words and check them against the vocabulary.

    Args:
        caption: a caption (lower or upper case, words separated by spaces).

    Returns:
        The lower-cased words.

    Raises:
        ConditionError: some words are not in :data:`VOCABULARY`.
    """
    if not isinstance(caption, str):
        raise ConditionError(f"a caption must be a string, got {type(caption).__name__}")
    words = caption.lower().split()
    unknown = [w for w in words if w not in VOCABULARY]
    if unknown:
        raise ConditionError(
            f"words not in the shapes model's vocabulary: {', '.join(repr(w) for w in unknown)}; "
            f"use only: {' '.join(VOCABULARY)}"
        )
    return words


def parse_caption(caption: str) -> ParsedCaption:
    """Read a caption with the grammar of this module.

    Args:
        caption: a caption of the grammar (``""`` gives no objects).

    Raises:
        ConditionError: unknown words, or a word sequence the grammar does not produce.
    """
    words = check_caption(caption)
    order = ("size", "color", "shape")

    def role_of(k: int) -> str:
        w = words[k]
        if w in SIZES:
            return "size"
        if w == "orange":
            return "color" if k + 1 < len(words) and words[k + 1] in SHAPE_WORDS else "shape"
        if w in COLORS:
            return "color"
        if w in SHAPE_WORDS:
            return "shape"
        return w

    def read_object(i: int) -> tuple[ObjectQuery, int]:
        fields: dict[str, str] = {}
        if i < len(words) and words[i] == ARTICLE:
            i += 1
        last = -1
        while i < len(words):
            r = role_of(i)
            if r not in order or order.index(r) <= last:
                break
            fields[r] = SHAPE_WORDS[words[i]] if r == "shape" else words[i]
            last = order.index(r)
            i += 1
        if not fields:
            raise ConditionError(f"cannot read {caption!r}: expected a size, colour or shape word at word {i + 1}")
        return ObjectQuery(**fields), i

    if not words:
        return ParsedCaption((), None)
    first, i = read_object(0)
    objects = [first]
    relation = None
    if i < len(words):
        if words[i] in RELATIONS:
            relation = words[i]
            i += 1
            if i < len(words) and words[i] == "of" and relation in ("left", "right"):
                i += 1
        elif words[i] == "of":
            i += 1
        second, i = read_object(i)
        objects.append(second)
    if i < len(words):
        raise ConditionError(f"cannot read {caption!r} past word {i}: the shapes world has one or two objects "
                             "joined by left (of), right (of), above, below or of")
    return ParsedCaption(tuple(objects), relation)
