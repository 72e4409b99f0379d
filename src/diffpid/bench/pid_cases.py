"""The shapes world's cases of DiffusionPID's studies (:mod:`diffpid.bench.pid_studies`): bias, synonyms, homonyms.

- bias: ``"a COLOUR SHAPE"`` with its planted strength ``P(colour | shape, colour unnamed)``
  (:func:`bias_strength`) and a perfect model's standard redundancy (:func:`bias_reference`);
- synonyms: "square" and "box" on an image of a square, against the colour or size word with either shape word;
- homonyms: "orange" with the shape word after it, against other colours with the same shape words.
"""

from __future__ import annotations

import random
from typing import Sequence

import numpy as np
import torch

from ..errors import ParameterError
from .pid_studies import PairCase

__all__ = ["bias_cases", "bias_reference", "bias_strength", "homonym_cases", "synonym_cases"]


def bias_strength(color: str, shape: str) -> float:
    """The shapes world's ``P(colour | shape, colour unnamed)``: the planted bias of a pair."""
    from ..shapes.world import COLORS, TRIANGLE_RED_PROB

    if shape != "triangle":
        return 1.0 / len(COLORS)
    return TRIANGLE_RED_PROB if color == "red" else (1.0 - TRIANGLE_RED_PROB) / (len(COLORS) - 1)


def bias_reference(draws: int = 200_000, seed: int = 0) -> dict[str, float]:
    """Standard min-MI redundancy of each (colour, shape) pair for a perfect model of the shapes world.

    Pointwise ``i(x; y) = log p(x | y) / p(x)`` over what the words are about: the class
    (colour, shape) of a single-object image, and that it has one object. ``p(x | "COLOUR")``
    has a uniform shape, ``p(x | "SHAPE")`` the colour prior ``P(colour | shape)``, and ``p(x)``
    is the world's marginal, estimated from ``draws`` drawn scenes (size and position are
    independent of the words and cancel). Returns ``{"COLOUR SHAPE": min(i(colour), i(shape))}``.

    Args:
        draws: scenes drawn for the marginal.
        seed: seed of the draws.
    """
    from ..shapes.world import COLORS, SHAPES
    from ..shapes.captions import sample_plan

    rng = random.Random(seed)
    counts: dict[tuple[str, str], int] = {}
    for _ in range(draws):
        plan = sample_plan(rng, training=True)
        if len(plan.objects) == 1:
            o = plan.objects[0]
            counts[(o.color, o.shape)] = counts.get((o.color, o.shape), 0) + 1
    out = {}
    for c in COLORS:
        for s in SHAPES:
            marginal = counts.get((c, s), 0) / draws  # P(one object, colour, shape)
            if marginal == 0:
                raise ParameterError(f"no drawn scene is a {c} {s}; draw more scenes")
            out[f"{c} {s}"] = min(float(np.log(1 / len(SHAPES) / marginal)), float(np.log(bias_strength(c, s) / marginal)))
    return out


def _scene(caption: str, seed: int) -> torch.Tensor:
    from ..shapes.render import scene_for_caption

    return scene_for_caption(caption, seed).image


def bias_cases(images: int = 2, seed: int = 0, generated: bool = False) -> list[PairCase]:
    """(colour, shape) pairs of the shapes world, ``images`` scenes each, words of ``"a COLOUR SHAPE"``.

    Orange is left out: alone, the word is the fruit (a circle), so its PID would measure the
    homonym, not the bias. 6 colours x 4 shapes = 24 pairs.

    Args:
        images: scenes per pair (the world's ground truth, or generated when ``generated``).
        seed: seed of the scenes.
        generated: let the model generate each image from the prompt (seeded per item).
    """
    from ..shapes.world import COLORS, SHAPES

    out = []
    for c in (c for c in COLORS if c != "orange"):
        for s in SHAPES:
            prompt = f"a {c} {s}"
            for k in range(images):
                img = None if generated else _scene(prompt, seed * 1000 + k)
                out.append(PairCase(img, prompt, c, s, group="bias", key=f"{c} {s}", strength=bias_strength(c, s)))
    return out


def synonym_cases(images: int = 8, seed: int = 0, generated: bool = False) -> list[PairCase]:
    """Squares of the shapes world with the synonym pair and unrelated pairs of true words.

    For each scene ``"a SIZE COLOUR square"`` (colour not orange): ``("square", "box")`` (group
    ``synonym``) and ``(COLOUR, "square")``, ``(COLOUR, "box")``, ``(SIZE, "square")``,
    ``(SIZE, "box")`` (group ``unrelated``). The words are sources on their own: PID compares
    ``""``, ``y1``, ``y2`` and ``"y1 y2"``. With ``generated`` the image is generated from
    the scene's caption (seeded per item) instead of drawn from the world.
    """
    from ..shapes.world import COLORS, SIZES

    rng = random.Random(seed)
    colours = [c for c in COLORS if c != "orange"]
    out = []
    for k in range(images):
        size, colour = rng.choice(tuple(SIZES)), rng.choice(colours)
        caption = f"a {size} {colour} square"
        img = None if generated else _scene(caption, seed * 1000 + k)
        out.append(PairCase(img, None, "square", "box", group="synonym", key="square box", image_prompt=caption))
        for a in (colour, size):
            for b in ("square", "box"):
                out.append(PairCase(img, None, a, b, group="unrelated", key=f"{'colour' if a == colour else 'size'} {b}",
                                    image_prompt=caption))
    return out


def homonym_cases(images: int = 6, seed: int = 0, controls: Sequence[str] = ("red", "blue", "green"),
                  shapes: Sequence[str] = ("circle",), generated: bool = False) -> list[PairCase]:
    """``"a COLOUR SHAPE"`` scenes: ``("orange", SHAPE)`` is the homonym pair, other colours the controls.

    Args:
        images: scenes per prompt.
        seed: seed of the scenes.
        controls: the control colours.
        shapes: the shape words. Default: circles only, the one shape the lone "orange" (a
            circle of any colour) does not contradict; with other shapes the lone word
            contradicts the image, and ``i_o`` of a contradicting word grows without bound for
            a perfect model (its synergy then is very negative).
        generated: generate the images from the prompts (seeded per item) instead of drawing scenes.
    """
    if "orange" in controls:
        raise ParameterError("'orange' is the homonym; choose other control colours")
    out = []
    for s in shapes:
        for c in ("orange", *controls):
            prompt = f"a {c} {s}"
            for k in range(images):
                img = None if generated else _scene(prompt, seed * 1000 + k)
                out.append(PairCase(img, prompt, c, s, group="homonym" if c == "orange" else "control", key=f"{c} {s}"))
    return out
