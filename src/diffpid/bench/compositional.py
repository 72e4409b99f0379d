"""Compositional understanding (ARO; Kong et al., ICLR 2024, section 5; SCIENCE.md section 5).

Each candidate caption of an image is scored by the image-level orthogonal information
``i_o(x; caption)`` against the empty prompt; the prediction is the argmax (the first
candidate on ties, as ``numpy.argmax``). Every candidate and ``""`` are conditions of ONE
engine run per image, so they share the ``(a, eps)`` draws (common random numbers): the
differences between candidates do not drown in sampling noise. The standard estimator
``i`` comes from the same run and is reported beside it.

Datasets: the shapes world's swap sets (:mod:`diffpid.shapes.sets`; the truth is
planted) and ARO's files (:mod:`diffpid.datasets.aro`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..engine.estimate import EngineResult, Job
from ..errors import ParameterError
from ..models.base import Model
from ..runs.runner import Item, item_id
from ..settings import Settings

ITEM_VERSION = "compositional-item/1"
DEFAULTS = Settings(samples=100)
"""The bench's estimator settings unless told otherwise (the papers' 100 samples)."""

__all__ = ["DEFAULTS", "CaptionScores", "CompositionalCase", "caption_job", "caption_scores", "score_captions",
           "shapes_attribute_items", "shapes_relation_items", "shapes_single_items"]


@dataclass(frozen=True)
class CompositionalCase:
    """An image and candidate captions, one of them correct.

    Args:
        image: what ``model.encode_image`` reads, a ``(*data_shape)`` data tensor, or an object
            with ``load_image()`` (an :class:`~diffpid.datasets.aro.AroCase`).
        captions: the candidates.
        correct: index of the correct caption.
        group: macro-accuracy group (relation, attribute pair, ...).
    """

    image: Any
    captions: tuple[str, ...]
    correct: int
    group: str


@dataclass(frozen=True)
class CaptionScores:
    """Scores of the candidates of one image (nats).

    Args:
        scores, stderr: ``(k,)`` orthogonal ``i_o(x; caption)`` and standard errors.
        standard, standard_stderr: ``(k,)`` standard estimator ``i(x; caption)``.
        predicted: argmax of ``scores``; standard_predicted: argmax of ``standard``.
        correct: index of the correct caption.
        margins, margin_stderr: ``(k,)`` ``scores[correct] - scores[j]`` and the standard error of
            that difference under common random numbers (0 for ``j = correct``).
        standard_margins, standard_margin_stderr: the same for the standard estimator.
    """

    scores: np.ndarray
    stderr: np.ndarray
    standard: np.ndarray
    standard_stderr: np.ndarray
    predicted: int
    standard_predicted: int
    correct: int
    margins: np.ndarray
    margin_stderr: np.ndarray
    standard_margins: np.ndarray
    standard_margin_stderr: np.ndarray

    @property
    def is_correct(self) -> bool:
        return self.predicted == self.correct

    @property
    def standard_is_correct(self) -> bool:
        return self.standard_predicted == self.correct


def score_captions(model: Model, x: Any, captions: Sequence[str], correct: int = 0, *,
                   settings: Settings | None = None, **overrides: Any) -> CaptionScores:
    """Score every candidate caption of one image in one engine run (common random numbers).

    Args:
        model: the denoiser.
        x: ``(*data_shape)`` or ``(1, *data_shape)`` model data of the image.
        captions: ``k >= 2`` candidates (identical candidates get identical scores).
        correct: index of the correct caption.
        settings: the estimator :class:`~diffpid.settings.Settings` (default :data:`DEFAULTS`: 100
            samples, shared by all candidates and ``""``) or its fields as keywords.

    Raises:
        ParameterError: fewer than two candidates, an empty candidate, or ``correct`` out of range.
        ConditionError: a caption the model cannot encode (too long, unknown words).
    """
    from ..plan import run_jobs

    settings = Settings.of(settings or DEFAULTS, **overrides)
    job = caption_job(model, x, captions, correct, settings.seed)
    return caption_scores(run_jobs(model, [job], settings)[0], len(captions), correct)


def caption_job(model: Model, x: Any, captions: Sequence[str], correct: int, seed: int) -> Job:
    """The engine :class:`~diffpid.engine.estimate.Job` of :func:`score_captions` (checked as it says): ``""``
    and every distinct candidate as conditions, each candidate's information, then the margins."""
    from ..engine.estimate import Combination, Difference
    from ..plan import Plan, encode

    captions = [str(c) for c in captions]
    if len(captions) < 2:
        raise ParameterError(f"compositional scoring needs at least two candidate captions, got {len(captions)}")
    if any(not c.strip() for c in captions):
        raise ParameterError("a candidate caption is empty; every candidate must be a non-empty caption")
    if not 0 <= correct < len(captions):
        raise ParameterError(f"correct index {correct} is outside 0..{len(captions) - 1}")
    plan = Plan()  # conditions: "" and each distinct candidate once (the margins are combinations of terms)
    empty = plan.condition("")
    k = len(captions)
    terms: list = [Difference(plan.condition(c), empty) for c in captions]
    conds = [encode(model, c) for c in plan.conditions]
    # margins of the correct caption over each other one, accumulated draw by draw (paired errors)
    others = [j for j in range(k) if j != correct]
    terms += [Combination((terms[correct], terms[j]), (1.0, -1.0)) for j in others]
    if tuple(np.shape(x)) == tuple(model.data_shape):
        x = x[None]
    return Job(x, conds, terms, int(seed))


def caption_scores(run: EngineResult, k: int, correct: int) -> CaptionScores:
    """The :class:`CaptionScores` of ``k`` candidates from the engine result of their :func:`caption_job`."""
    def column(attr: str, part: slice) -> np.ndarray:
        return np.array([float(getattr(t, attr)[0]) for t in run.terms[part]])

    others = [j for j in range(k) if j != correct]
    s, se = column("value", slice(0, k)), column("stderr", slice(0, k))
    st, sse = column("standard_value", slice(0, k)), column("standard_stderr", slice(0, k))
    margins = [np.zeros(k) for _ in range(4)]
    for m, attr in zip(margins, ("value", "stderr", "standard_value", "standard_stderr")):
        m[others] = column(attr, slice(k, None))
    return CaptionScores(s, se, st, sse, int(np.argmax(s)), int(np.argmax(st)), int(correct), *margins)


def _image(scene: Any) -> np.ndarray:
    from ..models.images import to_uint8

    return to_uint8(scene.image[None])[0]


def _swapped_field(a: Any, b: Any) -> str:
    for f in ("color", "size", "shape"):
        if getattr(a, f) != getattr(b, f):
            return f
    return "none"


def _shapes_sets(n: int, seed: int, keep: Any) -> list[Any]:
    """The first ``n`` usable sets of ``swap_sets(all, seed)`` (built lazily; the same sets whatever ``n``)."""
    from ..shapes.render import scene_for_caption
    from ..shapes.sets import held_out_captions, swap_set

    if not isinstance(n, int) or n < 1:
        raise ParameterError(f"items must be a positive integer, got {n!r}")
    out = []
    for i, c in enumerate(held_out_captions(10**6, seed)):  # as swap_sets(len(pool), seed), one set at a time
        s = swap_set(scene_for_caption(c, seed + i))
        if keep(s):
            out.append(s)
            if len(out) == n:
                break
    return out


def shapes_attribute_items(n: int, seed: int = 0) -> list[Item]:
    """Attribute-swap items: a two-object scene, its caption and the caption with an attribute swapped.

    Candidates are ``[correct, attribute_swapped]`` (chance 1/2); the group is the swapped
    attribute (``color``, ``size``, ``shape``). Scenes come from held-out captions.
    """
    sets = _shapes_sets(n, seed, lambda s: s.attribute_swapped is not None)
    out = []
    for k, s in enumerate(sets):
        group = _swapped_field(*s.scene.objects)
        case = CompositionalCase(_image(s.scene), (s.correct, s.attribute_swapped), 0, group)
        out.append(Item(item_id(ITEM_VERSION, "shapes-attribute", seed, s.correct, s.attribute_swapped), case,
                        f"set {k}: {s.correct}"))
    return out


def shapes_relation_items(n: int, seed: int = 0) -> list[Item]:
    """Relation-swap items: the caption, the objects named in the other order, and the relation flipped.

    Candidates are ``[correct, order_swapped, relation_flipped]`` (chance 1/3); the group is
    the relation word. Sets whose two objects read the same (order swap = caption) are skipped.
    """
    sets = _shapes_sets(n, seed, lambda s: s.order_swapped != s.correct)
    out = []
    for k, s in enumerate(sets):
        case = CompositionalCase(_image(s.scene), (s.correct, s.order_swapped, s.relation_flipped), 0,
                                 str(s.scene.relation))
        out.append(Item(item_id(ITEM_VERSION, "shapes-relation", seed, s.correct), case, f"set {k}: {s.correct}"))
    return out


def shapes_single_items(n: int, seed: int = 0) -> list[Item]:
    """Caption recognition on single centred objects (no binding needed): a check of the scoring rule.

    The 56 centred objects of the world (the images of
    :class:`~diffpid.bench.shapes_oracle.ShapesOracle`) in a seeded order; candidates are
    ``[correct, colour changed, size changed, shape changed]`` (chance 1/4), the changes drawn
    with the seed; the group is the object's shape.
    """
    import random

    from ..shapes.world import COLORS, SHAPES, SIZES, Plan, ShapeObject
    from ..shapes.render import render_plans

    if not isinstance(n, int) or n < 1:
        raise ParameterError(f"items must be a positive integer, got {n!r}")
    combos = [(c, s, z) for c in COLORS for s in SHAPES for z in SIZES]
    rng = random.Random(seed)
    rng.shuffle(combos)
    out = []
    for c, s, z in combos[:n]:
        images, _ = render_plans([Plan((ShapeObject(s, c, z, 16.0, 16.0),), None, ())])
        other_c = rng.choice([x for x in COLORS if x != c])
        other_s = rng.choice([x for x in SHAPES if x != s])
        other_z = next(x for x in SIZES if x != z)
        caps = (f"a {z} {c} {s}", f"a {z} {other_c} {s}", f"a {other_z} {c} {s}", f"a {z} {c} {other_s}")
        case = CompositionalCase(images[0], caps, 0, s)
        out.append(Item(item_id(ITEM_VERSION, "shapes-single", seed, *caps), case, caps[0]))
    return out
