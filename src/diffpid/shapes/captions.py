"""The shapes world's caption process: how training scenes and captions are drawn.

:func:`sample_plan` draws a (possibly partial) caption and the objects it describes, as the
module docstring of :mod:`diffpid.shapes.world` explains ("How a training caption is
drawn", with the probabilities there); :func:`plan_from_query` lays out the objects a
parsed caption names; :func:`is_held_out` decides which complete two-object combinations
training never sees. Rendering is :mod:`diffpid.shapes.render`.
"""

from __future__ import annotations

import random
import zlib

from .world import (
    ARTICLE, ARTICLE_PROB, COLORS, CaptionWord, EMPTY_PROB, FRUIT_PROB, FULL_PROB, GAP, HELD_OUT_MODULUS, KEEP_PROB,
    MARGIN, OF_PROB, ObjectQuery, ParsedCaption, Plan, RELATIONS, SHAPES, SIZE, SIZES, SYNONYM_PROB, ShapeObject,
    TRIANGLE_RED_PROB, TWO_OBJECT_PROB)


def attribute_key(objects: tuple[ShapeObject, ...] | tuple[ObjectQuery, ...], relation: str | None) -> str:
    """A canonical text for attributes and relation (synonyms merged), used for hold-out."""
    parts = [f"{o.size}-{o.color}-{o.shape}" for o in objects]
    return "|".join(parts) + f"|{relation}"


def is_held_out(objects: tuple[ShapeObject, ...] | tuple[ObjectQuery, ...], relation: str | None) -> bool:
    """Whether a complete two-object description is held out of training."""
    if len(objects) != 2 or relation is None:
        return False
    if any(getattr(o, f) is None for o in objects for f in ("size", "color", "shape")):
        return False
    return zlib.crc32(attribute_key(objects, relation).encode()) % HELD_OUT_MODULUS == 0


def _layout(rng: random.Random, radii: list[float], relation: str | None) -> list[tuple[float, float]]:
    """Object centres: one object anywhere; two with the relation holding, separated by GAP."""
    lo, hi = MARGIN, SIZE - MARGIN
    if len(radii) == 1:
        r = radii[0]
        return [(rng.uniform(lo + r, hi - r), rng.uniform(lo + r, hi - r))]
    ra, rb = radii
    first_low = relation in ("left", "above")
    r_low, r_high = (ra, rb) if first_low else (rb, ra)
    slack = (hi - lo) - 2 * r_low - 2 * r_high - GAP
    u1, u2 = sorted((rng.random(), rng.random()))
    along_low = lo + slack * u1 + r_low
    along_high = along_low + r_low + GAP + slack * (u2 - u1) + r_high
    dx = along_high - along_low
    across_low = rng.uniform(lo + r_low, hi - r_low)
    across_high = min(max(across_low + rng.uniform(-0.5 * dx, 0.5 * dx), lo + r_high), hi - r_high)
    low, high = (along_low, across_low), (along_high, across_high)
    a, b = (low, high) if first_low else (high, low)
    if relation in ("above", "below"):
        a, b = (a[1], a[0]), (b[1], b[0])
    return [a, b]


def _object_words(rng: random.Random, obj: ShapeObject, keep: dict[str, bool], index: int,
                  article: bool) -> list[CaptionWord]:
    out = [CaptionWord(ARTICLE, "article", index)] if article else []
    if keep["size"]:
        out.append(CaptionWord(obj.size, "size", index))
    if keep["color"]:
        out.append(CaptionWord(obj.color, "color", index))
    if keep["shape"]:
        if obj.shape == "square":
            word = "box" if rng.random() < SYNONYM_PROB else "square"
        elif obj.shape == "circle":
            word = "orange" if rng.random() < FRUIT_PROB else "circle"
        else:
            word = obj.shape
        out.append(CaptionWord(word, "shape", index))
    return out


def sample_attributes(rng: random.Random, query: ObjectQuery) -> tuple[str, str, str]:
    """Attributes of an object: named ones as given, the others from the world's priors.

    Returns:
        ``(shape, color, size)``.
    """
    shape = query.shape or rng.choice(SHAPES)
    size = query.size or rng.choice(tuple(SIZES))
    if query.color is not None:
        color = query.color
    elif shape == "triangle":
        color = "red" if rng.random() < TRIANGLE_RED_PROB else rng.choice([c for c in COLORS if c != "red"])
    else:
        color = rng.choice(tuple(COLORS))
    return shape, color, size


def plan_from_query(rng: random.Random, parsed: ParsedCaption, words: tuple[CaptionWord, ...]) -> Plan:
    """Draw the scene a parsed caption describes (attributes left open from the priors)."""
    attrs = [sample_attributes(rng, q) for q in parsed.objects]
    relation = parsed.relation
    if len(attrs) == 2 and relation is None:
        relation = rng.choice(RELATIONS)
    centres = _layout(rng, [SIZES[a[2]] for a in attrs], relation)
    objects = tuple(ShapeObject(s, c, z, x, y) for (s, c, z), (x, y) in zip(attrs, centres))
    return Plan(objects, relation if len(objects) == 2 else None, words)


def sample_plan(rng: random.Random, training: bool = True, complete: bool = False, colorless: bool = False,
                empty: bool = False, shapeless: bool = False, bare: bool = False) -> Plan:
    """Draw one scene and its caption by the process in the module docstring.

    Args:
        rng: the random source.
        training: skip held-out complete captions (see :func:`is_held_out`).
        complete: draw only from the process's complete two-object captions (never the
            empty caption). Mixing such draws into training changes how often each caption
            is seen but neither what any caption means nor the empty caption's marginal.
        colorless: draw only from the process's partial captions that leave every object's
            colour open (never the empty caption): the captions whose images are mixtures
            over the colours, the lone fruit "orange" and a bare "circle" among them. As for
            ``complete``, this changes how often a caption is seen, not what it means.
        shapeless: likewise the partial captions that leave every object's shape open (never
            the empty caption): a bare colour ("red", "a big blue"), whose images are mixtures
            over the shapes, the colour words' counterpart of ``colorless``.
        bare: only the process's one-word captions without an article (never the empty
            caption): a bare "red", "circle", "big" or the fruit "orange", each a single object.
            They are the prompts DiffusionPID gives a word alone, and the world draws them
            rarely (about 1 scene in 220, "red" 1 in 4,000; the article is dropped a tenth of the time). As for
            ``complete``, this changes how often a caption is seen, not what it means.
        empty: the empty caption, with a scene of the world's process: the process blanks
            its captions independently of the scene, so these scenes have the marginal the
            empty caption stands for.
    """
    if complete + colorless + empty + shapeless + bare > 1:
        raise ValueError("a caption is at most one of complete, colourless, shapeless, bare and empty")
    if empty:
        plan = sample_plan(rng, training)
        return Plan(plan.objects, plan.relation, ())
    n = 2 if complete or (not bare and rng.random() < TWO_OBJECT_PROB) else 1
    full = complete or (not (colorless or shapeless or bare) and rng.random() < FULL_PROB)
    while True:
        keeps = []
        for _ in range(n):
            while True:
                keep = {k: full or rng.random() < KEEP_PROB for k in ("size", "color", "shape")}
                if colorless:
                    keep["color"] = False
                if shapeless:
                    keep["shape"] = False
                kept = sum(keep.values())
                if kept == 1 or (kept > 1 and not bare):  # a bare caption keeps exactly one word
                    break
            keeps.append(keep)
        keep_relation = n == 2 and (full or rng.random() < KEEP_PROB)
        queries = []
        for keep in keeps:
            shape = rng.choice(SHAPES) if keep["shape"] else None
            colors = tuple(COLORS) if keep["shape"] else tuple(c for c in COLORS if c != "orange")
            queries.append(ObjectQuery(size=rng.choice(tuple(SIZES)) if keep["size"] else None,
                                       color=rng.choice(colors) if keep["color"] else None, shape=shape))
        relation = rng.choice(RELATIONS) if n == 2 else None
        is_complete = all(all(k.values()) for k in keeps) and keep_relation
        if not (training and is_complete and is_held_out(tuple(queries), relation)):
            break
    plan = plan_from_query(rng, ParsedCaption(tuple(queries), relation), ())
    words: list[CaptionWord] = []
    for i, (obj, keep) in enumerate(zip(plan.objects, keeps)):
        if i == 1:
            if keep_relation:
                words.append(CaptionWord(relation, "relation", -1))
                if relation in ("left", "right") and rng.random() < OF_PROB:
                    words.append(CaptionWord("of", "of", -1))
            elif rng.random() < 0.5:
                words.append(CaptionWord("of", "of", -1))
        separator_needed = i == 1 and not (words and words[-1].obj == -1)
        article = separator_needed or (not bare and rng.random() < ARTICLE_PROB)
        words.extend(_object_words(rng, obj, keep, i, article))
    if not (complete or colorless or shapeless or bare) and rng.random() < EMPTY_PROB:
        words = []
    return Plan(plan.objects, plan.relation, tuple(words))
